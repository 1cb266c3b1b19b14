package io.powertail.push;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.powertail.client.Backoff;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.LockSupport;

/**
 * The sending half of a {@link PushLogger}: a bounded queue that the logging threads fill
 * without blocking, and one daemon thread that sends it to
 * {@code POST /llm/logs/{instanceId}/append} in batches (issue 19 item 1): at
 * {@code batchSize} lines or once the oldest waited {@code linger}, one batch in flight,
 * each retried with back-off under the same {@code seq} until powertail acknowledges it.
 */
final class Pusher {
    private static final System.Logger LOG = System.getLogger("io.powertail.push");
    private static final ObjectMapper JSON = JsonMapper.builder().build();
    /** How long the sender waits for a first line before it looks at {@code closing} again. */
    private static final long IDLE_POLL_MS = 200;

    /** One line as it was logged. */
    record Line(long ts, Level level, String text) {}

    private final URI endpoint;
    private final String authorization;
    private final String instanceId;
    private final String source;
    private final String worker;
    private final int batchSize;
    /** Lines a catch-up batch takes when more than {@code batchSize} wait; halved on a 413. */
    private volatile int maxBatch;
    private final long lingerMs;
    private final Duration requestTimeout;
    private final long giveUpNanos;
    private final Backoff backoff;
    private final HttpClient http;
    private final ArrayBlockingQueue<Line> queue;
    private final Thread sender;

    private final LongAdder queued = new LongAdder();
    private final LongAdder dropped = new LongAdder();
    private final AtomicLong sent = new AtomicLong();
    private final AtomicLong rejected = new AtomicLong();
    private final AtomicLong batches = new AtomicLong();
    private final AtomicLong retries = new AtomicLong();
    private final AtomicLong duplicates = new AtomicLong();
    /** Set while the sender waits for a batch to fill: only then does a producer wake it. */
    private volatile boolean lingering;
    private volatile boolean closing;
    private volatile boolean disabled;
    private volatile long abandonAtNanos = Long.MAX_VALUE;
    private long seq;

    Pusher(PushLogger.Builder b) {
        String base = b.baseUrl.replaceAll("/+$", "");
        this.instanceId = Long.toString(b.instanceId);
        this.endpoint = URI.create(base + "/llm/logs/" + instanceId + "/append");
        this.authorization = b.token == null ? null : "Bearer " + b.token;
        this.worker = b.worker;
        this.source = b.worker + "/" + Long.toHexString(ThreadLocalRandom.current().nextLong() | Long.MIN_VALUE);
        this.batchSize = b.batchSize;
        this.maxBatch = Math.max(b.batchSize, b.maxBatchSize);
        this.lingerMs = b.linger.toMillis();
        this.requestTimeout = b.requestTimeout;
        this.giveUpNanos = b.giveUpAfter.toNanos();
        Duration first = Duration.ofMillis(100);
        this.backoff = new Backoff(b.maxBackoff.compareTo(first) < 0 ? b.maxBackoff : first, b.maxBackoff);
        this.http = b.httpClient != null ? b.httpClient : DefaultHttp.CLIENT;
        this.queue = new ArrayBlockingQueue<>(b.queueCapacity);
        this.sender = new Thread(this::run, "powertail-push-" + instanceId);
        this.sender.setDaemon(true);
        this.sender.start();
    }

    /** One HTTP client for every pusher of the process (its selector thread is shared). */
    private static final class DefaultHttp {
        static final HttpClient CLIENT = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(2))
                .build();
    }

    /** The name of this pusher run ({@code source} of every batch). */
    String source() {
        return source;
    }

    /** Queues a line; never blocks. False when it was dropped. */
    boolean offer(long ts, Level level, String text) {
        if (closing || disabled) {
            dropped.increment();
            return false;
        }
        if (!queue.offer(new Line(ts, level, text))) {
            dropped.increment();
            return false;
        }
        queued.increment();
        if (lingering && queue.size() + 1 >= batchSize) {
            LockSupport.unpark(sender);
        }
        return true;
    }

    /** Counts a line not pushed on purpose (below the push level). */
    void skip() {
        dropped.increment();
    }

    PushStats stats() {
        long q = queued.sum();
        long s = sent.get();
        long r = rejected.get();
        return new PushStats(q, dropped.sum(), s, r, batches.get(), retries.get(), Math.max(0, q - s - r), disabled, duplicates.get());
    }

    /**
     * Sends what is queued, then a batch with {@code final: true}, waiting for that at most
     * {@code timeout}; past it the rest is abandoned (counted as rejected).
     */
    void close(Duration timeout) {
        if (!closeAsync(timeout)) {
            return;
        }
        try {
            sender.join(Math.max(1, timeout.toMillis()));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (sender.isAlive()) {
            sender.interrupt();
        }
    }

    /**
     * Starts closing without waiting: the sender sends what is queued and the final batch
     * within {@code timeout}, then ends. False if it was closing already.
     */
    synchronized boolean closeAsync(Duration timeout) {
        if (closing) {
            return false;
        }
        abandonAtNanos = System.nanoTime() + timeout.toNanos();
        closing = true;
        LockSupport.unpark(sender);
        return true;
    }

    // --- the sender thread -------------------------------------------------------------

    private void run() {
        List<Line> batch = new ArrayList<>(batchSize);
        boolean finalSent = false;
        try {
            while (!Thread.currentThread().isInterrupted()) {
                Line first = queue.poll(IDLE_POLL_MS, TimeUnit.MILLISECONDS);
                if (first == null) {
                    if (closing) {
                        break;
                    }
                    continue;
                }
                batch.add(first);
                // The line's own time stamp starts its linger (one clock read a line, not two),
                // bounded so that a wall clock set back cannot hold it longer.
                long lingerLeft = Math.max(0, Math.min(lingerMs, first.ts() + lingerMs - System.currentTimeMillis()));
                long deadline = System.nanoTime() + lingerLeft * 1_000_000;
                lingering = true;
                while (!closing && queue.size() + 1 < batchSize) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        break;
                    }
                    LockSupport.parkNanos(this, left);
                }
                lingering = false;
                // A batch goes out at batchSize lines; lines that queued up meanwhile (one batch
                // is in flight at a time) catch up in batches of up to maxBatch.
                queue.drainTo(batch, maxBatch - 1);
                boolean last = closing && queue.isEmpty();
                deliver(batch, last);
                batch.clear();
                if (last) {
                    finalSent = true;
                    break;
                }
            }
            if (!finalSent && !disabled && !Thread.currentThread().isInterrupted()) {
                deliver(batch, true);
            }
        } catch (InterruptedException e) {
            // close() gave up waiting: abandon the rest
        } finally {
            // What close() abandoned: the batch in hand and what is still queued.
            rejected.addAndGet(batch.size() + queue.drainTo(new ArrayList<>()));
        }
    }

    private Map<String, Object> body(List<Line> lines, boolean last) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("source", source);
        body.put("seq", seq);
        body.put("worker", worker);
        body.put("timestamp", lines.isEmpty() ? System.currentTimeMillis() : lines.get(0).ts());
        body.put("final", last);
        List<Map<String, Object>> out = new ArrayList<>(lines.size());
        for (Line l : lines) {
            Map<String, Object> m = new LinkedHashMap<>(4);
            m.put("ts", l.ts());
            m.put("level", l.level().name());
            m.put("text", l.text());
            out.add(m);
        }
        body.put("lines", out);
        return body;
    }

    /**
     * Sends one batch until powertail acknowledges it (2xx), refuses it for good (4xx but
     * 408, 425, 429), or {@code giveUpAfter} passes. Nothing is sent once disabled.
     */
    private void deliver(List<Line> lines, boolean last) throws InterruptedException {
        byte[] payload;
        try {
            payload = JSON.writeValueAsBytes(body(lines, last));
        } catch (JsonProcessingException e) {
            rejected.addAndGet(lines.size());
            lines.clear();
            return;
        }
        long started = System.nanoTime();
        int failures = 0;
        while (!disabled) {
            HttpRequest.Builder rb = HttpRequest.newBuilder(endpoint)
                    .timeout(requestTimeout)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", "powertail-client-java/0.1 push")
                    .POST(HttpRequest.BodyPublishers.ofByteArray(payload));
            if (authorization != null) {
                rb.header("Authorization", authorization);
            }
            int status;
            Duration retryAfter = null;
            boolean duplicate = false;
            try {
                HttpResponse<String> r = http.send(rb.build(), HttpResponse.BodyHandlers.ofString());
                status = r.statusCode();
                retryAfter = Backoff.retryAfter(r.headers().firstValue("retry-after").orElse(null));
                duplicate = status / 100 == 2 && isDuplicate(r.body());
                if (status / 100 != 2 && failures == 0) {
                    LOG.log(System.Logger.Level.WARNING, "powertail push of instance {0}: HTTP {1} {2}",
                            instanceId, status, abbreviate(r.body()));
                }
            } catch (IOException e) {
                status = -1;
                if (failures == 0) {
                    LOG.log(System.Logger.Level.WARNING, "powertail push of instance {0} to {1}: {2}",
                            instanceId, endpoint.getAuthority(), e.toString());
                }
            }
            if (status / 100 == 2) {
                sent.addAndGet(lines.size());
                batches.incrementAndGet();
                if (duplicate) {
                    duplicates.incrementAndGet(); // a retry of a batch that had arrived
                }
                seq++;
                lines.clear();
                return;
            }
            if (status == 401 || status == 403 || status == 404 || status == 405) {
                // No endpoint (an older powertail), no scope, or an instance it does not
                // know: nothing later can succeed. PowerJob's log still has every line.
                disabled = true;
                LOG.log(System.Logger.Level.WARNING, "powertail push of instance {0} disabled after HTTP {1}", instanceId, status);
                break;
            }
            if (status == 413 && lines.size() > 1) {
                // Too large for this powertail: nothing was applied. Send it in halves under
                // this seq and the next, and keep later batches at most that large.
                int half = lines.size() / 2;
                maxBatch = Math.max(1, Math.min(maxBatch, half));
                List<Line> first = new ArrayList<>(lines.subList(0, half));
                List<Line> second = new ArrayList<>(lines.subList(half, lines.size()));
                lines.clear();
                deliver(first, false);
                deliver(second, last);
                return;
            }
            boolean transientFailure = status < 0 || status == 408 || status == 425 || status == 429 || status >= 500;
            if (!transientFailure) {
                // Refused for good (400, 413, ...): nothing was applied, the seq is free again.
                rejected.addAndGet(lines.size());
                lines.clear();
                return;
            }
            failures++;
            long now = System.nanoTime();
            if (now - started > giveUpNanos || (closing && now - abandonAtNanos > 0)) {
                // Maybe applied, maybe not: the next batch takes the next seq, and powertail
                // skips the gap after its wait; the polled log fills it in.
                LOG.log(System.Logger.Level.WARNING, "powertail push of instance {0}: batch {1} given up after {2} tries",
                        instanceId, seq, failures);
                rejected.addAndGet(lines.size());
                lines.clear();
                seq++;
                return;
            }
            retries.incrementAndGet();
            long pause = backoff.delayMillis(failures, retryAfter);
            if (closing) {
                pause = Math.min(pause, Math.max(1, (abandonAtNanos - System.nanoTime()) / 1_000_000));
            }
            Thread.sleep(Math.max(1, pause));
        }
        rejected.addAndGet(lines.size());
        lines.clear();
    }

    /** Whether an acknowledgement says {@code "duplicate": true} (a batch seen before). */
    static boolean isDuplicate(String body) {
        if (body == null || !body.contains("duplicate")) {
            return false;
        }
        try {
            return JSON.readTree(body).path("duplicate").asBoolean(false);
        } catch (JsonProcessingException e) {
            return false;
        }
    }

    private static String abbreviate(String s) {
        if (s == null) {
            return "";
        }
        String t = s.strip();
        return t.length() > 200 ? t.substring(0, 200) : t;
    }
}
