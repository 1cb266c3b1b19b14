package io.powertail.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.powertail.testing.PowertailDemo;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The archive's reads (issue 20) against a real {@code powertail demo}, which archives every
 * run it started into a SQLite file: search hits exact against a scan of the followed log,
 * the run's summary against its start-up state, the statistics of the runs of this test.
 */
@ExtendWith(PowertailDemo.class)
@Timeout(120)
class ArchiveDemoTest {
    private static final FollowOptions FAST = FollowOptions.DEFAULT.withLongPoll(Duration.ofSeconds(5));
    private static final Duration DEADLINE = Duration.ofSeconds(30);

    private static <T> List<T> all(Stream<T> s) {
        try (s) {
            return s.toList();
        }
    }

    /** Polls {@code get} until {@code done}, at most {@link #DEADLINE}. */
    private static <T> T await(Supplier<T> get, java.util.function.Predicate<T> done, String what) throws InterruptedException {
        long deadline = System.nanoTime() + DEADLINE.toNanos();
        while (true) {
            T v = get.get();
            if (done.test(v)) {
                return v;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError(what + " not within " + DEADLINE + ": " + v);
            }
            Thread.sleep(100);
        }
    }

    @Test
    void a_failed_run_is_searchable_listed_and_counted_exactly(PowertailDemo demo) throws InterruptedException {
        PowertailClient pt = PowertailClient.create(demo.url());
        Instant since = Instant.now().minusSeconds(1);
        RunAnswer run = pt.runJob("vllm-oom");
        String id = run.instanceId();
        List<String> lines = all(pt.follow(id, FAST));
        StartupState state = pt.waitStartup(id, Duration.ofSeconds(60));
        assertEquals("cuda_oom", state.failure().cause(), state.toString());

        // Archived once complete: its runs row appears.
        RunsOptions mine = RunsOptions.DEFAULT.withSince(since);
        RunSummary summary = await(() -> all(pt.allRuns("vllm-oom", mine)).stream().filter(r -> r.instanceId().equals(id)).findFirst().orElse(null),
                r -> r != null, "the run of " + id + " in /llm/jobs/vllm-oom/runs");
        assertEquals(new RunSummary(id, state.attempt(), "FAILED", summary.startedAt(), summary.finishedAt(), "failed", null,
                "cuda_oom", state.failure().line(), lines.size()), summary);
        assertNotNull(summary.finishedAt());

        // Search: exactly the lines of the followed log that contain the text, any case.
        String q = "out of MEMORY";
        List<Integer> expected = new ArrayList<>();
        for (int k = 0; k < lines.size(); k++) {
            if (lines.get(k).toLowerCase(Locale.ROOT).contains(q.toLowerCase(Locale.ROOT))) {
                expected.add(k);
            }
        }
        assertTrue(!expected.isEmpty(), "the demo's OOM log mentions it");
        SearchOptions opts = SearchOptions.DEFAULT.withJob("vllm-oom").withSince(since).withStatus("FAILED").withCause("cuda_oom");
        List<SearchHit> hits = all(pt.searchAll(q, opts.withLimit(2))).stream().filter(h -> h.instanceId().equals(id)).toList();
        assertEquals(expected, hits.stream().map(h -> (int) h.line()).toList());
        for (SearchHit h : hits) {
            assertEquals(lines.get((int) h.line()), h.text());
            assertEquals("vllm-oom", h.jobName());
            assertEquals(summary.finishedAt(), h.finishedAt());
            assertEquals("/?instanceId=" + id + "&line=" + h.line(), h.url());
        }
        // One page of them all is the same as pages of 2.
        assertEquals(hits, pt.search(q, opts.withLimit(500)).hits().stream().filter(h -> h.instanceId().equals(id)).toList());
        // Filters that exclude the run.
        assertEquals(List.of(), pt.search(q, opts.withJob("vllm-start")).hits());
        assertEquals(List.of(), pt.search(q, opts.withCause("port_in_use")).hits());

        // The statistics of the runs finished since this test began: this one.
        JobStats stats = pt.stats("vllm-oom", since);
        assertEquals(1, stats.runs(), stats.toString());
        assertEquals(Map.of("failed", 1L), stats.byOutcome());
        assertEquals(Map.of("cuda_oom", 1L), stats.byCause());
        assertEquals(null, stats.readyP50Ms());
    }

    @Test
    void a_ready_run_has_its_time_to_ready_and_bad_queries_are_typed(PowertailDemo demo) throws InterruptedException {
        PowertailClient pt = PowertailClient.create(demo.url());
        Instant since = Instant.now().minusSeconds(1);
        RunAnswer run = pt.runJob("vllm-start");
        all(pt.follow(run.instanceId(), FAST));
        StartupState state = pt.waitStartup(run.instanceId(), Duration.ofSeconds(60));
        assertEquals("ready", state.phase());
        RunSummary summary = await(() -> all(pt.allRuns("vllm-start", RunsOptions.DEFAULT.withSince(since))).stream()
                .filter(r -> r.instanceId().equals(run.instanceId())).findFirst().orElse(null), r -> r != null, "the run");
        assertEquals("ready", summary.phase());
        assertNotNull(summary.readyAfterMs());
        JobStats stats = pt.stats("vllm-start", since);
        assertEquals(Map.of("ready", 1L), stats.byOutcome());
        assertEquals(summary.readyAfterMs(), stats.readyP50Ms());
        assertEquals(summary.readyAfterMs(), stats.readyP95Ms());

        assertThrows(BadRequestException.class, () -> pt.search("ab"));
        assertThrows(BadRequestException.class, () -> pt.search("abc", SearchOptions.DEFAULT.withStatus("NOT_A_STATUS")));
        assertEquals(List.of(), pt.runs("no-such-job").runs());
    }
}
