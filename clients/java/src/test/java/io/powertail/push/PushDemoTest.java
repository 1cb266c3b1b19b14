package io.powertail.push;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.powertail.client.FollowOptions;
import io.powertail.client.PowertailClient;
import io.powertail.client.RunAnswer;
import io.powertail.testing.PowertailDemo;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The pusher against the real powertail binary. Until powertail has the push endpoint
 * (issue 19 item 1), the first batch gets 404/405 and pushing turns off without failing
 * anything: the log is PowerJob's, as before. Once it has it, the pushed lines are served
 * in PowerJob's format ({@code <ts> [<worker>] <LEVEL> <text>}), each once.
 */
@ExtendWith(PowertailDemo.class)
@Tag("demo")
@Timeout(120)
class PushDemoTest {
    @Test
    void pushing_to_this_powertail_never_fails_the_task_and_never_repeats_a_line(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-port-in-use");
        RecordingOmsLogger oms = new RecordingOmsLogger();
        PushLogger log = PushLogger.builder(demo.url(), Long.parseLong(run.instanceId()))
                .omsLogger(oms).worker("10.0.0.9:27777").linger(Duration.ZERO).build();
        log.info("pushed one");
        log.warn("pushed two {}", 2);
        log.close();
        PushStats s = log.stats();
        assertEquals(List.of("INFO pushed one", "WARN pushed two 2"), oms.lines());
        List<String> lines;
        try (Stream<String> follow = pt.follow(run.instanceId(), FollowOptions.DEFAULT.withLongPoll(Duration.ofSeconds(5)))) {
            lines = follow.toList();
        }
        if (s.disabled()) {
            assertEquals(0, s.sent(), s.toString());
            assertEquals(2, s.rejected() + s.dropped(), s.toString());
            assertTrue(lines.stream().noneMatch(l -> l.contains("pushed")), lines.toString());
        } else {
            assertEquals(2, s.sent(), s.toString());
            assertEquals(1, lines.stream().filter(l -> l.endsWith("[10.0.0.9:27777] INFO pushed one")).count(), lines.toString());
            assertEquals(1, lines.stream().filter(l -> l.endsWith("[10.0.0.9:27777] WARN pushed two 2")).count(), lines.toString());
        }
        assertTrue(lines.size() > 30, "the job's own log is whole: " + lines.size());
    }
}
