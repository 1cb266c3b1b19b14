package io.powertail.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The archive's reads (issue 20) against a scripted server: the exact requests (path,
 * query), the typed answers, paging, and the errors of docs/API.md. The same calls
 * against the real binary are in {@code ArchiveDemoTest}.
 */
@Timeout(30)
class HistoryTest {
    /** One scripted answer. */
    record Answer(int status, String body) {}

    private HttpServer server;
    private final List<String> seen = new CopyOnWriteArrayList<>();

    private PowertailClient serve(Answer... answers) throws IOException {
        List<Answer> script = new ArrayList<>(List.of(answers));
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", ex -> {
            String q = ex.getRequestURI().getRawQuery();
            seen.add(ex.getRequestURI().getRawPath() + (q == null ? "" : "?" + q));
            Answer a;
            synchronized (script) {
                a = script.size() > 1 ? script.remove(0) : script.get(0);
            }
            byte[] b = a.body().getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().set("Content-Type", "application/json");
            if (a.status() == 503) {
                ex.getResponseHeaders().set("Retry-After", "0");
            }
            ex.sendResponseHeaders(a.status(), b.length);
            ex.getResponseBody().write(b);
            ex.close();
        });
        server.start();
        PowertailClient pt = PowertailClient.create("http://127.0.0.1:" + server.getAddress().getPort());
        pt.transport().sleeper = ms -> {};
        return pt;
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.stop(0);
        }
    }

    static String hit(String id, int line, String text) {
        return "{\"instanceId\":\"" + id + "\",\"attempt\":1,\"line\":" + line + ",\"text\":\"" + text
                + "\",\"jobName\":\"vllm-start\",\"finishedAt\":1764900001120,\"url\":\"/?instanceId=" + id + "&line=" + line
                + "\",\"score\":1}";
    }

    @Test
    void search_sends_every_filter_and_reads_a_page() throws IOException {
        PowertailClient pt = serve(new Answer(200, "{\"hits\":[" + hit("1234567890123456789", 12, "CUDA out of memory")
                + "],\"nextCursor\":\"c2\",\"tookMs\":3,\"extra\":true}"));
        SearchPage page = pt.search("out of memory", SearchOptions.DEFAULT.withJob("vllm start/2").withStatus("FAILED")
                .withCause("cuda_oom").withSince(Instant.ofEpochMilli(1000)).withUntil(Instant.ofEpochMilli(2000))
                .withLimit(10).withCursor("c1"));
        assertEquals(List.of("/llm/search?q=out+of+memory&job=vllm+start%2F2&status=FAILED&cause=cuda_oom&since=1000"
                + "&until=2000&limit=10&cursor=c1"), seen);
        assertEquals(new SearchPage(List.of(new SearchHit("1234567890123456789", 1, 12, "CUDA out of memory", "vllm-start",
                1764900001120L, "/?instanceId=1234567890123456789&line=12")), "c2", 3), page);
    }

    @Test
    void search_all_follows_the_cursor_lazily_to_the_last_page() throws IOException {
        PowertailClient pt = serve(
                new Answer(200, "{\"hits\":[" + hit("3", 1, "a") + "," + hit("3", 2, "b") + "],\"nextCursor\":\"p2\",\"tookMs\":1}"),
                new Answer(200, "{\"hits\":[],\"nextCursor\":\"p3\",\"tookMs\":1}"),
                new Answer(200, "{\"hits\":[" + hit("2", 7, "c") + "],\"nextCursor\":null,\"tookMs\":1}"));
        List<String> first = pt.searchAll("abc", SearchOptions.DEFAULT.withLimit(2)).limit(2).map(SearchHit::text).toList();
        assertEquals(List.of("a", "b"), first);
        assertEquals(1, seen.size(), "a second page only when the first is used up: " + seen);
        seen.clear();
        List<String> all = pt.searchAll("abc", SearchOptions.DEFAULT.withCursor("p2")).map(h -> h.instanceId() + ":" + h.line()).toList();
        assertEquals(List.of("2:7"), all);
        assertEquals(List.of("/llm/search?q=abc&cursor=p2", "/llm/search?q=abc&cursor=p3"), seen);
    }

    @Test
    void runs_and_stats_read_typed_answers() throws IOException {
        PowertailClient pt = serve(
                new Answer(200, "{\"job\":\"vllm start\",\"runs\":[{\"instanceId\":\"9\",\"attempt\":2,\"status\":\"FAILED\","
                        + "\"startedAt\":100,\"finishedAt\":200,\"phase\":\"failed\",\"readyAfterMs\":null,\"cause\":\"cuda_oom\","
                        + "\"causeLine\":41,\"lines\":57},{\"instanceId\":\"8\",\"attempt\":1,\"status\":\"SUCCEED\",\"startedAt\":null,"
                        + "\"finishedAt\":null,\"phase\":null,\"readyAfterMs\":null,\"cause\":null,\"causeLine\":null,\"lines\":0}],"
                        + "\"nextCursor\":null}"),
                new Answer(200, "{\"job\":\"vllm start\",\"since\":5,\"runs\":4,\"byOutcome\":{\"ready\":3,\"failed\":1},"
                        + "\"byCause\":{\"cuda_oom\":1},\"readyP50Ms\":2310,\"readyP95Ms\":4000}"));
        RunsPage runs = pt.runs("vllm start", RunsOptions.DEFAULT.withSince(Instant.ofEpochMilli(5)).withLimit(2));
        assertEquals(new RunsPage("vllm start", List.of(
                new RunSummary("9", 2, "FAILED", 100L, 200L, "failed", null, "cuda_oom", 41L, 57),
                new RunSummary("8", 1, "SUCCEED", null, null, null, null, null, null, 0)), null), runs);
        JobStats stats = pt.stats("vllm start", Instant.ofEpochMilli(5));
        assertEquals(new JobStats("vllm start", 5L, 4, Map.of("ready", 3L, "failed", 1L), Map.of("cuda_oom", 1L), 2310L, 4000L), stats);
        assertEquals(List.of("/llm/jobs/vllm%20start/runs?since=5&limit=2", "/llm/jobs/vllm%20start/stats?since=5"), seen);
    }

    @Test
    void stats_of_a_job_without_runs_has_empty_maps_and_no_percentiles() throws IOException {
        PowertailClient pt = serve(new Answer(200, "{\"job\":\"j\",\"since\":null,\"runs\":0,\"byOutcome\":{},\"byCause\":{},"
                + "\"readyP50Ms\":null,\"readyP95Ms\":null}"));
        JobStats s = pt.stats("j", null);
        assertEquals(0, s.runs());
        assertEquals(Map.of(), s.byOutcome());
        assertNull(s.readyP50Ms());
        assertEquals(List.of("/llm/jobs/j/stats"), seen);
    }

    @Test
    void archive_errors_are_typed_and_a_down_archive_is_retried() throws IOException {
        PowertailClient pt = serve(
                new Answer(503, "{\"error\":{\"code\":\"archive_unavailable\",\"message\":\"database down\"}}"),
                new Answer(200, "{\"hits\":[],\"nextCursor\":null,\"tookMs\":0}"));
        assertEquals(List.of(), pt.search("abc").hits());
        assertEquals(2, seen.size());
        stop();
        PowertailClient short1 = serve(new Answer(400, "{\"error\":{\"code\":\"bad_request\",\"message\":\"q: at least 3 characters\"}}"));
        assertEquals("bad_request", assertThrows(BadRequestException.class, () -> short1.search("ab")).code());
        stop();
        PowertailClient off = serve(new Answer(404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no archive\"}}"));
        assertThrows(NotFoundException.class, () -> off.runs("j"));
        stop();
        PowertailClient down = PowertailClient.builder("http://127.0.0.1:1").build();
        assertThrows(IllegalArgumentException.class, () -> down.runs(""));
        assertThrows(IllegalArgumentException.class, () -> SearchOptions.DEFAULT.withLimit(501));
        assertThrows(IllegalArgumentException.class, () -> RunsOptions.DEFAULT.withLimit(0));
    }
}
