package io.powertail.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.powertail.testing.PowertailDemo;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Retries, typed errors and stream resumption against a scripted HTTP server. */
@Timeout(60)
class FakeServerTest {
    static {
        System.setProperty("sun.net.httpserver.nodelay", "true");
    }

    /** One scripted answer: it writes the whole exchange. */
    @FunctionalInterface
    interface Reply {
        void write(HttpExchange ex) throws IOException;
    }

    /** A request as received. */
    record Seen(String path, String query, String lastEventId) {}

    private HttpServer server;
    private final List<Seen> seen = new CopyOnWriteArrayList<>();

    private String serve(Reply... replies) throws IOException {
        List<Reply> script = new ArrayList<>(List.of(replies));
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.setExecutor(Executors.newCachedThreadPool());
        server.createContext("/", ex -> {
            seen.add(new Seen(ex.getRequestURI().getPath(), ex.getRequestURI().getRawQuery(),
                    ex.getRequestHeaders().getFirst("Last-Event-ID")));
            Reply r;
            synchronized (script) {
                r = script.size() > 1 ? script.remove(0) : script.get(0);
            }
            try {
                r.write(ex);
            } finally {
                ex.close();
            }
        });
        server.start();
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.stop(0);
        }
    }

    static Reply json(int status, String body, String... headers) {
        return ex -> {
            for (int i = 0; i + 1 < headers.length; i += 2) {
                ex.getResponseHeaders().set(headers[i], headers[i + 1]);
            }
            ex.getResponseHeaders().set("Content-Type", "application/json");
            byte[] b = body.getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(status, b.length == 0 ? -1 : b.length);
            if (b.length > 0) {
                ex.getResponseBody().write(b);
            }
        };
    }

    static Reply error(int status, String code, String... headers) {
        return json(status, "{\"error\":{\"code\":\"" + code + "\",\"message\":\"m " + code + "\"}}", headers);
    }

    static String page(long from, List<String> lines, boolean complete, String epoch) {
        StringBuilder quoted = new StringBuilder();
        for (String l : lines) {
            quoted.append(quoted.length() == 0 ? "" : ",").append('"').append(l).append('"');
        }
        long next = from + lines.size();
        return "{\"instanceId\":\"7\",\"epoch\":\"" + epoch + "\",\"fromLine\":" + from + ",\"nextLine\":" + next
                + ",\"lines\":[" + quoted + "],\"totalLines\":" + next + ",\"status\":\"RUNNING\",\"complete\":" + complete
                + ",\"stale\":false,\"attempt\":1,\"attempts\":[{\"attempt\":1,\"fromLine\":0}]}";
    }

    /** An event stream that writes {@code events} and then stays open {@code holdMs}. */
    static Reply events(long holdMs, String... events) {
        return ex -> {
            ex.getResponseHeaders().set("Content-Type", "text/event-stream");
            ex.sendResponseHeaders(200, 0);
            OutputStream os = ex.getResponseBody();
            for (String e : events) {
                os.write(e.getBytes(StandardCharsets.UTF_8));
                os.flush();
            }
            try {
                Thread.sleep(holdMs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
    }

    static String linesEvent(long from, String epoch, String... lines) {
        StringBuilder quoted = new StringBuilder();
        for (String l : lines) {
            quoted.append(quoted.length() == 0 ? "" : ",").append('"').append(l).append('"');
        }
        long next = from + lines.length;
        return "event: lines\nid: " + next + "\ndata: {\"epoch\":\"" + epoch + "\",\"fromLine\":" + from + ",\"nextLine\":" + next
                + ",\"lines\":[" + quoted + "]}\n\n";
    }

    static String endEvent(long next, String epoch) {
        return "event: end\nid: " + next + "\ndata: {\"epoch\":\"" + epoch + "\",\"nextLine\":" + next + "}\n\n";
    }

    private static PowertailClient client(String url, List<Long> sleeps) {
        PowertailClient pt = PowertailClient.builder(url).maxRetries(3).minPollInterval(Duration.ZERO).build();
        pt.transport().sleeper = sleeps::add;
        return pt;
    }

    @Test
    void a_refused_connection_fails_within_the_connect_budget() {
        String nobody = "http://127.0.0.1:" + PowertailDemo.freePort();
        for (Duration budget : List.of(Duration.ZERO, Duration.ofMillis(500), Duration.ofSeconds(2))) {
            PowertailClient pt = PowertailClient.builder(nobody).connectRetryBudget(budget).build();
            long started = System.nanoTime();
            PowertailConnectionException e = assertThrows(PowertailConnectionException.class, () -> pt.read("1"));
            long tookMs = (System.nanoTime() - started) / 1_000_000;
            assertTrue(tookMs <= budget.toMillis() + 1_000, budget + ": failed after " + tookMs + " ms");
            assertEquals("connection_error", e.code());
            assertTrue(e.status().isEmpty());
            assertTrue(e.getMessage().contains("cannot connect to " + nobody), e.getMessage());
        }
        // Every call, a run included (nothing was sent), and a stream.
        PowertailClient pt = PowertailClient.builder(nobody).connectRetryBudget(Duration.ofMillis(300)).build();
        assertThrows(PowertailConnectionException.class, () -> pt.runJob("vllm-start"));
        assertThrows(PowertailConnectionException.class, () -> pt.stream("1").toList());
    }

    @Test
    void a_503_is_retried_after_its_retry_after_and_a_stale_answer_keeps_polling() throws IOException {
        String url = serve(
                error(503, "upstream_unavailable", "Retry-After", "3"),
                error(429, "rate_limited", "Retry-After", "1"),
                json(200, page(0, List.of("a"), false, "E")),
                json(200, page(1, List.of(), false, "E")),
                json(200, page(1, List.of("b"), true, "E")));
        List<Long> sleeps = new ArrayList<>();
        PowertailClient pt = client(url, sleeps);
        assertEquals(List.of("a", "b"), pt.follow("7", FollowOptions.DEFAULT.withLongPoll(Duration.ofSeconds(2))).toList());
        assertEquals(List.of(3000L, 1000L), sleeps);
        // The cursor and the epoch of the first answer go with every later read.
        assertEquals("instanceId=7&fromLine=0&waitMs=2000", seen.get(0).query());
        assertEquals("instanceId=7&fromLine=1&waitMs=2000&epoch=E", seen.get(3).query());
        assertEquals("instanceId=7&fromLine=1&waitMs=2000&epoch=E", seen.get(4).query());
    }

    @Test
    void retries_give_up_after_max_retries_with_the_typed_error() throws IOException {
        String url = serve(error(503, "upstream_unavailable", "Retry-After", "0"));
        List<Long> sleeps = new ArrayList<>();
        UpstreamUnavailableException e = assertThrows(UpstreamUnavailableException.class, () -> client(url, sleeps).read("7"));
        assertEquals(4, seen.size());
        assertEquals(List.of(0L, 0L, 0L), sleeps);
        assertTrue(e.isRetryable());
        assertInstanceOf(UpstreamException.class, e);
        assertEquals(Duration.ZERO, e.retryAfter().orElseThrow());
    }

    @Test
    void run_job_is_never_retried() throws IOException {
        String url = serve(error(503, "overloaded", "Retry-After", "1"));
        OverloadedException e = assertThrows(OverloadedException.class, () -> client(url, new ArrayList<>()).runJob("x", Map.of("port", 1)));
        assertInstanceOf(RetryableException.class, e);
        assertEquals(1, seen.size());
        assertEquals("/llm/jobs/x/run", seen.get(0).path());
    }

    @Test
    void every_error_code_has_its_exception() throws IOException {
        Map<String, Class<? extends PowertailException>> expected = Map.ofEntries(
                Map.entry("bad_request", BadRequestException.class),
                Map.entry("method_not_allowed", MethodNotAllowedException.class),
                Map.entry("payload_too_large", PayloadTooLargeException.class),
                Map.entry("headers_too_large", HeadersTooLargeException.class),
                Map.entry("unauthorized", UnauthorizedException.class),
                Map.entry("forbidden", ForbiddenException.class),
                Map.entry("not_found", NotFoundException.class),
                Map.entry("instance_not_found", InstanceNotFoundException.class),
                Map.entry("job_not_found", JobNotFoundException.class),
                Map.entry("conflict", ConflictException.class),
                Map.entry("epoch_mismatch", EpochMismatchException.class),
                Map.entry("rate_limited", RateLimitedException.class),
                Map.entry("overloaded", OverloadedException.class),
                Map.entry("upstream_error", UpstreamBadAnswerException.class),
                Map.entry("upstream_unavailable", UpstreamUnavailableException.class),
                Map.entry("upstream_timeout", UpstreamTimeoutException.class),
                Map.entry("store_unavailable", StoreUnavailableException.class),
                Map.entry("archive_unavailable", ArchiveUnavailableException.class),
                Map.entry("instance_conflict", InstanceConflictException.class),
                Map.entry("internal", InternalException.class));
        assertEquals(expected.keySet(), Errors.knownCodes());
        Map<String, Integer> status = Map.ofEntries(Map.entry("bad_request", 400), Map.entry("method_not_allowed", 405),
                Map.entry("payload_too_large", 413), Map.entry("headers_too_large", 431), Map.entry("unauthorized", 401),
                Map.entry("forbidden", 403), Map.entry("not_found", 404), Map.entry("instance_not_found", 404),
                Map.entry("job_not_found", 404), Map.entry("conflict", 409), Map.entry("epoch_mismatch", 410),
                Map.entry("rate_limited", 429), Map.entry("overloaded", 503), Map.entry("upstream_error", 502),
                Map.entry("upstream_unavailable", 503), Map.entry("upstream_timeout", 504),
                Map.entry("store_unavailable", 503), Map.entry("archive_unavailable", 503),
                Map.entry("instance_conflict", 409), Map.entry("internal", 500));
        PowertailClient pt = PowertailClient.builder("http://127.0.0.1:1").build();
        for (Map.Entry<String, Class<? extends PowertailException>> e : expected.entrySet()) {
            int s = status.get(e.getKey());
            PowertailException err = pt.transport().errorOf(s, null, "{\"error\":{\"code\":\"" + e.getKey() + "\",\"message\":\"m\"},\"epoch\":\"E2\"}");
            assertEquals(e.getValue(), err.getClass(), e.getKey());
            assertEquals(s, err.status().orElseThrow());
            assertEquals(s == 429 || s == 503, err.isRetryable(), e.getKey());
        }
        assertEquals("E2", ((EpochMismatchException) pt.transport().errorOf(410, null,
                "{\"error\":{\"code\":\"epoch_mismatch\",\"message\":\"m\"},\"epoch\":\"E2\"}")).epoch().orElseThrow());
        // A code this version does not know: the family of its status, with the code.
        PowertailException unknown = pt.transport().errorOf(404, null, "{\"error\":{\"code\":\"new_code\",\"message\":\"m\"}}");
        assertEquals(NotFoundException.class, unknown.getClass());
        assertEquals("new_code", unknown.code());
        // An answer that is not powertail's (a proxy's page): not PowerJob's failure relayed.
        PowertailException proxy = pt.transport().errorOf(502, null, "<html>Bad Gateway</html>");
        assertEquals(ServerException.class, proxy.getClass());
        assertEquals("http_error", proxy.code());
        assertEquals("<html>Bad Gateway</html>", proxy.apiMessage());
        assertEquals(ServerException.class, pt.transport().errorOf(500, null, "oops").getClass());
        assertEquals(RetryableException.class, pt.transport().errorOf(503, "2", "<html>busy</html>").getClass());
        assertEquals(Duration.ofSeconds(2), pt.transport().errorOf(503, "2", "").retryAfter().orElseThrow());
        assertNull(Transport.retryAfter("soon"));
    }

    @Test
    void stream_resumes_with_last_event_id_and_the_epoch_after_a_dropped_connection() throws IOException {
        String url = serve(
                events(0, linesEvent(0, "E", "a", "b")),
                events(0, ": heartbeat\n\n", linesEvent(2, "E", "c"), endEvent(3, "E")));
        List<Long> sleeps = new ArrayList<>();
        try (Stream<String> s = client(url, sleeps).stream("7")) {
            assertEquals(List.of("a", "b", "c"), s.toList());
        }
        assertEquals(2, seen.size());
        assertNull(seen.get(0).lastEventId());
        assertEquals("2", seen.get(1).lastEventId());
        assertEquals("epoch=E", seen.get(1).query());
        assertEquals(1, sleeps.size());
    }

    @Test
    void auto_falls_back_to_sse_on_a_server_without_the_websocket_route() throws IOException {
        String url = serve(
                error(404, "not_found"),
                events(0, linesEvent(0, "E", "a", "b"), endEvent(2, "E")));
        PowertailClient auto = PowertailClient.builder(url).streamTransport(StreamTransport.AUTO).build();
        try (Stream<String> s = auto.stream("7")) {
            assertEquals(List.of("a", "b"), s.toList());
        }
        assertEquals(List.of("/llm/logs/7/ws", "/llm/logs/7/stream"), seen.stream().map(Seen::path).toList());
        seen.clear();
        stop();
        // A proxy that refuses the upgrade with a bare 405.
        String url405 = serve(json(405, ""), events(0, linesEvent(0, "E", "c"), endEvent(1, "E")));
        try (Stream<String> s = PowertailClient.builder(url405).streamTransport(StreamTransport.AUTO).build().stream("7")) {
            assertEquals(List.of("c"), s.toList());
        }
        seen.clear();
        stop();
        String url2 = serve(error(404, "not_found"));
        PowertailClient ws2 = PowertailClient.builder(url2).streamTransport(StreamTransport.WEBSOCKET).build();
        assertThrows(NotFoundException.class, () -> ws2.stream("7").toList());
        assertEquals(List.of("/llm/logs/7/ws"), seen.stream().map(Seen::path).toList());
    }

    @Test
    void a_silent_stream_is_reconnected() throws IOException {
        String url = serve(
                events(5_000, linesEvent(0, "E", "a")),
                events(0, linesEvent(1, "E", "b"), endEvent(2, "E")));
        PowertailClient pt = client(url, new ArrayList<>());
        pt.streamReadTimeout = Duration.ofMillis(300);
        long started = System.nanoTime();
        assertEquals(List.of("a", "b"), pt.stream("7", FollowOptions.DEFAULT.withFromLine(0)).toList());
        assertTrue((System.nanoTime() - started) / 1_000_000 < 4_000, "reconnected only when the server gave up");
        assertEquals("1", seen.get(1).lastEventId());
    }

    @Test
    void stream_restarts_from_line_0_on_an_epoch_mismatch_event_when_asked() throws IOException {
        String mismatch = "event: error\ndata: {\"code\":\"epoch_mismatch\",\"message\":\"rebuilt\",\"epoch\":\"F\"}\n\n";
        String url = serve(
                events(0, linesEvent(0, "E", "a", "b"), mismatch),
                events(0, linesEvent(0, "F", "b", "a"), endEvent(2, "F")));
        PowertailClient pt = client(url, new ArrayList<>());
        assertThrows(EpochMismatchException.class, () -> pt.stream("7").toList());
        seen.clear();
        stop();
        String url2 = serve(
                events(0, linesEvent(0, "E", "a", "b"), mismatch),
                events(0, linesEvent(0, "F", "b", "a"), endEvent(2, "F")));
        PowertailClient pt2 = client(url2, new ArrayList<>());
        assertEquals(List.of("a", "b", "b", "a"), pt2.stream("7", FollowOptions.DEFAULT.withRestart(true)).toList());
        assertEquals("epoch=F", seen.get(1).query());
        assertNull(seen.get(1).lastEventId());
    }

    @Test
    void event_stream_lines_may_end_with_crlf_or_a_lone_cr() throws IOException {
        String crlf = linesEvent(0, "E", "a").replace("\n", "\r\n");
        String cr = linesEvent(1, "E", "b\u00e9").replace("\n", "\r");
        String url = serve(events(0, crlf, cr, endEvent(2, "E")));
        assertEquals(List.of("a", "b\u00e9"), client(url, new ArrayList<>()).stream("7").toList());
    }

    @Test
    void the_event_stream_parser() {
        SseDecoder d = new SseDecoder(null);
        assertNull(d.feed(": comment"));
        assertNull(d.feed("event: lines"));
        assertNull(d.feed("id: 5"));
        assertNull(d.feed("retry: 1500"));
        assertNull(d.feed("data: one"));
        assertNull(d.feed("data:two"));
        assertEquals(new ServerSentEvent("lines", "one\ntwo", "5", 1500L), d.feed(""));
        assertNull(d.feed("id: 6"));
        assertNull(d.feed(""), "no data: no event");
        assertEquals("6", d.lastEventId());
        assertNull(d.feed("data"));
        assertEquals(new ServerSentEvent("message", "", "6", null), d.feed(""));
    }
}
