package io.powertail.push;

import static io.powertail.push.RecordingServer.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The subprocess pump, with real {@code sh -c} children. */
@Timeout(60)
class ProcessPumpTest {
    private static final Duration DEADLINE = Duration.ofSeconds(10);

    private static List<String> pushed(RecordingServer server) {
        List<String> out = new ArrayList<>();
        for (JsonNode b : server.accepted()) {
            b.path("lines").forEach(l -> out.add(l.path("level").asText() + " " + l.path("text").asText()));
        }
        return out;
    }

    @Test
    void pumps_stdout_and_stderr_of_a_real_child_and_returns_its_exit_code() throws Exception {
        try (RecordingServer server = new RecordingServer()) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            int code;
            try (PushLogger log = PushLogger.builder(server.url(), 42).omsLogger(oms).build()) {
                code = ProcessPump.of(log).stderrLevel(Level.WARN).run(new ProcessBuilder("sh", "-c",
                        "echo out one; echo err one >&2; printf 'a\\rb\\r\\nc\\n'; echo '{} braces \u00e9'; printf 'no newline'; exit 3"));
            }
            assertEquals(3, code);
            List<String> lines = oms.lines();
            // stdout in order, with \r, \r\n and \n each ending a line, and an unterminated last line.
            assertEquals(List.of("INFO out one", "INFO a", "INFO b", "INFO c", "INFO {} braces \u00e9", "INFO no newline"),
                    lines.stream().filter(l -> l.startsWith("INFO")).toList());
            assertEquals(List.of("WARN err one"), lines.stream().filter(l -> l.startsWith("WARN")).toList());
            // The push has the same lines, in the same order.
            assertEquals(lines, pushed(server));
            assertTrue(server.accepted().get(server.accepted().size() - 1).path("final").asBoolean());
        }
    }

    @Test
    void an_interrupted_task_destroys_its_process() throws Exception {
        RecordingOmsLogger oms = new RecordingOmsLogger();
        AtomicReference<Throwable> outcome = new AtomicReference<>();
        Thread task = new Thread(() -> {
            try (PushLogger log = PushLogger.builder(null, 42).omsLogger(oms).build()) {
                ProcessPump.of(log).killGrace(Duration.ofSeconds(2))
                        .run(new ProcessBuilder("sh", "-c", "echo pid $$; exec sleep 30"));
                outcome.set(new AssertionError("run returned"));
            } catch (Exception e) {
                outcome.set(e);
            }
        });
        task.start();
        await(DEADLINE, () -> !oms.lines().isEmpty(), "the child's first line");
        long pid = Long.parseLong(oms.lines().get(0).substring("INFO pid ".length()));
        assertTrue(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false));
        task.interrupt();
        task.join(DEADLINE.toMillis());
        assertFalse(task.isAlive());
        assertTrue(outcome.get() instanceof InterruptedException, String.valueOf(outcome.get()));
        Optional<ProcessHandle> child = ProcessHandle.of(pid);
        await(DEADLINE, () -> child.map(h -> !h.isAlive()).orElse(true), "the child's end");
    }
}
