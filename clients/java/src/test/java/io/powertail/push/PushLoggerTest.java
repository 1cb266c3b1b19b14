package io.powertail.push;

import static io.powertail.push.RecordingServer.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.helpers.MessageFormatter;
import tech.powerjob.worker.core.processor.TaskContext;
import tech.powerjob.worker.log.OmsLogger;

/** The pusher against a tiny recording HTTP server. */
@Timeout(60)
class PushLoggerTest {
    private static final long INSTANCE = 677182124851200064L;
    private static final Duration DEADLINE = Duration.ofSeconds(10);

    private static PushLogger.Builder logger(RecordingServer server, OmsLogger oms) {
        return PushLogger.builder(server.url(), INSTANCE).omsLogger(oms).worker("10.0.0.5:27777");
    }

    private static List<String> texts(JsonNode body) {
        List<String> out = new ArrayList<>();
        body.path("lines").forEach(l -> out.add(l.path("text").asText()));
        return out;
    }

    private static List<String> pushedTexts(RecordingServer server) {
        List<String> out = new ArrayList<>();
        server.accepted().forEach(b -> out.addAll(texts(b)));
        return out;
    }

    @Test
    void a_batch_goes_out_at_20_lines_without_waiting_for_the_linger_and_the_rest_on_close() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            PushLogger log = logger(server, oms).linger(Duration.ofSeconds(30)).maxBatchSize(20).build();
            for (int i = 0; i < 45; i++) {
                log.info("line {}", i);
            }
            await(DEADLINE, () -> server.accepted().size() >= 2, "two full batches");
            Thread.sleep(200); // the 5 left wait for the linger (30 s) or close
            assertEquals(2, server.requests().size());
            List<JsonNode> bodies = server.accepted();
            for (int b = 0; b < 2; b++) {
                assertEquals(b, bodies.get(b).path("seq").asLong());
                assertFalse(bodies.get(b).path("final").asBoolean());
                int from = b * 20;
                assertEquals(IntStream.range(from, from + 20).mapToObj(i -> "line " + i).toList(), texts(bodies.get(b)));
            }
            log.close();
            bodies = server.accepted();
            assertEquals(3, bodies.size());
            assertEquals(2, bodies.get(2).path("seq").asLong());
            assertTrue(bodies.get(2).path("final").asBoolean());
            assertEquals(IntStream.range(40, 45).mapToObj(i -> "line " + i).toList(), texts(bodies.get(2)));
            assertEquals(IntStream.range(0, 45).mapToObj(i -> "INFO line " + i).toList(), oms.lines());
            assertEquals(new PushStats(45, 0, 45, 0, 3, 0, 0, false, 0), log.stats());
        }
    }

    @Test
    void lines_that_queued_up_behind_a_batch_in_flight_catch_up_in_one_batch() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            server.hang();
            PushLogger log = logger(server, null).linger(Duration.ofSeconds(30)).build();
            for (int i = 0; i < 20; i++) {
                log.info("line {}", i);
            }
            await(DEADLINE, () -> server.requests().size() == 1, "the first batch, held");
            for (int i = 20; i < 100; i++) {
                log.info("line {}", i);
            }
            server.release();
            await(DEADLINE, () -> server.accepted().size() == 2, "the catch-up batch");
            assertEquals(IntStream.range(0, 20).mapToObj(i -> "line " + i).toList(), texts(server.accepted().get(0)));
            assertEquals(IntStream.range(20, 100).mapToObj(i -> "line " + i).toList(), texts(server.accepted().get(1)));
            assertEquals(1, server.accepted().get(1).path("seq").asLong());
            log.close();
        }
    }

    @Test
    void a_413_sends_the_batch_in_halves_under_consecutive_seqs() throws Exception {
        try (RecordingServer server = new RecordingServer().answer(n -> n == 0 ? 413 : 200)) {
            PushLogger log = logger(server, null).linger(Duration.ofSeconds(30)).batchSize(4).build();
            for (String t : List.of("a", "b", "c", "d")) {
                log.info(t);
            }
            await(DEADLINE, () -> server.accepted().size() == 2, "the two halves");
            assertEquals(4, server.requests().get(0).body().path("lines").size());
            assertEquals(List.of("a", "b"), texts(server.accepted().get(0)));
            assertEquals(List.of("c", "d"), texts(server.accepted().get(1)));
            assertEquals(0, server.accepted().get(0).path("seq").asLong());
            assertEquals(1, server.accepted().get(1).path("seq").asLong());
            log.close();
            assertEquals(4, log.stats().sent());
            assertEquals(0, log.stats().rejected());
        }
    }

    @Test
    void a_lone_line_goes_out_after_the_linger_with_the_body_of_issue_19() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            try (PushLogger log = logger(server, oms).token("s3cret").linger(Duration.ofMillis(100)).build()) {
                long before = System.currentTimeMillis();
                long started = System.nanoTime();
                log.warn("loading {} of {}", 1, 4);
                long after = System.currentTimeMillis();
                await(DEADLINE, () -> server.accepted().size() == 1, "the batch");
                long tookMs = (System.nanoTime() - started) / 1_000_000;
                assertTrue(tookMs >= 90, "sent after " + tookMs + " ms, before the linger");

                RecordingServer.Request r = server.requests().get(0);
                assertEquals("POST", r.method());
                assertEquals("/llm/logs/677182124851200064/append", r.path());
                assertEquals("Bearer s3cret", r.authorization());
                JsonNode body = r.body();
                assertTrue(body.path("source").asText().startsWith("10.0.0.5:27777/"), body.toString());
                assertEquals(0, body.path("seq").asLong());
                assertEquals("10.0.0.5:27777", body.path("worker").asText());
                assertFalse(body.path("final").asBoolean());
                JsonNode line = body.path("lines").get(0);
                assertEquals(1, body.path("lines").size());
                assertEquals("WARN", line.path("level").asText());
                assertEquals("loading 1 of 4", line.path("text").asText());
                long ts = line.path("ts").asLong();
                assertTrue(ts >= before && ts <= after, ts + " not in [" + before + ", " + after + "]");
                assertEquals(ts, body.path("timestamp").asLong());
                assertEquals(List.of("WARN loading 1 of 4"), oms.lines());
            }
            // The final batch of the same source.
            JsonNode last = server.accepted().get(1);
            assertEquals(server.accepted().get(0).path("source"), last.path("source"));
            assertEquals(1, last.path("seq").asLong());
            assertTrue(last.path("final").asBoolean());
            assertEquals(0, last.path("lines").size());
        }
    }

    @Test
    void a_503_is_retried_with_the_same_seq_and_the_same_lines() throws Exception {
        try (RecordingServer server = new RecordingServer().answer(n -> n < 2 ? 503 : 200)) {
            PushLogger log = logger(server, null).linger(Duration.ofSeconds(30)).batchSize(3).build();
            log.info("a");
            log.info("b");
            log.info("c");
            await(DEADLINE, () -> server.accepted().size() == 1, "the batch, after two 503s");
            List<RecordingServer.Request> tries = server.requests();
            assertEquals(3, tries.size());
            assertEquals(tries.get(0).body(), tries.get(1).body());
            assertEquals(tries.get(0).body(), tries.get(2).body());
            assertEquals(0, tries.get(2).body().path("seq").asLong());
            assertEquals(List.of("a", "b", "c"), texts(tries.get(2).body()));
            log.info("d");
            log.info("e");
            log.info("f");
            await(DEADLINE, () -> server.accepted().size() == 2, "the next batch");
            assertEquals(1, server.accepted().get(1).path("seq").asLong());
            log.close();
            PushStats s = log.stats();
            assertEquals(2, s.retries());
            assertEquals(6, s.sent());
            assertEquals(0, s.rejected());
        }
    }

    @Test
    void a_full_queue_drops_and_counts_and_the_caller_never_blocks_even_with_the_server_hung() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            server.hang();
            RecordingOmsLogger oms = new RecordingOmsLogger();
            PushLogger log = logger(server, oms).queueCapacity(100).requestTimeout(Duration.ofSeconds(30))
                    .closeTimeout(Duration.ofSeconds(10)).build();
            long started = System.nanoTime();
            for (int i = 0; i < 10_000; i++) {
                log.info("line {}", i);
            }
            long tookMs = (System.nanoTime() - started) / 1_000_000;
            assertTrue(tookMs < 2_000, "10 000 lines took " + tookMs + " ms with the server hung");
            await(DEADLINE, () -> server.requests().size() == 1, "the first batch, held by the server");
            PushStats s = log.stats();
            assertEquals(10_000, s.queued() + s.dropped(), s.toString());
            assertTrue(s.queued() >= 100 && s.queued() <= 300, s.toString()); // the queue and the batch held
            assertEquals(10_000, oms.lines().size(), "PowerJob gets every line");

            server.release();
            log.close();
            s = log.stats();
            assertEquals(s.queued(), s.sent(), s.toString());
            assertEquals(0, s.pending());
            List<String> pushed = pushedTexts(server);
            assertEquals(s.sent(), pushed.size());
            // What was queued is sent in the order it was logged: the first 100 lines (the
            // queue's capacity), then those that found room while the first batch was held.
            List<Integer> numbers = pushed.stream().map(t -> Integer.parseInt(t.substring("line ".length()))).toList();
            assertEquals(IntStream.range(0, 100).boxed().toList(), numbers.subList(0, 100));
            for (int i = 1; i < numbers.size(); i++) {
                assertTrue(numbers.get(i - 1) < numbers.get(i), "out of order: " + numbers);
            }
            assertTrue(server.accepted().get(server.accepted().size() - 1).path("final").asBoolean());
        }
    }

    @Test
    void lines_after_close_go_to_the_oms_logger_only() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            PushLogger log = logger(server, oms).build();
            log.close();
            log.close(); // idempotent
            assertEquals(1, server.requests().size());
            JsonNode body = server.accepted().get(0);
            assertTrue(body.path("final").asBoolean());
            assertEquals(0, body.path("seq").asLong());
            assertEquals(0, body.path("lines").size());
            log.error("late");
            assertEquals(List.of("ERROR late"), oms.lines());
            assertEquals(1, log.stats().dropped());
            assertEquals(1, server.requests().size());
        }
    }

    @Test
    void a_logger_the_task_drops_without_closing_still_sends_its_final_batch() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            logAndDrop(server);
            long deadline = System.nanoTime() + DEADLINE.toNanos();
            while (server.accepted().stream().noneMatch(b -> b.path("final").asBoolean())) {
                assertTrue(System.nanoTime() < deadline, "no final batch: " + server.accepted());
                System.gc();
                Thread.sleep(20);
            }
            assertEquals(List.of("forgotten"), pushedTexts(server));
            // and its sender thread ends.
            String name = "powertail-push-" + (INSTANCE + 1);
            await(DEADLINE, () -> Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals(name)),
                    "the end of " + name);
        }
    }

    private static void logAndDrop(RecordingServer server) {
        PushLogger log = PushLogger.builder(server.url(), INSTANCE + 1).linger(Duration.ofSeconds(30)).build();
        log.info("forgotten");
    }

    @Test
    void a_404_turns_pushing_off_and_powerjob_still_gets_every_line() throws Exception {
        try (RecordingServer server = new RecordingServer().answer(n -> 404)) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            PushLogger log = logger(server, oms).linger(Duration.ZERO).build();
            log.info("one");
            await(DEADLINE, () -> log.stats().disabled(), "pushing off");
            log.info("two");
            log.close();
            assertEquals(1, server.requests().size());
            assertEquals(List.of("INFO one", "INFO two"), oms.lines());
            PushStats s = log.stats();
            assertEquals(1, s.rejected());
            assertEquals(1, s.dropped());
            assertEquals(0, s.sent());
        }
    }

    @Test
    void a_400_drops_that_batch_and_the_next_one_takes_its_seq() throws Exception {
        try (RecordingServer server = new RecordingServer().answer(n -> n == 0 ? 400 : 200)) {
            PushLogger log = logger(server, null).linger(Duration.ZERO).build();
            log.info("refused");
            await(DEADLINE, () -> log.stats().rejected() == 1, "the refusal");
            log.info("accepted");
            await(DEADLINE, () -> server.accepted().size() == 1, "the next batch");
            assertEquals(0, server.accepted().get(0).path("seq").asLong());
            assertEquals(List.of("accepted"), texts(server.accepted().get(0)));
            log.close();
        }
    }

    @Test
    void a_bad_setting_never_fails_the_task_it_only_writes_to_the_oms_logger() {
        for (String url : new String[] {"powertail:8080", "http://[bad", "ftp://host/"}) {
            TaskContext ctx = new TaskContext();
            ctx.setInstanceId(url.startsWith("ftp") ? null : INSTANCE);
            RecordingOmsLogger oms = new RecordingOmsLogger();
            ctx.setOmsLogger(oms);
            try (PushLogger log = PushLogger.forTask(ctx, url, "t")) {
                log.info("still logged {}", 1);
                assertFalse(log.pushing(), url);
            }
            assertEquals(List.of("INFO still logged 1"), oms.lines(), url);
        }
        TaskContext noId = new TaskContext();
        try (PushLogger log = PushLogger.forTask(noId, "http://127.0.0.1:1", null)) {
            assertFalse(log.pushing());
        }
    }

    @Test
    void without_a_url_it_only_writes_to_the_oms_logger() {
        RecordingOmsLogger oms = new RecordingOmsLogger();
        try (PushLogger log = PushLogger.builder(null, INSTANCE).omsLogger(oms).build()) {
            assertFalse(log.pushing());
            log.debug("d {}", 1);
            assertEquals(List.of("DEBUG d 1"), oms.lines());
        }
    }

    @Test
    void both_copies_get_the_text_powerjob_would_format() throws Exception {
        Object[][] cases = {
            {"a {} b {}", new Object[] {1, "x"}},
            {"no args {}", new Object[] {}},
            {"more {} than {} args", new Object[] {"one"}},
            {"escaped \\{} {}", new Object[] {5}},
            {"array {}", new Object[] {new Object[] {new int[] {1, 2}, "s"}}},
            {"ints {}", new Object[] {new int[] {3, 4}}},
            {"null {}", new Object[] {null}},
            {"bad toString {}", new Object[] {new Object() {
                @Override
                public String toString() {
                    throw new IllegalStateException("a broken toString must not fail the task");
                }
            }}},
        };
        try (RecordingServer server = new RecordingServer()) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            List<String> expected = new ArrayList<>();
            try (PushLogger log = logger(server, oms).build()) {
                for (Object[] c : cases) {
                    Object[] args = (Object[]) c[1];
                    log.info((String) c[0], args);
                    expected.add(MessageFormatter.arrayFormat((String) c[0], args).getMessage());
                }
                RuntimeException boom = new RuntimeException("boom");
                log.error("failed: {}", "x", boom);
                String withTrace = PushLogger.format("failed: {}", "x", boom);
                assertTrue(withTrace.startsWith("failed: x" + System.lineSeparator() + "java.lang.RuntimeException: boom"), withTrace);
                expected.add(withTrace);
            }
            assertEquals(expected, pushedTexts(server));
            assertEquals(expected, oms.lines().stream().map(l -> l.substring(l.indexOf(' ') + 1)).toList());
        }
    }

    /**
     * Measures how long a line takes from the log call to the server at a steady 100 lines/s
     * (a model server's start-up is slower): the linger (100 ms) plus one request. Printed;
     * asserted against issue 19's goal for the whole chain (pushed p99 at most 250 ms) with
     * room for this loaded machine.
     */
    @Test
    @Tag("perf")
    void a_line_reaches_the_server_within_the_linger_and_one_request() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            PushLogger log = logger(server, null).build();
            int n = 300;
            long[] loggedAt = new long[n];
            long start = System.nanoTime();
            for (int i = 0; i < n; i++) {
                long due = start + i * 10_000_000L;
                while (System.nanoTime() < due) {
                    Thread.sleep(1);
                }
                loggedAt[i] = System.nanoTime();
                log.info("line {}", i);
            }
            await(DEADLINE, () -> server.accepted().stream().mapToInt(b -> b.path("lines").size()).sum() == n, "every line");
            List<JsonNode> bodies = server.accepted();
            List<Long> at = server.acceptedAtNanos();
            long[] latency = new long[n];
            for (int b = 0; b < bodies.size(); b++) {
                for (JsonNode l : bodies.get(b).path("lines")) {
                    int i = Integer.parseInt(l.path("text").asText().substring("line ".length()));
                    latency[i] = (at.get(b) - loggedAt[i]) / 1_000_000;
                }
            }
            log.close();
            java.util.Arrays.sort(latency);
            System.out.printf("push freshness at 100 lines/s: p50 %d ms, p99 %d ms, max %d ms (%d batches)%n",
                    latency[n / 2], latency[n * 99 / 100], latency[n - 1], bodies.size());
            assertTrue(latency[n * 99 / 100] < 1_000, "p99 " + latency[n * 99 / 100] + " ms");
        }
    }

    /** Measures the cost of a log call on the caller's thread (printed; asserted loosely). */
    @Test
    @Tag("perf")
    void logging_costs_about_a_microsecond_per_line() throws Exception {
        OmsLogger quiet = new OmsLogger() {
            @Override
            public void debug(String p, Object... a) {}

            @Override
            public void info(String p, Object... a) {}

            @Override
            public void warn(String p, Object... a) {}

            @Override
            public void error(String p, Object... a) {}
        };
        int n = 5_000;
        try (RecordingServer server = new RecordingServer()) {
            PushLogger log = logger(server, quiet).queueCapacity(200_000).closeTimeout(Duration.ofSeconds(60)).build();
            String text = "INFO 11-25 10:00:01 [loader.py:42] Loading safetensors checkpoint shards:  50% Completed | 2/4";
            for (int i = 0; i < 10_000; i++) { // warm-up of both paths
                log.log(Level.INFO, text);
                log.info("processed batch {}: {} samples", i, 512);
            }
            long[] plain = new long[3];
            long[] formatted = new long[3];
            for (int round = 0; round < 3; round++) {
                long started = System.nanoTime();
                for (int i = 0; i < n; i++) {
                    log.log(Level.INFO, text);
                }
                plain[round] = (System.nanoTime() - started) / n;
                started = System.nanoTime();
                for (int i = 0; i < n; i++) {
                    log.info("processed batch {}: {} samples", i, 512);
                }
                formatted[round] = (System.nanoTime() - started) / n;
            }
            long[] each = new long[n];
            for (int i = 0; i < n; i++) {
                long t = System.nanoTime();
                log.log(Level.INFO, text);
                each[i] = System.nanoTime() - t;
            }
            java.util.Arrays.sort(plain);
            java.util.Arrays.sort(formatted);
            java.util.Arrays.sort(each);
            long pendingAtClose = log.stats().pending();
            long closing = System.nanoTime();
            log.close();
            long drainMs = Math.max(1, (System.nanoTime() - closing) / 1_000_000);
            PushStats s = log.stats();
            System.out.printf("push: %d ns/line (log), %d ns/line (info with {}), median of 3 rounds of %d; one call: p50 %d ns, "
                    + "p99 %d ns, max %d us; %s; close sent the %d pending in %d ms (%d lines/s: batches of 20 to 200, one in flight)%n",
                    plain[1], formatted[1], n, each[n / 2], each[n * 99 / 100], each[n - 1] / 1000, s, pendingAtClose, drainMs,
                    pendingAtClose * 1000 / drainMs);
            assertEquals(0, s.dropped(), s.toString());
            assertEquals(s.queued(), s.sent(), s.toString());
            assertTrue(plain[1] < 20_000 && formatted[1] < 20_000, plain[1] + " / " + formatted[1] + " ns per line");
        }
    }
}
