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
 * events, resumption from {@code fromLine}, epochs, tokens, typed refusals. (AUTO's fallback
 * to SSE on a server without the route: {@code FakeServerTest}.)
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

    private static PowertailClient.Builder ws(String url) {
        return PowertailClient.builder(url).streamTransport(StreamTransport.WEBSOCKET).maxRetries(2);
    }

    @Test
    void the_websocket_yields_the_lines_and_events_of_the_sse_stream(PowertailDemo demo) {
        PowertailClient ws = ws(demo.url()).build();
        PowertailClient sse = PowertailClient.create(demo.url());
        RunAnswer run = sse.runJob("vllm-start");
        List<String> lines = all(ws.stream(run.instanceId()));
        assertTrue(lines.size() > 100, "lines: " + lines.size());
        assertEquals(all(sse.follow(run.instanceId(), FAST)), lines);
        assertEquals(lines, all(PowertailClient.builder(demo.url()).streamTransport(StreamTransport.AUTO).build().stream(run.instanceId())));
        List<ServerSentEvent> events = all(ws.streamEvents(run.instanceId(), FollowOptions.DEFAULT.withFromLine(10)));
        List<ServerSentEvent> sseEvents = all(sse.streamEvents(run.instanceId(), FollowOptions.DEFAULT.withFromLine(10)));
        ServerSentEvent end = events.get(events.size() - 1);
        assertEquals("end", end.event());
        Set<String> kinds = events.stream().map(ServerSentEvent::event).collect(Collectors.toSet());
        assertTrue(kinds.containsAll(Set.of("lines", "end", "startup")), kinds.toString());
        assertEquals(sseEvents.stream().map(ServerSentEvent::event).toList(), events.stream().map(ServerSentEvent::event).toList());
        ServerSentEvent first = events.stream().filter(ev -> ev.event().equals("lines")).findFirst().orElseThrow();
        assertTrue(first.data().replace(" ", "").contains("\"fromLine\":10"), first.data());
        assertEquals(Integer.toString(lines.size()), end.id());
        // A stale epoch: thrown, or with restart the sequence served now from line 0.
        FollowOptions stale = FollowOptions.DEFAULT.withEpoch("0000000000000000-1").withFromLine(5);
        assertThrows(EpochMismatchException.class, () -> all(ws.stream(run.instanceId(), stale)));
        assertEquals(lines, all(ws.stream(run.instanceId(), stale.withRestart(true))));
        // An instance PowerJob does not know.
        assertThrows(NotFoundException.class, () -> all(ws.stream("1")));
    }

    @Test
    void the_token_goes_in_the_header_and_refusals_are_typed(PowertailDemo demo) {
        PowertailDemo.Authed authed = demo.authed();
        RunAnswer run = PowertailClient.builder(authed.url()).token(authed.runner()).build().runJob("vllm-start");
        List<String> lines = all(ws(authed.url()).token(authed.reader()).build().stream(run.instanceId()));
        assertTrue(lines.size() > 100, "lines: " + lines.size());
        assertEquals(lines, all(PowertailClient.builder(authed.url()).token(authed.reader()).build()
                .follow(run.instanceId(), FAST)));
        assertThrows(UnauthorizedException.class, () -> all(ws(authed.url()).token("wrong").build().stream(run.instanceId())));
    }
}
