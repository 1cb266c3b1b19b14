package io.powertail.push;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.powertail.client.FollowOptions;
import io.powertail.client.LogPage;
import io.powertail.client.PowertailClient;
import io.powertail.client.RunAnswer;
import io.powertail.testing.PowertailDemo;
import java.io.IOException;
import java.io.UncheckedIOException;
import io.powertail.push.example.LlmPythonProcessor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import tech.powerjob.worker.core.processor.ProcessResult;
import tech.powerjob.worker.core.processor.TaskContext;

/**
 * The pusher against the real powertail binary and its simulated PowerJob (issue 19): every
 * line pushed is served once, in the processor's order, in PowerJob's record format
 * ({@code yyyy-MM-dd HH:mm:ss.SSS [worker] LEVEL text}), next to the job's own log; a retry
 * of a batch whose answer was lost is answered {@code duplicate: true} and appends nothing;
 * a 413 halves the batch; 401, 403 and 404 turn pushing off without failing anything; the
 * example processor's script lines all arrive.
 */
@ExtendWith(PowertailDemo.class)
@Tag("demo")
@Timeout(120)
class PushDemoTest {
    private static final FollowOptions FAST = FollowOptions.DEFAULT.withLongPoll(Duration.ofSeconds(5));
    /** A pushed line as served: PowerJob's record format. */
    private static final Pattern RECORD = Pattern.compile(
            "^\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}\\.\\d{3} \\[(?<worker>[^\\]]+)\\] (?<level>[A-Z]+) (?<text>.*)$");

    private static List<String> follow(PowertailClient pt, String id) {
        try (Stream<String> s = pt.follow(id, FAST)) {
            return s.toList();
        }
    }

    /** "LEVEL text" of the served lines of {@code worker}. */
    private static List<String> of(String worker, List<String> served) {
        List<String> out = new ArrayList<>();
        for (String line : served) {
            Matcher m = RECORD.matcher(line);
            if (m.matches() && m.group("worker").equals(worker)) {
                out.add(m.group("level") + " " + m.group("text"));
            }
        }
        return out;
    }

    /** 120 distinct lines, some WARN, and a burst of equal progress lines (they repeat, as progress does). */
    private static List<String> script(String tag) {
        List<String> out = new ArrayList<>();
        for (int k = 0; k < 120; k++) {
            out.add((k % 25 == 7 ? "WARN " : "INFO ") + tag + " line " + k);
            if (k == 60) {
                for (int r = 0; r < 4; r++) {
                    out.add("INFO " + tag + " progress 50%");
                }
            }
        }
        return out;
    }

    private static void play(PushLogger log, List<String> script) throws InterruptedException {
        int k = 0;
        for (String line : script) {
            String text = line.substring(5);
            log.log(line.startsWith("WARN") ? Level.WARN : Level.INFO, text);
            if (++k % 10 == 0) {
                Thread.sleep(5); // several batches, not one
            }
        }
    }

    @Test
    void every_pushed_line_is_served_once_in_order_next_to_the_jobs_own_log(PowertailDemo demo) throws Exception {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start");
        String worker = "10.0.0.9:27777";
        RecordingOmsLogger oms = new RecordingOmsLogger();
        List<String> script = script("pushed");
        PushLogger log = PushLogger.builder(demo.url(), Long.parseLong(run.instanceId())).omsLogger(oms).worker(worker).build();
        play(log, script);
        log.close();
        PushStats s = log.stats();
        assertEquals(script.size(), s.sent(), s.toString());
        assertEquals(new PushStats(script.size(), 0, script.size(), 0, s.batches(), 0, 0, false, 0), s);
        assertTrue(s.batches() >= 3, s.toString());
        assertEquals(script, oms.lines());

        List<String> served = follow(pt, run.instanceId());
        assertEquals(script, of(worker, served), "each pushed line once, in order");
        assertTrue(served.stream().anyMatch(l -> l.contains("Application startup complete.")), "the job's own log is whole");
        assertEquals(served.stream().map(l -> l + "\n").collect(Collectors.joining()), pt.raw(run.instanceId()));
        LogPage page = pt.read(run.instanceId(), served.size());
        assertNotNull(page.push(), page.toString());
        assertTrue(page.push().sources() >= 1 && page.push().lines() >= script.size(), page.push().toString());
    }

    @Test
    void a_retry_whose_first_answer_was_lost_is_a_duplicate_and_appends_nothing(PowertailDemo demo) throws Exception {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start");
        String worker = "10.0.0.10:27777";
        List<String> script = script("retried");
        try (LosingProxy proxy = new LosingProxy(demo.url(), n -> n == 0 || n == 2)) {
            PushLogger log = PushLogger.builder(proxy.url(), Long.parseLong(run.instanceId())).worker(worker).build();
            play(log, script);
            log.close();
            PushStats s = log.stats();
            assertEquals(2, proxy.lost());
            assertEquals(2, s.duplicates(), s.toString());
            assertEquals(2, s.retries(), s.toString());
            assertEquals(script.size(), s.sent(), s.toString());
            assertEquals(0, s.rejected() + s.dropped(), s.toString());
        }
        assertEquals(script, of(worker, follow(pt, run.instanceId())), "each line once despite the retries");
    }

    @Test
    void a_413_halves_the_batch_until_it_fits_and_every_line_arrives_once(PowertailDemo demo) throws Exception {
        PowertailDemo.Pushing server = demo.pushing();
        PowertailClient pt = PowertailClient.builder(server.url()).token(server.pusher()).build();
        RunAnswer run = pt.runJob("vllm-start");
        String worker = "10.0.0.11:27777";
        List<String> script = script("halved");
        try (LosingProxy proxy = new LosingProxy(server.url(), n -> false)) {
            // A long linger: full batches of 20, more than the server's 8.
            PushLogger log = PushLogger.builder(proxy.url(), Long.parseLong(run.instanceId())).token(server.pusher())
                    .worker(worker).linger(Duration.ofSeconds(1)).build();
            play(log, script);
            log.close();
            PushStats s = log.stats();
            assertEquals(new PushStats(script.size(), 0, script.size(), 0, s.batches(), 0, 0, false, 0), s);
            // Every batch acknowledged held at most 8 lines (20 -> 10 -> 5, then at most 5).
            assertTrue(s.batches() >= script.size() / PowertailDemo.PUSH_MAX_BATCH_LINES, s.toString());
            assertTrue(proxy.requests() > s.batches(), "some batches were refused with 413 first: " + proxy.requests());
        }
        assertEquals(script, of(worker, follow(pt, run.instanceId())));
    }

    @Test
    void unauthorized_forbidden_and_unknown_instances_turn_pushing_off_and_never_fail_the_task(PowertailDemo demo) {
        PowertailDemo.Pushing server = demo.pushing();
        RunAnswer run = PowertailClient.builder(server.url()).token(server.pusher()).build().runJob("vllm-start");
        long id = Long.parseLong(run.instanceId());
        record Case(String url, long instance, String token) {}
        for (Case c : List.of(
                new Case(server.url(), id, null),                 // 401: tokens configured, none sent
                new Case(server.url(), id, server.reader()),      // 403: no logs:push scope
                new Case(demo.url(), 1, null))) {                 // 404: PowerJob does not know instance 1
            RecordingOmsLogger oms = new RecordingOmsLogger();
            try (LosingProxy proxy = new LosingProxy(c.url(), n -> false)) {
                PushLogger log = PushLogger.builder(proxy.url(), c.instance()).token(c.token()).omsLogger(oms)
                        .linger(Duration.ZERO).build();
                log.info("first");
                RecordingServer.await(Duration.ofSeconds(10), () -> log.stats().disabled(), "pushing off");
                log.info("second");
                log.close();
                PushStats s = log.stats();
                assertTrue(s.disabled(), s.toString());
                assertEquals(0, s.sent(), s.toString());
                assertEquals(1, proxy.requests(), "nothing sent once off: " + c);
                assertEquals(List.of("INFO first", "INFO second"), oms.lines());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    @Test
    void the_example_processor_pushes_every_line_its_script_prints(PowertailDemo demo, @TempDir Path dir) throws Exception {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start");
        Path script = Files.writeString(dir.resolve("start_vllm.py"), String.join("\n",
                "import json, sys",
                "p = json.loads(sys.argv[1])",
                "for k in range(60):",
                "    print(f'INFO loading {p[\"modelName\"]} shard {k}/60', flush=True)",
                ""));
        TaskContext ctx = new TaskContext();
        ctx.setInstanceId(Long.parseLong(run.instanceId()));
        RecordingOmsLogger oms = new RecordingOmsLogger();
        ctx.setOmsLogger(oms);
        ctx.setJobParams("{\"modelName\": \"qwen-7b\", \"port\": 8000, \"scriptPath\": \"" + script + "\"}");
        String worker = "10.0.0.12:27777";
        System.setProperty("powertail.url", demo.url());
        System.setProperty("powertail.worker", worker);
        ProcessResult result;
        try {
            result = new LlmPythonProcessor().process(ctx);
        } finally {
            System.clearProperty("powertail.url");
            System.clearProperty("powertail.worker");
        }
        assertTrue(result.isSuccess(), result.getMsg());
        assertEquals(62, oms.lines().size(), oms.lines().toString());
        assertEquals(oms.lines(), of(worker, follow(pt, run.instanceId())));
    }
}
