package io.powertail.client;

import java.util.Map;

/**
 * A {@code GET /llm/jobs/{name}/stats} answer: the archived runs of a job since a time.
 *
 * @param job the job's name
 * @param since the lower bound asked (epoch ms), or null for all
 * @param runs how many runs
 * @param byOutcome runs by start-up outcome ({@code ready}, {@code failed}, {@code exited}, ...; never null)
 * @param byCause failed runs by cause ({@code cuda_oom}, ...; never null)
 * @param readyP50Ms the median time to ready, or null when no run became ready
 * @param readyP95Ms the 95th percentile time to ready, or null
 */
public record JobStats(
        String job, Long since, long runs, Map<String, Long> byOutcome, Map<String, Long> byCause, Long readyP50Ms, Long readyP95Ms) {
    /** Null maps become empty. */
    public JobStats {
        byOutcome = byOutcome == null ? Map.of() : Map.copyOf(byOutcome);
        byCause = byCause == null ? Map.of() : Map.copyOf(byCause);
    }
}
