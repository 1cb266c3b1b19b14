package io.powertail.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.powertail.testing.PowertailDemo;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/** Against a real {@code powertail demo} (see {@link PowertailDemo}). */
@ExtendWith(PowertailDemo.class)
@Timeout(120)
class DemoTest {
    private static final String STALE_EPOCH = "0000000000000000-1";
    private static final FollowOptions FAST = FollowOptions.DEFAULT.withLongPoll(Duration.ofSeconds(5));

    private static List<String> all(Stream<String> s) {
        try (s) {
            return s.toList();
        }
    }

    private static String joined(List<String> lines) {
        return lines.stream().map(l -> l + "\n").collect(Collectors.joining());
    }

    @Test
    void follow_reads_a_job_to_completion_exactly_as_the_raw_log(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start", Map.of("port", 8001));
        assertEquals("vllm-start", run.jobName());
        assertTrue(new BigInteger(run.instanceId()).compareTo(BigInteger.TWO.pow(53)) > 0, run.instanceId());
        assertEquals("/llm/logs?instanceId=" + run.instanceId(), run.logsUrl());

        List<String> lines = all(pt.follow(run.instanceId(), FAST));

        assertTrue(lines.size() > 100, "lines: " + lines.size());
        assertTrue(lines.stream().anyMatch(l -> l.contains("--port 8001")));
        assertTrue(lines.stream().anyMatch(l -> l.contains("Application startup complete.")));
        // Complete: the raw log is exactly what was followed, one line per "\n".
        assertEquals(joined(lines), pt.raw(run.instanceId()));
        LogPage last = pt.read(run.instanceId(), lines.size());
        assertTrue(last.complete());
        assertEquals(List.of(), last.lines());
        assertEquals(lines.size(), last.nextLine());
        // Following again from the middle resumes there.
        assertEquals(lines.subList(40, lines.size()), all(pt.follow(run.instanceId(), FollowOptions.DEFAULT.withFromLine(40))));
    }

    @Test
    void follow_pages_carry_the_cursor(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-port-in-use");
        List<LogPage> pages = pt.followPages(run.instanceId(), FAST.withLimit(7)).toList();
        assertTrue(pages.get(pages.size() - 1).complete());
        assertTrue(pages.subList(0, pages.size() - 1).stream().noneMatch(LogPage::complete));
        for (int i = 1; i < pages.size(); i++) {
            assertEquals(pages.get(i - 1).nextLine(), pages.get(i).fromLine());
            assertTrue(pages.get(i - 1).lines().size() <= 7);
        }
        LogPage last = pages.get(pages.size() - 1);
        assertEquals("FAILED", last.status());
        assertEquals(List.of(new Attempt(1, 0)), last.attempts());
    }

    @Test
    void a_stale_epoch_throws_epoch_mismatch_with_the_current_one_or_restarts(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-port-in-use");
        List<LogPage> pages = pt.followPages(run.instanceId(), FAST).toList();
        String epoch = pages.get(0).epoch();
        assertNotNull(epoch);
        assertTrue(pages.stream().allMatch(p -> epoch.equals(p.epoch())));
        assertEquals(3, pt.read(run.instanceId(), 3, null, Duration.ZERO, epoch).fromLine());
        // An epoch of another sequence (a restarted powertail, say): 410, never its lines.
        EpochMismatchException e = assertThrows(EpochMismatchException.class,
                () -> pt.read(run.instanceId(), 3, null, Duration.ZERO, STALE_EPOCH));
        assertEquals(410, e.status().orElseThrow());
        assertEquals("epoch_mismatch", e.code());
        assertEquals(epoch, e.epoch().orElseThrow());
        FollowOptions stale = FAST.withFromLine(3).withEpoch(STALE_EPOCH);
        assertThrows(EpochMismatchException.class, () -> all(pt.follow(run.instanceId(), stale)));
        assertThrows(EpochMismatchException.class, () -> all(pt.stream(run.instanceId(), stale)));
        // restart: from line 0 of the sequence served now.
        List<String> lines = pages.stream().flatMap(p -> p.lines().stream()).toList();
        assertEquals(lines, all(pt.follow(run.instanceId(), stale.withRestart(true))));
        assertEquals(lines, all(pt.stream(run.instanceId(), stale.withRestart(true))));
    }

    @Test
    void stream_yields_the_same_lines_as_follow(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start");
        List<String> streamed = all(pt.stream(run.instanceId()));
        assertEquals(all(pt.follow(run.instanceId(), FAST)), streamed);
        assertEquals(joined(streamed), pt.raw(run.instanceId()));
        // Events: lines with their id, start-up, then end with the final position.
        List<ServerSentEvent> events;
        try (Stream<ServerSentEvent> s = pt.streamEvents(run.instanceId(), FollowOptions.DEFAULT.withFromLine(10))) {
            events = s.toList();
        }
        ServerSentEvent end = events.get(events.size() - 1);
        assertEquals("end", end.event());
        Set<String> kinds = events.stream().map(ServerSentEvent::event).collect(Collectors.toSet());
        assertTrue(kinds.containsAll(Set.of("lines", "end", "startup")), kinds.toString());
        ServerSentEvent first = events.stream().filter(ev -> ev.event().equals("lines")).findFirst().orElseThrow();
        assertTrue(first.data().replace(" ", "").contains("\"fromLine\":10"), first.data());
        assertEquals(Integer.toString(streamed.size()), end.id());
    }

    @Test
    void closing_a_stream_early_closes_its_connection(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("noisy-batch");
        // The first 50 lines of a long job, then the stream is closed while it runs.
        List<String> head = all(pt.stream(run.instanceId()).limit(50));
        assertEquals(50, head.size());
        assertEquals(head, pt.read(run.instanceId(), 0, 50, Duration.ZERO, null).lines());
        // powertail sees the stream go (its gauge of open streams falls to 0).
        HttpClient http = HttpClient.newHttpClient();
        long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        String metrics = "";
        while (System.nanoTime() < deadline) {
            metrics = get(http, demo.url() + "/metrics");
            if (metrics.lines().anyMatch(l -> l.equals("powertail_sse_clients 0"))) {
                return;
            }
            sleep(100);
        }
        throw new AssertionError("the stream is still open:\n" + metrics.lines().filter(l -> l.contains("sse")).toList());
    }

    private static String get(HttpClient http, String url) {
        try {
            return http.send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString()).body();
        } catch (java.io.IOException | InterruptedException e) {
            throw new AssertionError(e);
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void run_job_with_an_unknown_name_throws_job_not_found(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        JobNotFoundException e = assertThrows(JobNotFoundException.class, () -> pt.runJob("no-such-job"));
        assertInstanceOf(NotFoundException.class, e);
        assertEquals(404, e.status().orElseThrow());
        assertEquals("job_not_found", e.code());
        assertTrue(e.apiMessage().contains("no-such-job"), e.apiMessage());
        assertTrue(e.retryAfter().isEmpty());
        assertFalse(e.isRetryable());
        // A numeric id PowerJob does not know.
        assertThrows(JobNotFoundException.class, () -> pt.runJob(999L, null));
    }

    @Test
    void an_unknown_instance_throws_instance_not_found(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        InstanceNotFoundException e = assertThrows(InstanceNotFoundException.class, () -> all(pt.follow("1")));
        assertEquals(404, e.status().orElseThrow());
        assertThrows(InstanceNotFoundException.class, () -> all(pt.stream("1")));
        assertThrows(InstanceNotFoundException.class, () -> pt.startup("1"));
    }

    @Test
    void a_bad_parameter_throws_bad_request(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        BadRequestException e = assertThrows(BadRequestException.class, () -> pt.read("1", 0, 0, Duration.ZERO, null));
        assertEquals(400, e.status().orElseThrow());
        assertEquals("bad_request", e.code());
        assertInstanceOf(RequestException.class, e);
        assertThrows(IllegalArgumentException.class, () -> pt.read("12a"));
        assertThrows(IllegalArgumentException.class, () -> FollowOptions.DEFAULT.withLimit(0));
    }

    @Test
    void startup_of_vllm_start_reaches_ready(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start");
        StartupState first = pt.startup(run.instanceId());
        assertTrue(Set.of("starting", "loading").contains(first.phase()), first.phase());
        assertFalse(first.complete());
        StartupState state = pt.waitStartup(run.instanceId(), Duration.ofSeconds(60));
        assertEquals("ready", state.phase(), state.toString());
        assertTrue(state.complete());
        assertNull(state.failure());
        assertNotNull(state.ready());
        assertTrue(state.ready().text().contains("Application startup complete."));
        List<String> kinds = state.events().stream().map(StartupEvent::kind).toList();
        assertEquals("loading", kinds.get(0));
        assertEquals("ready", kinds.get(kinds.size() - 1));
        assertTrue(kinds.contains("progress"));
        StartupEvent progress = state.events().stream().filter(ev -> ev.kind().equals("progress")).findFirst().orElseThrow();
        assertNotNull(progress.total());
    }

    @Test
    void startup_of_vllm_oom_fails_with_cuda_oom_on_the_line_the_log_serves(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-oom");
        StartupState state = pt.waitStartup(run.instanceId(), Duration.ofSeconds(60));
        assertTrue(state.complete(), state.toString());
        assertEquals("failed", state.phase());
        assertEquals("cuda_oom", state.failure().cause());
        assertEquals("FAILED", state.status());
        List<String> lines = all(pt.follow(run.instanceId(), FAST));
        assertEquals(lines.get(state.failure().line().intValue()), state.failure().text());
    }

    @Test
    void startup_long_polls_until_a_change(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        RunAnswer run = pt.runJob("vllm-start");
        StartupState state = pt.startup(run.instanceId());
        StartupState changed = pt.startup(run.instanceId(), Duration.ofSeconds(10), state.attempt(), state.events().size());
        assertTrue(changed.events().size() > state.events().size() || changed.complete());
    }

    @Test
    void tokens_are_sent_and_auth_errors_are_typed(PowertailDemo demo) {
        PowertailDemo.Authed authed = demo.authed();
        UnauthorizedException e = assertThrows(UnauthorizedException.class, () -> PowertailClient.create(authed.url()).read("1"));
        assertEquals(401, e.status().orElseThrow());
        assertEquals("unauthorized", e.code());
        assertInstanceOf(AuthException.class, e);
        assertFalse(e.getMessage().contains(authed.reader()));
        PowertailClient reader = PowertailClient.builder(authed.url()).token(authed.reader()).build();
        ForbiddenException f = assertThrows(ForbiddenException.class, () -> reader.runJob("vllm-start"));
        assertEquals(403, f.status().orElseThrow());
        assertFalse(f.getMessage().contains(authed.reader()));
        RunAnswer run = PowertailClient.builder(authed.url()).token(authed.runner()).build()
                .runJob("vllm-start", Map.of("port", 8002));
        List<String> lines = all(reader.stream(run.instanceId()));
        assertTrue(lines.stream().anyMatch(l -> l.contains("--port 8002")));
        assertEquals(lines, all(reader.follow(run.instanceId(), FAST)));
    }

    @Test
    void jobs_instance_and_stop(PowertailDemo demo) {
        PowertailClient pt = PowertailClient.create(demo.url());
        Set<String> names = pt.jobs().jobs().stream().map(Job::name).collect(Collectors.toSet());
        assertTrue(names.containsAll(Set.of("vllm-start", "vllm-oom", "vllm-port-in-use")), names.toString());
        RunAnswer run = pt.runJob("vllm-port-in-use");
        all(pt.follow(run.instanceId(), FAST));
        Instance info = pt.instance(run.instanceId());
        assertEquals(run.instanceId(), info.instanceId());
        assertEquals("FAILED", info.status());
        ConflictException e = assertThrows(ConflictException.class, () -> pt.stop(run.instanceId()));
        assertEquals(409, e.status().orElseThrow());
        assertTrue(e.apiMessage().contains("FAILED"), e.apiMessage());
    }
}
