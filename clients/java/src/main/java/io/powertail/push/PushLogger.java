package io.powertail.push;

import java.io.PrintWriter;
import java.lang.ref.Cleaner;
import java.lang.reflect.Array;
import java.io.StringWriter;
import java.net.InetAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.time.Duration;
import java.util.Arrays;
import java.util.Objects;
import java.util.StringJoiner;
import tech.powerjob.worker.core.processor.TaskContext;
import tech.powerjob.worker.log.OmsLogger;

/**
 * A PowerJob {@link OmsLogger} that writes every line to the task's own {@code OmsLogger},
 * as a processor does today, <b>and</b> pushes the same line to powertail
 * ({@code POST /llm/logs/{instanceId}/append}), so that a reader gets it within a second
 * instead of after PowerJob's 5 s flush and 10 s file cache. powertail serves each line
 * once, whichever copy reaches it first; PowerJob's copy stays the fallback when a push is
 * lost.
 *
 * <pre>{@code
 * public ProcessResult process(TaskContext context) throws Exception {
 *     try (PushLogger log = PushLogger.forTask(context)) {     // POWERTAIL_URL, POWERTAIL_TOKEN
 *         log.info("start {} on port {}", model, port);
 *         int code = ProcessPump.of(log).run(new ProcessBuilder("python3", "start.py"));
 *         return new ProcessResult(code == 0, "exit code " + code);
 *     }                                                       // sends the rest, final: true
 * }
 * }</pre>
 *
 * <p>Logging never blocks and never throws: a line is formatted, handed to the
 * {@code OmsLogger}, and put in a bounded queue (default 10 000 lines) in a microsecond or
 * so; when the queue is full the line is not pushed and counted in
 * {@link PushStats#dropped()} (PowerJob still has it). One daemon thread sends a batch once
 * {@code batchSize} (20) lines wait, or sooner once the oldest line waited {@code linger}
 * (100 ms), one batch in flight (lines that queued up meanwhile catch up in batches of up to
 * {@code maxBatchSize}, 200, halved after a 413), each retried with back-off (100 ms doubling
 * up to {@code maxBackoff}, 5 s, or the answer's {@code Retry-After}) under the same
 * {@code seq} until powertail acknowledges it, for at most {@code giveUpAfter} (60 s). A
 * 401, 403, 404 or 405 (no push endpoint, no {@code logs:push} scope, an instance powertail
 * does not know) turns pushing off for the rest of the run; another 4xx drops that batch.
 * {@link #close()} sends what is queued and a last batch with {@code final: true}, waiting
 * at most {@code closeTimeout} (3 s).
 *
 * <p>The body of each batch is that of issue 19, item 1: {@code source} (this run:
 * {@code <worker>/<random hex>}), {@code seq} (from 0), {@code worker}, {@code timestamp},
 * {@code final}, {@code lines} [{@code ts}, {@code level}, {@code text}]. {@code ts} is taken
 * right before the {@code OmsLogger} call, which stamps PowerJob's copy with the same clock.
 *
 * <p>Messages use SLF4J's {@code {}} placeholders, as {@code OmsLogger} does; a trailing
 * {@link Throwable} argument appends its stack trace. Both copies get the same text:
 * the {@code OmsLogger} is called with {@code ("{}", text)}. Lines below PowerJob's log level
 * for the job are dropped by PowerJob but still pushed, unless {@link Builder#pushLevel}
 * is set to that level too (then both copies hold the same lines).
 */
public final class PushLogger implements OmsLogger, AutoCloseable {
    /** Environment variable (or system property {@code powertail.url}) read by {@link #forTask}. */
    public static final String ENV_URL = "POWERTAIL_URL";
    /** Environment variable (or system property {@code powertail.token}) read by {@link #forTask}. */
    public static final String ENV_TOKEN = "POWERTAIL_TOKEN";
    /** Environment variable (or system property {@code powertail.worker}) read by {@link #forTask}. */
    public static final String ENV_WORKER = "POWERTAIL_WORKER";

    private static final System.Logger LOG = System.getLogger("io.powertail.push");

    /** Closes the pusher of a logger the task dropped without closing it. */
    private static final Cleaner CLEANER = Cleaner.create();

    private final OmsLogger delegate;
    private final Pusher pusher;
    private final Duration closeTimeout;
    private final Level pushLevel;
    private final Object order = new Object();

    private PushLogger(Builder b) {
        this.delegate = b.omsLogger;
        this.pusher = b.baseUrl == null ? null : new Pusher(b);
        this.closeTimeout = b.closeTimeout;
        this.pushLevel = b.pushLevel;
        if (pusher != null) {
            // A task that forgets close() must not leave its sender thread behind: once the
            // logger is unreachable, its sender sends the rest and a final batch, and ends.
            Pusher p = pusher;
            Duration t = closeTimeout;
            CLEANER.register(this, () -> p.closeAsync(t));
        }
    }

    /**
     * A logger for a task: its instance id and {@code OmsLogger}, and powertail's URL,
     * token and worker name from the environment ({@value #ENV_URL}, {@value #ENV_TOKEN},
     * {@value #ENV_WORKER}) or the system properties {@code powertail.url},
     * {@code powertail.token}, {@code powertail.worker}. Without a URL it only writes to the
     * {@code OmsLogger} (pushing is opt-in).
     *
     * @param context the task's context
     * @return the logger; close it when the task ends
     */
    public static PushLogger forTask(TaskContext context) {
        return forTask(context, setting("powertail.url", ENV_URL), setting("powertail.token", ENV_TOKEN));
    }

    /**
     * A logger for a task, pushing to {@code baseUrl}.
     *
     * @param context the task's context
     * @param baseUrl powertail's root URL, or null not to push (a URL that is not http(s),
     *     or a task without an instance id, also only writes to the {@code OmsLogger}, with a
     *     warning: a setting must not fail the task)
     * @param token an API token with the {@code logs:push} scope, or null
     * @return the logger; close it when the task ends
     */
    public static PushLogger forTask(TaskContext context, String baseUrl, String token) {
        Long id = context.getInstanceId();
        try {
            Builder b = builder(baseUrl, id == null ? 0 : id).omsLogger(context.getOmsLogger()).token(token);
            String worker = setting("powertail.worker", ENV_WORKER);
            if (worker != null) {
                b.worker(worker);
            }
            return b.build();
        } catch (IllegalArgumentException e) {
            // A mistyped POWERTAIL_URL must not fail the task: PowerJob's log still gets every line.
            LOG.log(System.Logger.Level.WARNING, "powertail push off for instance {0}: {1}", id, e.getMessage());
            return builder(null, 1).omsLogger(context.getOmsLogger()).build();
        }
    }

    private static String setting(String property, String env) {
        String v = System.getProperty(property);
        if (v == null || v.isBlank()) {
            v = System.getenv(env);
        }
        return v == null || v.isBlank() ? null : v.trim();
    }

    /**
     * A builder.
     *
     * @param baseUrl powertail's root URL ({@code http://127.0.0.1:8080}), or null not to push
     * @param instanceId the PowerJob instance id
     * @return the builder
     */
    public static Builder builder(String baseUrl, long instanceId) {
        return new Builder(baseUrl, instanceId);
    }

    /** Settings of a {@link PushLogger}. */
    public static final class Builder {
        final String baseUrl;
        final long instanceId;
        OmsLogger omsLogger;
        String token;
        String worker = DefaultWorker.NAME;
        int batchSize = 20;
        int maxBatchSize = 200;
        Duration linger = Duration.ofMillis(100);
        int queueCapacity = 10_000;
        Duration requestTimeout = Duration.ofSeconds(5);
        Duration maxBackoff = Duration.ofSeconds(5);
        Duration giveUpAfter = Duration.ofSeconds(60);
        Duration closeTimeout = Duration.ofSeconds(3);
        Level pushLevel = Level.DEBUG;
        HttpClient httpClient;

        private Builder(String baseUrl, long instanceId) {
            if (baseUrl != null) {
                URI uri = URI.create(baseUrl);
                if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
                    throw new IllegalArgumentException("baseUrl must be an http(s) URL, not " + baseUrl);
                }
            }
            if (instanceId <= 0) {
                throw new IllegalArgumentException("instanceId must be positive, not " + instanceId);
            }
            this.baseUrl = baseUrl;
            this.instanceId = instanceId;
        }

        /**
         * The task's {@code OmsLogger} ({@code context.getOmsLogger()}), or null for none.
         *
         * @param value the logger
         * @return this
         */
        public Builder omsLogger(OmsLogger value) {
            this.omsLogger = value;
            return this;
        }

        /**
         * An API token with the {@code logs:push} scope, sent as {@code Authorization: Bearer}
         * (never logged).
         *
         * @param value the token, or null
         * @return this
         */
        public Builder token(String value) {
            this.token = value;
            return this;
        }

        /**
         * The worker's address as PowerJob writes it in its log lines ({@code 10.0.0.5:27777});
         * default: this host's address and {@code powerjob.worker.port} (27777).
         *
         * @param value the address
         * @return this
         */
        public Builder worker(String value) {
            this.worker = Objects.requireNonNull(value, "worker");
            return this;
        }

        /**
         * Lines a batch holds at most (default 20).
         *
         * @param value 1..=1000
         * @return this
         */
        public Builder batchSize(int value) {
            if (value < 1 || value > 1000) {
                throw new IllegalArgumentException("batchSize must be 1..=1000");
            }
            this.batchSize = value;
            return this;
        }

        /**
         * Lines a catch-up batch holds at most when more than {@code batchSize} queued up
         * while a batch was in flight (default 200; a 413 halves it).
         *
         * @param value 1..=10000
         * @return this
         */
        public Builder maxBatchSize(int value) {
            if (value < 1 || value > 10_000) {
                throw new IllegalArgumentException("maxBatchSize must be 1..=10000");
            }
            this.maxBatchSize = value;
            return this;
        }

        /**
         * How long a line may wait for its batch to fill (default 100 ms).
         *
         * @param value the time
         * @return this
         */
        public Builder linger(Duration value) {
            this.linger = nonNegative(value, "linger");
            return this;
        }

        /**
         * Lines queued at most; more are dropped and counted (default 10 000).
         *
         * @param value at least 1
         * @return this
         */
        public Builder queueCapacity(int value) {
            if (value < 1) {
                throw new IllegalArgumentException("queueCapacity must be positive");
            }
            this.queueCapacity = value;
            return this;
        }

        /**
         * How long one push may take (default 5 s).
         *
         * @param value the time
         * @return this
         */
        public Builder requestTimeout(Duration value) {
            this.requestTimeout = positive(value, "requestTimeout");
            return this;
        }

        /**
         * The longest pause between two tries of a batch (default 5 s).
         *
         * @param value the time
         * @return this
         */
        public Builder maxBackoff(Duration value) {
            this.maxBackoff = positive(value, "maxBackoff");
            return this;
        }

        /**
         * How long one batch is retried before it is given up (default 60 s).
         *
         * @param value the time
         * @return this
         */
        public Builder giveUpAfter(Duration value) {
            this.giveUpAfter = nonNegative(value, "giveUpAfter");
            return this;
        }

        /**
         * How long {@link PushLogger#close()} waits for the last batches (default 3 s).
         *
         * @param value the time
         * @return this
         */
        public Builder closeTimeout(Duration value) {
            this.closeTimeout = nonNegative(value, "closeTimeout");
            return this;
        }

        /**
         * The lowest level pushed (default {@link Level#DEBUG}: every line). Set it to the
         * job's log level in PowerJob when that is higher, so that lines PowerJob drops are
         * not pushed either; lines below it go to the {@code OmsLogger} only (counted as
         * {@link PushStats#dropped()}).
         *
         * @param value the level
         * @return this
         */
        public Builder pushLevel(Level value) {
            this.pushLevel = Objects.requireNonNull(value, "pushLevel");
            return this;
        }

        /**
         * The {@link HttpClient} to push with (default: one shared by every pusher).
         *
         * @param value the client
         * @return this
         */
        public Builder httpClient(HttpClient value) {
            this.httpClient = value;
            return this;
        }

        /** The logger; its sender thread starts now. */
        public PushLogger build() {
            return new PushLogger(this);
        }

        private static Duration positive(Duration d, String name) {
            if (d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException(name + " must be positive");
            }
            return d;
        }

        private static Duration nonNegative(Duration d, String name) {
            if (d.isNegative()) {
                throw new IllegalArgumentException(name + " must not be negative");
            }
            return d;
        }
    }

    /** This host's address and PowerJob's worker port: what PowerJob names the worker. */
    private static final class DefaultWorker {
        static final String NAME = compute();

        private static String compute() {
            String port = System.getProperty("powerjob.worker.port", "27777");
            String host;
            try {
                host = InetAddress.getLocalHost().getHostAddress();
            } catch (java.io.IOException | SecurityException e) {
                host = "127.0.0.1";
            }
            return host + ":" + port;
        }
    }

    // --- logging -----------------------------------------------------------------------

    /**
     * Logs one line: to the {@code OmsLogger}, and into the push queue. Never blocks or
     * throws (an {@code OmsLogger} that throws is ignored).
     *
     * @param level the level
     * @param text the line
     */
    public void log(Level level, String text) {
        String t = text == null ? "null" : text;
        // One lock for the two copies, so that lines logged at once from several threads
        // (a process's stdout and stderr) reach PowerJob and the push in the same order.
        synchronized (order) {
            long ts = System.currentTimeMillis();
            if (delegate != null) {
                try {
                    switch (level) {
                        case DEBUG -> delegate.debug("{}", t);
                        case INFO -> delegate.info("{}", t);
                        case WARN -> delegate.warn("{}", t);
                        case ERROR -> delegate.error("{}", t);
                    }
                } catch (RuntimeException e) {
                    // PowerJob's logger must not fail the task either.
                }
            }
            if (pusher != null) {
                if (level.compareTo(pushLevel) >= 0) {
                    pusher.offer(ts, level, t);
                } else {
                    pusher.skip();
                }
            }
        }
    }

    @Override
    public void debug(String messagePattern, Object... args) {
        log(Level.DEBUG, format(messagePattern, args));
    }

    @Override
    public void info(String messagePattern, Object... args) {
        log(Level.INFO, format(messagePattern, args));
    }

    @Override
    public void warn(String messagePattern, Object... args) {
        log(Level.WARN, format(messagePattern, args));
    }

    @Override
    public void error(String messagePattern, Object... args) {
        log(Level.ERROR, format(messagePattern, args));
    }

    /**
     * SLF4J's {@code {}} substitution ({@code \{}} is a literal {@code {}}); a
     * {@link Throwable} left over after the placeholders appends its stack trace, as
     * PowerJob's {@code OmsLogger} does.
     */
    static String format(String pattern, Object... args) {
        if (pattern == null) {
            return "null";
        }
        if (args == null || args.length == 0) {
            return pattern;
        }
        StringBuilder sb = new StringBuilder(pattern.length() + 16 * args.length);
        int used = 0;
        int i = 0;
        while (i < pattern.length()) {
            int at = pattern.indexOf("{}", i);
            if (at < 0 || used >= args.length) {
                break;
            }
            if (at > 0 && pattern.charAt(at - 1) == '\\') {
                if (at > 1 && pattern.charAt(at - 2) == '\\') {
                    sb.append(pattern, i, at - 1); // "\\{}": a backslash, then a placeholder
                    sb.append(text(args[used++]));
                } else {
                    sb.append(pattern, i, at - 1).append("{}"); // "\{}": literal
                }
            } else {
                sb.append(pattern, i, at).append(text(args[used++]));
            }
            i = at + 2;
        }
        sb.append(pattern, Math.min(i, pattern.length()), pattern.length());
        if (used < args.length && args[args.length - 1] instanceof Throwable t) {
            StringWriter w = new StringWriter();
            t.printStackTrace(new PrintWriter(w));
            sb.append(System.lineSeparator()).append(w);
        }
        return sb.toString();
    }

    /** An argument as SLF4J prints it; a {@code toString()} that throws must not fail the task. */
    private static String text(Object o) {
        try {
            return textOf(o);
        } catch (RuntimeException | StackOverflowError e) {
            return "[FAILED toString()]"; // SLF4J's MessageFormatter says the same
        }
    }

    private static String textOf(Object o) {
        if (o instanceof Object[] a) {
            return Arrays.deepToString(a);
        }
        if (o != null && o.getClass().isArray()) { // a primitive array, as SLF4J prints it
            StringJoiner j = new StringJoiner(", ", "[", "]");
            for (int k = 0; k < Array.getLength(o); k++) {
                j.add(String.valueOf(Array.get(o, k)));
            }
            return j.toString();
        }
        return String.valueOf(o);
    }

    // --- state -------------------------------------------------------------------------

    /** What happened to the lines so far. */
    public PushStats stats() {
        return pusher == null
                ? new PushStats(0, 0, 0, 0, 0, 0, 0, true, 0)
                : pusher.stats();
    }

    /** Whether lines are pushed (a URL was configured). */
    public boolean pushing() {
        return pusher != null;
    }

    /**
     * Sends what is queued and a last batch with {@code final: true} (this source sends
     * nothing more), waiting at most {@code closeTimeout}; later lines still go to the
     * {@code OmsLogger} but are not pushed. Idempotent; never throws.
     */
    @Override
    public void close() {
        if (pusher != null) {
            pusher.close(closeTimeout);
        }
    }
}
