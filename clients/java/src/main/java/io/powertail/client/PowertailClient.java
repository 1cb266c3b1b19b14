package io.powertail.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.function.Supplier;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * A client of one powertail server (docs/API.md): follow a log by long-poll or by
 * Server-Sent Events, run jobs, watch a model server's start-up. Thread-safe; one per
 * server is enough.
 *
 * <pre>{@code
 * PowertailClient pt = PowertailClient.builder("http://127.0.0.1:8080").token(token).build();
 * RunAnswer run = pt.runJob("vllm-start", Map.of("port", 8001));
 * StartupState state = pt.waitStartup(run.instanceId(), Duration.ofMinutes(10));
 * try (Stream<String> lines = pt.follow(run.instanceId())) {   // ends when the log is complete
 *     lines.forEach(System.out::println);
 * }
 * }</pre>
 *
 * <p><b>Retries.</b> The idempotent calls (reads, long-polls, the event stream, the start-up
 * state) retry 429 and 503 answers after their {@code Retry-After} (or a back-off of 0.5 s
 * doubling up to 5 s without one) and transport failures after a connection was made (a
 * reset, a read timeout), up to {@code maxRetries} (default 10) times in a row, then throw.
 * A connection that cannot be made at all (refused: nothing listens; unreachable; connect
 * timeout) is retried only within {@code connectRetryBudget} (default 2 s, back-off from
 * 100 ms) from the call's first refusal, then thrown as {@link PowertailConnectionException}:
 * a server that is down is reported in about two seconds, not after ten back-offs. That
 * budget applies to every call, {@link #runJob} included, since nothing was sent;
 * {@link #runJob} and the instance controls never retry anything else (a retry could run
 * the job twice).
 *
 * <p>The token is sent as {@code Authorization: Bearer}; it never appears in an exception.
 */
public final class PowertailClient {
    /** The longest long-poll the API accepts ({@code waitMs} 0..=30000). */
    public static final Duration MAX_WAIT = Duration.ofSeconds(30);

    /** How long a streamed body may stay silent: the server sends a heartbeat every 15 s. */
    static final Duration STREAM_READ_TIMEOUT = Duration.ofSeconds(45);

    private final Transport transport;
    private final ObjectMapper json;
    private final Duration minPollInterval;
    private final History history;
    private final StreamTransport streamTransport;
    /** How long a streamed body may stay silent before the stream reconnects (tests shorten it). */
    Duration streamReadTimeout = STREAM_READ_TIMEOUT;

    private PowertailClient(Builder b) {
        this.transport = new Transport(b.baseUrl, b.token, b.timeout, b.maxRetries, b.connectRetryBudget, b.httpClient);
        this.json = transport.json;
        this.minPollInterval = b.minPollInterval;
        this.history = new History(transport);
        this.streamTransport = b.streamTransport;
    }

    /** The HTTP side (tests reach its sleeper and error mapping). */
    Transport transport() {
        return transport;
    }

    /**
     * A client with the default settings.
     *
     * @param baseUrl the server's root, e.g. {@code http://127.0.0.1:8080}
     * @return the client
     */
    public static PowertailClient create(String baseUrl) {
        return builder(baseUrl).build();
    }

    /**
     * A builder.
     *
     * @param baseUrl the server's root, e.g. {@code http://127.0.0.1:8080}
     * @return the builder
     */
    public static Builder builder(String baseUrl) {
        return new Builder(baseUrl);
    }

    /** Settings of a {@link PowertailClient}. */
    public static final class Builder {
        private final String baseUrl;
        private String token;
        private Duration timeout = Duration.ofSeconds(10);
        private int maxRetries = 10;
        private Duration connectRetryBudget = Duration.ofSeconds(2);
        private Duration minPollInterval = Duration.ofSeconds(1);
        private HttpClient httpClient;
        private StreamTransport streamTransport = StreamTransport.SSE;

        private Builder(String baseUrl) {
            URI uri = URI.create(Objects.requireNonNull(baseUrl, "baseUrl"));
            if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
                throw new IllegalArgumentException("baseUrl must be an http(s) URL, not " + baseUrl);
            }
            this.baseUrl = baseUrl;
        }

        /**
         * An API token, sent as {@code Authorization: Bearer} (never logged).
         *
         * @param value the token, or null for none
         * @return this
         */
        public Builder token(String value) {
            this.token = value;
            return this;
        }

        /**
         * Connect timeout, and the time an answer may take beyond its long-poll (default 10 s).
         *
         * @param value the timeout
         * @return this
         */
        public Builder timeout(Duration value) {
            this.timeout = positive(value, "timeout");
            return this;
        }

        /**
         * Tries in a row after 429/503 or a broken connection (default 10).
         *
         * @param value 0 for none
         * @return this
         */
        public Builder maxRetries(int value) {
            if (value < 0) {
                throw new IllegalArgumentException("maxRetries must be >= 0");
            }
            this.maxRetries = value;
            return this;
        }

        /**
         * How long a call keeps trying to connect to a server that refuses connections
         * (default 2 s; {@link Duration#ZERO}: fail at the first refusal).
         *
         * @param value the budget
         * @return this
         */
        public Builder connectRetryBudget(Duration value) {
            if (value.isNegative()) {
                throw new IllegalArgumentException("connectRetryBudget must not be negative");
            }
            this.connectRetryBudget = value;
            return this;
        }

        /**
         * Answers without lines come at most this often while following (default 1 s).
         *
         * @param value the interval
         * @return this
         */
        public Builder minPollInterval(Duration value) {
            if (value.isNegative()) {
                throw new IllegalArgumentException("minPollInterval must not be negative");
            }
            this.minPollInterval = value;
            return this;
        }

        /**
         * How {@link PowertailClient#stream} and {@link PowertailClient#streamEvents} follow
         * a log (default {@link StreamTransport#SSE}).
         *
         * @param value SSE, WEBSOCKET, or AUTO (the WebSocket where the server has it)
         * @return this
         */
        public Builder streamTransport(StreamTransport value) {
            this.streamTransport = Objects.requireNonNull(value, "streamTransport");
            return this;
        }

        /**
         * The {@link HttpClient} to use (proxy, TLS, executor of your own).
         *
         * @param value the client
         * @return this
         */
        public Builder httpClient(HttpClient value) {
            this.httpClient = value;
            return this;
        }

        /** The client. */
        public PowertailClient build() {
            return new PowertailClient(this);
        }

        private static Duration positive(Duration d, String name) {
            if (d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException(name + " must be positive");
            }
            return d;
        }
    }

    // --- helpers -----------------------------------------------------------------------

    /** Instance ids exceed 2^53: the API carries them as strings of digits. */
    static String instanceId(String value) {
        if (value == null || value.isEmpty() || value.length() > 19 || !value.chars().allMatch(c -> c >= '0' && c <= '9')) {
            throw new IllegalArgumentException("an instance id is a string of decimal digits, not " + value);
        }
        return value;
    }

    static long waitMs(Duration wait) {
        if (wait == null || wait.isNegative()) {
            return 0;
        }
        return Math.min(wait.toMillis(), MAX_WAIT.toMillis());
    }


    // --- logs --------------------------------------------------------------------------

    /**
     * One {@code GET /llm/logs} answer from line 0.
     *
     * @param instanceId the instance id (digits)
     * @return the answer
     */
    public LogPage read(String instanceId) {
        return read(instanceId, 0, null, Duration.ZERO, null);
    }

    /**
     * One {@code GET /llm/logs} answer.
     *
     * @param instanceId the instance id (digits)
     * @param fromLine the first line wanted
     * @return the answer
     */
    public LogPage read(String instanceId, long fromLine) {
        return read(instanceId, fromLine, null, Duration.ZERO, null);
    }

    /**
     * One {@code GET /llm/logs} answer; {@code wait} long-polls (at most 30 s). With
     * {@code epoch} (that of an earlier answer) a log rebuilt since throws
     * {@link EpochMismatchException}.
     *
     * @param instanceId the instance id (digits)
     * @param fromLine the first line wanted
     * @param limit most lines, or null for the server's default
     * @param wait how long to wait for a new line when there is none yet
     * @param epoch the epoch {@code fromLine} belongs to, or null
     * @return the answer
     */
    public LogPage read(String instanceId, long fromLine, Integer limit, Duration wait, String epoch) {
        return readPage(new Cursor(instanceId(instanceId), fromLine, epoch), waitMs(wait), limit);
    }

    /** Where a follower stands in one instance's log: the line and its epoch. */
    private static final class Cursor {
        final String instanceId;
        long nextLine;
        String epoch;

        Cursor(String instanceId, long nextLine, String epoch) {
            this.instanceId = instanceId;
            this.nextLine = nextLine;
            this.epoch = epoch;
        }

        Map<String, Object> params(long waitMillis, Integer limit) {
            Map<String, Object> p = new LinkedHashMap<>();
            p.put("instanceId", instanceId);
            p.put("fromLine", nextLine);
            if (waitMillis > 0) {
                p.put("waitMs", waitMillis);
            }
            if (limit != null) {
                p.put("limit", limit);
            }
            if (epoch != null) {
                p.put("epoch", epoch);
            }
            return p;
        }

        void advance(LogPage page) {
            nextLine = page.nextLine();
            if (page.epoch() != null) {
                epoch = page.epoch();
            }
        }
    }

    private LogPage readPage(Cursor cursor, long waitMillis, Integer limit) {
        return transport.sendJson("GET", "/llm/logs", cursor.params(waitMillis, limit), null, waitMillis, true, LogPage.class);
    }

    private static <T> Stream<T> lazy(Iterator<T> it, Runnable onClose) {
        Stream<T> s = StreamSupport.stream(Spliterators.spliteratorUnknownSize(it, Spliterator.ORDERED | Spliterator.NONNULL), false);
        return onClose == null ? s : s.onClose(onClose);
    }

    /**
     * The log's lines from line 0 until it is complete; see {@link #follow(String, FollowOptions)}.
     *
     * @param instanceId the instance id (digits)
     * @return the lines, lazily
     */
    public Stream<String> follow(String instanceId) {
        return follow(instanceId, FollowOptions.DEFAULT);
    }

    /**
     * The log's lines as they come, ending when the log is {@code complete} (no line can
     * follow): long-polls from each {@code nextLine}, with the epoch of the first answer
     * sent with every later read. A log rebuilt from scratch meanwhile throws
     * {@link EpochMismatchException} (what was yielded cannot be continued), or with
     * {@code restart} yields the new sequence from its line 0. Lazy: each element may block
     * up to a long-poll.
     *
     * @param instanceId the instance id (digits)
     * @param options from where and how
     * @return the lines, lazily
     */
    public Stream<String> follow(String instanceId, FollowOptions options) {
        return followPages(instanceId, options).flatMap(p -> p.lines().stream());
    }

    /**
     * Every {@code GET /llm/logs} answer of a follower, until the one that says
     * {@code complete}: as {@link #follow(String, FollowOptions)}, with {@code status},
     * {@code attempts}, {@code truncated}, ... A {@code stale} answer just leads to the next
     * poll; answers without lines come at most every {@code minPollInterval}. After a
     * restart ({@code options.restart()}) the next page has {@code fromLine == 0} and a new
     * {@code epoch}: drop what was shown.
     *
     * @param instanceId the instance id (digits)
     * @param options from where and how
     * @return the answers, lazily
     */
    public Stream<LogPage> followPages(String instanceId, FollowOptions options) {
        Cursor start = new Cursor(instanceId(instanceId), options.fromLine(), options.epoch());
        long waitMillis = waitMs(options.longPoll());
        Iterator<LogPage> it = new Iterator<>() {
            private Cursor cursor = start;
            private boolean done;
            private LogPage nextPage;
            private long lastStarted = -1;
            private boolean lastEmpty;

            @Override
            public boolean hasNext() {
                if (nextPage == null && !done) {
                    nextPage = fetch();
                }
                return nextPage != null;
            }

            @Override
            public LogPage next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                LogPage p = nextPage;
                nextPage = null;
                if (p.complete()) {
                    done = true;
                }
                return p;
            }

            private LogPage fetch() {
                if (lastEmpty) {
                    long pause = minPollInterval.toMillis() - (System.nanoTime() - lastStarted) / 1_000_000;
                    if (pause > 0) {
                        transport.new Tries(false).pause(pause);
                    }
                }
                while (true) {
                    lastStarted = System.nanoTime();
                    try {
                        LogPage page = readPage(cursor, waitMillis, options.limit());
                        cursor.advance(page);
                        lastEmpty = page.lines().isEmpty();
                        return page;
                    } catch (EpochMismatchException e) {
                        if (!options.restart() || e.epoch().isEmpty() || e.epoch().get().equals(cursor.epoch)) {
                            throw e; // (one that names the epoch sent cannot be followed)
                        }
                        cursor = new Cursor(cursor.instanceId, 0, e.epoch().get());
                    }
                }
            }
        };
        return lazy(it, null);
    }

    /**
     * {@code GET /llm/logs/{id}/raw}: the whole log held now, one line per {@code \n}.
     *
     * @param instanceId the instance id (digits)
     * @return the text
     */
    public String raw(String instanceId) {
        return transport.send("GET", "/llm/logs/" + instanceId(instanceId) + "/raw", Map.of(), null, 0, true).body();
    }

    // --- event stream ------------------------------------------------------------------

    /**
     * The log's lines over Server-Sent Events, from line 0 until the {@code end} event.
     *
     * @param instanceId the instance id (digits)
     * @return the lines, lazily; close the stream to stop early
     */
    public Stream<String> stream(String instanceId) {
        return stream(instanceId, FollowOptions.DEFAULT);
    }

    /**
     * The log's lines over Server-Sent Events, ending on the {@code end} event: the same
     * lines {@link #follow(String, FollowOptions)} yields, pushed instead of polled
     * ({@code fromLine}, {@code epoch} and {@code restart} of the options apply).
     *
     * @param instanceId the instance id (digits)
     * @param options from where
     * @return the lines, lazily; close the stream to stop early
     */
    public Stream<String> stream(String instanceId, FollowOptions options) {
        Stream<ServerSentEvent> events = streamEvents(instanceId, options);
        return events.filter(e -> e.event().equals("lines")).flatMap(e -> {
            try {
                List<String> lines = json.convertValue(json.readTree(e.data()).path("lines"),
                        json.getTypeFactory().constructCollectionType(List.class, String.class));
                return lines.stream();
            } catch (JsonProcessingException ex) {
                throw new ServerException("http_error", "a `lines` event that is not JSON", null, null);
            }
        });
    }

    /**
     * The Server-Sent Events of {@code GET /llm/logs/{id}/stream} ({@code lines},
     * {@code startup}, {@code error}, {@code shutdown}, {@code end}), ending after
     * {@code end}. A dropped connection (or 45 s of silence: the server sends a heartbeat
     * every 15 s) or a {@code shutdown} event reconnects with {@code Last-Event-ID} (the
     * {@code nextLine} of the last {@code lines} event) and the epoch of the events, so no
     * line is lost or repeated; 429/503 before the stream starts are retried like the
     * other reads. A log rebuilt from scratch (410 before the stream starts, or an
     * {@code error} event {@code epoch_mismatch}) throws {@link EpochMismatchException}, or
     * with {@code restart} starts over from line 0 of the new sequence (the
     * {@code epoch_mismatch} event is yielded first).
     *
     * @param instanceId the instance id (digits)
     * @param options from where
     * @return the events, lazily; close the stream to stop early (it closes the connection)
     */
    public Stream<ServerSentEvent> streamEvents(String instanceId, FollowOptions options) {
        String id = instanceId(instanceId);
        if (streamTransport == StreamTransport.SSE) {
            EventStream it = new EventStream(transport, id, options, streamReadTimeout);
            return lazy(it, it::close);
        }
        WsStream ws = new WsStream(transport, id, options, streamReadTimeout);
        if (streamTransport == StreamTransport.WEBSOCKET) {
            return lazy(ws, ws::close);
        }
        Fallback it = new Fallback(ws, () -> new EventStream(transport, id, options, streamReadTimeout));
        return lazy(it, it::close);
    }

    /** {@link StreamTransport#AUTO}: the WebSocket, or SSE when its first handshake finds no route. */
    private static final class Fallback implements Iterator<ServerSentEvent> {
        private final WsStream ws;
        private final Supplier<EventStream> sse;
        private EventStream fallback;
        private boolean closed;

        Fallback(WsStream ws, Supplier<EventStream> sse) {
            this.ws = ws;
            this.sse = sse;
        }

        @Override
        public boolean hasNext() {
            if (fallback != null) {
                return fallback.hasNext();
            }
            try {
                return ws.hasNext();
            } catch (NotFoundException | MethodNotAllowedException e) {
                if (!ws.unsupported() || closed) {
                    throw e;
                }
                fallback = sse.get();
                return fallback.hasNext();
            }
        }

        @Override
        public ServerSentEvent next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            return fallback != null ? fallback.next() : ws.next();
        }

        void close() {
            closed = true;
            ws.close();
            if (fallback != null) {
                fallback.close();
            }
        }
    }

    // --- jobs and instances ------------------------------------------------------------

    /**
     * {@code POST /llm/jobs/{name}/run} with the job's default params.
     *
     * @param name a configured job name, or a numeric PowerJob job id
     * @return the answer (its {@code instanceId})
     */
    public RunAnswer runJob(String name) {
        return runJob(name, null, null);
    }

    /**
     * {@code POST /llm/jobs/{name}/run}: run a configured job (or a numeric PowerJob job
     * id). A map in {@code params} is merged over the job's default params; a
     * {@link String} is sent as is. Never retried but for a refused connection (a retry
     * could run the job twice).
     *
     * @param name a configured job name, or a numeric PowerJob job id
     * @param params a {@code Map} (a JSON object) or a {@code String}, or null
     * @return the answer (its {@code instanceId})
     */
    public RunAnswer runJob(String name, Object params) {
        return runJob(name, params, null);
    }

    /**
     * {@code POST /llm/jobs/{name}/run} with a delay.
     *
     * @param name a configured job name, or a numeric PowerJob job id
     * @param params a {@code Map} (a JSON object) or a {@code String}, or null
     * @param delayMs PowerJob's delay before it runs, or null
     * @return the answer (its {@code instanceId})
     */
    public RunAnswer runJob(String name, Object params, Long delayMs) {
        Objects.requireNonNull(name, "name");
        if (params != null && !(params instanceof Map<?, ?>) && !(params instanceof String)) {
            throw new IllegalArgumentException("params is a Map (a JSON object) or a String, not " + params.getClass().getName());
        }
        Map<String, Object> body = new LinkedHashMap<>();
        if (params != null) {
            body.put("instanceParams", params);
        }
        if (delayMs != null) {
            body.put("delayMs", delayMs);
        }
        String path = "/llm/jobs/" + URLEncoder.encode(name, StandardCharsets.UTF_8).replace("+", "%20") + "/run";
        return transport.sendJson("POST", path, Map.of(), body, 0, false, RunAnswer.class);
    }

    /**
     * {@code POST /llm/jobs/{jobId}/run} by a numeric PowerJob job id.
     *
     * @param jobId the job id
     * @param params a {@code Map} (a JSON object) or a {@code String}, or null
     * @return the answer
     */
    public RunAnswer runJob(long jobId, Object params) {
        return runJob(Long.toString(jobId), params, null);
    }

    /**
     * {@code GET /llm/jobs}: the configured jobs.
     *
     * @return the jobs and whether this caller may run them
     */
    public JobList jobs() {
        return transport.sendJson("GET", "/llm/jobs", Map.of(), null, 0, true, JobList.class);
    }

    /**
     * {@code GET /llm/instances/{id}}: PowerJob's view of the instance.
     *
     * @param instanceId the instance id (digits)
     * @return the instance
     */
    public Instance instance(String instanceId) {
        return transport.sendJson("GET", "/llm/instances/" + instanceId(instanceId), Map.of(), null, 0, true, Instance.class);
    }

    /**
     * {@code POST /llm/instances/{id}/stop} ({@link ConflictException} when finished).
     *
     * @param instanceId the instance id (digits)
     */
    public void stop(String instanceId) {
        transport.send("POST", "/llm/instances/" + instanceId(instanceId) + "/stop", Map.of(), null, 0, false);
    }

    /**
     * {@code POST /llm/instances/{id}/cancel} (only while it waits for dispatch).
     *
     * @param instanceId the instance id (digits)
     */
    public void cancel(String instanceId) {
        transport.send("POST", "/llm/instances/" + instanceId(instanceId) + "/cancel", Map.of(), null, 0, false);
    }

    /**
     * {@code POST /llm/instances/{id}/retry} (only a finished instance; same id).
     *
     * @param instanceId the instance id (digits)
     */
    public void retry(String instanceId) {
        transport.send("POST", "/llm/instances/" + instanceId(instanceId) + "/retry", Map.of(), null, 0, false);
    }

    /**
     * The start-up state now.
     *
     * @param instanceId the instance id (digits)
     * @return the state
     */
    public StartupState startup(String instanceId) {
        return startup(instanceId, Duration.ZERO, null, null);
    }

    /**
     * {@code GET /llm/instances/{id}/startup}: the model server's start-up state. With
     * {@code wait} (at most 30 s) it long-polls until the state changes from
     * ({@code attempt}, {@code fromEvent}), by default the state when the request arrives,
     * or is {@code complete}.
     *
     * @param instanceId the instance id (digits)
     * @param wait how long to wait for a change
     * @param attempt the previous answer's {@code attempt}, or null
     * @param fromEvent the previous answer's {@code events.size()}, or null
     * @return the state
     */
    public StartupState startup(String instanceId, Duration wait, Integer attempt, Integer fromEvent) {
        Map<String, Object> params = new LinkedHashMap<>();
        long w = waitMs(wait);
        if (w > 0) {
            params.put("waitMs", w);
        }
        if (attempt != null) {
            params.put("attempt", attempt);
        }
        if (fromEvent != null) {
            params.put("fromEvent", fromEvent);
        }
        return transport.sendJson("GET", "/llm/instances/" + instanceId(instanceId) + "/startup", params, null, w, true, StartupState.class);
    }

    /**
     * Long-polls the start-up state until it is {@code complete} ({@code ready}, or the job
     * ended and its log is complete: {@code failed} with its final cause, or
     * {@code exited}) and returns it; after {@code timeout} returns the state as it is
     * (check {@code complete()}).
     *
     * @param instanceId the instance id (digits)
     * @param timeout the longest wait, or null for no limit
     * @return the last state
     */
    public StartupState waitStartup(String instanceId, Duration timeout) {
        long deadline = timeout == null ? Long.MAX_VALUE : System.nanoTime() + timeout.toNanos();
        StartupState state = null;
        Transport.Tries pauses = transport.new Tries(false);
        while (true) {
            long left = timeout == null ? 20_000 : Math.max(0, (deadline - System.nanoTime()) / 1_000_000);
            Duration wait = Duration.ofMillis(Math.min(20_000, left));
            long started = System.nanoTime();
            state = state == null
                    ? startup(instanceId, wait, null, null)
                    : startup(instanceId, wait, state.attempt(), state.events() == null ? 0 : state.events().size());
            if (state.complete() || (timeout != null && System.nanoTime() - deadline >= 0)) {
                return state;
            }
            long pause = minPollInterval.toMillis() - (System.nanoTime() - started) / 1_000_000;
            if (pause > 0) {
                pauses.pause(pause);
            }
        }
    }

    // --- the archive (issue 20) --------------------------------------------------------

    /**
     * {@code GET /llm/search}: the first page of archived lines that contain {@code q}
     * (case-insensitive substring, at least 3 characters, else {@link BadRequestException}).
     * {@link NotFoundException} when the server has no archive; an archive that is down
     * (503 {@code archive_unavailable}) is retried, then thrown as
     * {@link ArchiveUnavailableException}.
     *
     * @param q the text to find
     * @return the first page (up to 50 hits)
     */
    public SearchPage search(String q) {
        return history.search(q, SearchOptions.DEFAULT);
    }

    /**
     * {@code GET /llm/search} with filters and paging: pass the answer's
     * {@code nextCursor} back with {@link SearchOptions#withCursor} for the next page, or
     * use {@link #searchAll}.
     *
     * @param q the text to find (at least 3 characters)
     * @param options filters, page size and cursor
     * @return one page
     */
    public SearchPage search(String q, SearchOptions options) {
        return history.search(q, options);
    }

    /**
     * Every hit of a search, page after page (lazily: a page is fetched when the previous
     * one is used up; {@code limit()} the stream to stop early).
     *
     * @param q the text to find (at least 3 characters)
     * @param options filters, page size, and the cursor to start from
     * @return the hits in the server's order
     */
    public Stream<SearchHit> searchAll(String q, SearchOptions options) {
        return history.searchAll(q, options);
    }

    /**
     * {@code GET /llm/jobs/{name}/runs}: the first page of a job's archived runs.
     *
     * @param job the job's name
     * @return the runs, newest first
     */
    public RunsPage runs(String job) {
        return history.runs(job, RunsOptions.DEFAULT);
    }

    /**
     * {@code GET /llm/jobs/{name}/runs} with bounds and paging.
     *
     * @param job the job's name
     * @param options time bounds, page size and cursor
     * @return one page
     */
    public RunsPage runs(String job, RunsOptions options) {
        return history.runs(job, options);
    }

    /**
     * Every archived run of a job, page after page (lazily).
     *
     * @param job the job's name
     * @param options time bounds, page size, and the cursor to start from
     * @return the runs in the server's order
     */
    public Stream<RunSummary> allRuns(String job, RunsOptions options) {
        return history.allRuns(job, options);
    }

    /**
     * {@code GET /llm/jobs/{name}/stats}: counts by start-up outcome and failure cause, and
     * the p50/p95 time to ready, of a job's archived runs.
     *
     * @param job the job's name
     * @param since only runs finished since then, or null for all
     * @return the statistics
     */
    public JobStats stats(String job, Instant since) {
        return history.stats(job, since);
    }
}
