package io.powertail.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.powertail.testing.PowertailDemo;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * {@code stream} over the WebSocket ({@code GET /llm/logs/{id}/ws}, issue 19 item 4) against
 * a real {@code powertail demo}: the same lines as the long-poll and the SSE stream, the same
 * events, resumption from {@code fromLine}, epochs; and {@link StreamTransport#AUTO} falling
 * back to SSE on a server without the route.
 */
@ExtendWith(PowertailDemo.class)
@Timeout(120)
class WebSocketDemoTest {
    private static final FollowOptions FAST = FollowOptions.DEFAULT.withLongPoll(Duration.ofSeconds(5));

    private static <T> List<T> all(Stream<T> s) {
        try (s) {
            return s.toList();
        }
    }

    private static PowertailClient client(PowertailDemo demo, StreamTransport t) {
        return PowertailClient.builder(demo.url()).streamTransport(t).build();
    }

    @Test
    void auto_streams_the_same_lines_as_follow_whichever_transport_the_server_has(PowertailDemo demo) {
        PowertailClient pt = client(demo, StreamTransport.AUTO);
        RunAnswer run = pt.runJob("vllm-start");
        List<String> streamed = all(pt.stream(run.instanceId()));
        assertEquals(all(pt.follow(run.instanceId(), FAST)), streamed);
        assertTrue(streamed.size() > 100, "lines: " + streamed.size());
    }

    @Test
    void the_websocket_yields_the_events_of_the_sse_stream(PowertailDemo demo) {
        PowertailClient ws = client(demo, StreamTransport.WEBSOCKET);
        PowertailClient sse = PowertailClient.create(demo.url());
        RunAnswer run = sse.runJob("vllm-start");
        boolean hasRoute;
        try (Stream<ServerSentEvent> probe = ws.streamEvents(run.instanceId(), FollowOptions.DEFAULT)) {
            probe.findFirst();
            hasRoute = true;
        } catch (NotFoundException e) {
            hasRoute = false; // this powertail has no WebSocket route: AUTO used SSE above
        }
        if (!hasRoute) {
            assertThrows(NotFoundException.class, () -> all(ws.stream(run.instanceId())));
            return;
        }
        List<String> lines = all(ws.stream(run.instanceId()));
        assertEquals(all(sse.follow(run.instanceId(), FAST)), lines);
        List<ServerSentEvent> events = all(ws.streamEvents(run.instanceId(), FollowOptions.DEFAULT.withFromLine(10)));
        ServerSentEvent end = events.get(events.size() - 1);
        assertEquals("end", end.event());
        Set<String> kinds = events.stream().map(ServerSentEvent::event).collect(Collectors.toSet());
        assertTrue(kinds.containsAll(Set.of("lines", "end", "startup")), kinds.toString());
        ServerSentEvent first = events.stream().filter(ev -> ev.event().equals("lines")).findFirst().orElseThrow();
        assertTrue(first.data().replace(" ", "").contains("\"fromLine\":10"), first.data());
        assertEquals(Integer.toString(lines.size()), end.id());
        // A stale epoch: thrown, or with restart the sequence served now from line 0.
        FollowOptions stale = FollowOptions.DEFAULT.withEpoch("0000000000000000-1").withFromLine(5);
        assertThrows(EpochMismatchException.class, () -> all(ws.stream(run.instanceId(), stale)));
        assertEquals(lines, all(ws.stream(run.instanceId(), stale.withRestart(true))));
    }
}
