package io.powertail.push;

import static io.powertail.push.RecordingServer.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import tech.powerjob.common.enums.LogLevel;
import tech.powerjob.common.model.LogConfig;
import tech.powerjob.worker.core.processor.TaskContext;
import tech.powerjob.worker.log.impl.OmsStdOutLogger;

/**
 * The pusher in front of the worker's own {@code OmsLogger} implementation
 * ({@code OmsStdOutLogger}, the worker's class for log type STDOUT: it formats the pattern
 * with SLF4J and filters by the job's log level, as the server logger does): the same text,
 * level and order in both copies, {@code \{}} and a trailing exception as SLF4J has them. Runs on 5.1.x
 * and again on 4.3.x (surefire execution {@code powerjob-4.3}).
 */
@Timeout(30)
class RealOmsLoggerTest {
    @Test
    void powerjobs_own_logger_gets_every_line_the_push_gets_in_the_same_order() throws Exception {
        PrintStream savedOut = System.out;
        PrintStream savedErr = System.err;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        List<String> pushed = new ArrayList<>();
        try (RecordingServer server = new RecordingServer()) {
            TaskContext context = new TaskContext();
            context.setInstanceId(677182124851200064L);
            context.setOmsLogger(new OmsStdOutLogger(new LogConfig().setLevel(LogLevel.DEBUG.getV())));
            // Its error() prints to System.err, the rest to System.out: one stream keeps their order.
            PrintStream both = new PrintStream(captured, true, StandardCharsets.UTF_8);
            System.setOut(both);
            System.setErr(both);
            try (PushLogger log = PushLogger.forTask(context, server.url(), null)) {
                log.info("loading {} of {}", 1, 4);
                log.debug("a debug line");
                log.warn("a {} with braces \\{}", "pattern");
                log.error("failed: {}", "x", new IllegalStateException("boom"));
                log.log(Level.INFO, "plain {} text");
            } finally {
                System.setOut(savedOut);
                System.setErr(savedErr);
            }
            await(Duration.ofSeconds(10), () -> server.accepted().stream().anyMatch(b -> b.path("final").asBoolean()), "final batch");
            server.accepted().forEach(b -> b.path("lines").forEach(l -> pushed.add(l.path("level").asText() + " " + l.path("text").asText())));
        }
        String out = captured.toString(StandardCharsets.UTF_8);
        List<String> stdout = Arrays.stream(out.split("\\R")).filter(l -> l.startsWith("[PowerJob] [")).map(l -> l.substring("[PowerJob] [".length()).replaceFirst("\\] ", " ")).toList();
        assertEquals(List.of("INFO loading 1 of 4", "DEBUG a debug line", "WARN a pattern with braces \\{}", "ERROR failed: x",
                "INFO plain {} text"), stdout, out);
        assertEquals(5, pushed.size(), pushed.toString());
        assertEquals(stdout.subList(0, 3), pushed.subList(0, 3));
        assertEquals("ERROR failed: x" + System.lineSeparator() + "java.lang.IllegalStateException: boom",
                pushed.get(3).lines().limit(2).reduce((a, b) -> a + System.lineSeparator() + b).orElseThrow());
        assertEquals("INFO plain {} text", pushed.get(4));
        // The worker's logger printed the same stack trace after "failed: x".
        assertEquals(true, out.contains("failed: x" + System.lineSeparator() + "java.lang.IllegalStateException: boom"), out);
    }

    @Test
    void with_the_jobs_log_level_as_push_level_both_copies_hold_the_same_lines() throws Exception {
        PrintStream savedOut = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        List<String> pushed = new ArrayList<>();
        PushStats stats;
        try (RecordingServer server = new RecordingServer()) {
            // The job's log level in PowerJob is INFO: its logger drops DEBUG lines.
            OmsStdOutLogger oms = new OmsStdOutLogger(new LogConfig().setLevel(LogLevel.INFO.getV()));
            System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
            try (PushLogger log = PushLogger.builder(server.url(), 1L).omsLogger(oms).pushLevel(Level.INFO).build()) {
                log.debug("hidden {}", 1);
                log.info("shown {}", 2);
                log.debug("hidden {}", 3);
                log.warn("shown {}", 4);
                stats = log.stats();
            } finally {
                System.setOut(savedOut);
            }
            await(Duration.ofSeconds(10), () -> server.accepted().stream().anyMatch(b -> b.path("final").asBoolean()), "final batch");
            server.accepted().forEach(b -> b.path("lines").forEach(l -> pushed.add(l.path("level").asText() + " " + l.path("text").asText())));
        }
        List<String> stdout = Arrays.stream(captured.toString(StandardCharsets.UTF_8).split("\\R"))
                .filter(l -> l.startsWith("[PowerJob] [")).map(l -> l.substring("[PowerJob] [".length()).replaceFirst("\\] ", " ")).toList();
        assertEquals(List.of("INFO shown 2", "WARN shown 4"), stdout);
        assertEquals(stdout, pushed);
        assertEquals(2, stats.queued(), stats.toString());
        assertEquals(2, stats.dropped(), stats.toString());
    }
}
