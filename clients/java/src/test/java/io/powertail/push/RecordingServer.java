package io.powertail.push;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.IntUnaryOperator;

/**
 * A tiny push endpoint on 127.0.0.1 (JDK {@code HttpServer}) that records every request it
 * gets (path, {@code Authorization}, JSON body) and answers with the status its policy
 * gives for the n-th request (0-based); 2xx answers carry powertail's shape. With
 * {@link #hang()} every handler blocks until {@link #release()}.
 */
final class RecordingServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One request as received. */
    record Request(String method, String path, String authorization, JsonNode body) {}

    private final HttpServer server;
    private final ExecutorService executor = Executors.newCachedThreadPool();
    private final List<Request> requests = new ArrayList<>();
    private volatile IntUnaryOperator policy = n -> 200;
    private volatile CountDownLatch gate = new CountDownLatch(0);

    static {
        // Answers in one segment: without it the JDK server's header and body writes meet
        // the client's delayed ACK, 40 ms a request.
        System.setProperty("sun.net.httpserver.nodelay", "true");
    }

    RecordingServer() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", this::handle);
        server.setExecutor(executor);
        server.start();
    }

    String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    /** The status of the n-th request. */
    RecordingServer answer(IntUnaryOperator statusOfRequest) {
        this.policy = statusOfRequest;
        return this;
    }

    /** From now on every request is held until {@link #release()}. */
    void hang() {
        gate = new CountDownLatch(1);
    }

    void release() {
        gate.countDown();
    }

    synchronized List<Request> requests() {
        return List.copyOf(requests);
    }

    /** The bodies of the requests answered 2xx, in order. */
    synchronized List<JsonNode> accepted() {
        return List.copyOf(acceptedBodies);
    }

    private final List<JsonNode> acceptedBodies = new ArrayList<>();
    private final List<Long> receivedNanos = new ArrayList<>();

    /** When each accepted body arrived ({@code System.nanoTime()}), in order. */
    synchronized List<Long> acceptedAtNanos() {
        return List.copyOf(receivedNanos);
    }

    private void handle(HttpExchange ex) throws IOException {
        byte[] in = ex.getRequestBody().readAllBytes();
        long arrived = System.nanoTime();
        JsonNode body = in.length == 0 ? null : JSON.readTree(in);
        int n;
        synchronized (this) {
            n = requests.size();
            requests.add(new Request(ex.getRequestMethod(), ex.getRequestURI().getPath(),
                    ex.getRequestHeaders().getFirst("Authorization"), body));
        }
        try {
            gate.await(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        int status = policy.applyAsInt(n);
        String answer;
        if (status / 100 == 2) {
            synchronized (this) {
                acceptedBodies.add(body);
                receivedNanos.add(arrived);
            }
            answer = "{\"instanceId\":\"1\",\"accepted\":" + (body == null ? 0 : body.path("lines").size())
                    + ",\"duplicate\":false,\"nextSeq\":" + (body == null ? 0 : body.path("seq").asLong() + 1) + "}";
        } else {
            answer = "{\"error\":{\"code\":\"x\",\"message\":\"status " + status + "\"}}";
        }
        byte[] out = answer.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        if (status == 503 || status == 429) {
            ex.getResponseHeaders().set("Retry-After", "0");
        }
        ex.sendResponseHeaders(status, out.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(out);
        }
    }

    /** Waits until {@code condition} holds, at most {@code timeout}. */
    static void await(Duration timeout, BooleanSupplier condition, String what) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
        }
    }

    @Override
    public void close() {
        release();
        server.stop(0);
        executor.shutdownNow();
    }
}
