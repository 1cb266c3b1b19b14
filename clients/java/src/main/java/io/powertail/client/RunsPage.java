package io.powertail.client;

import java.util.List;

/**
 * A {@code GET /llm/jobs/{name}/runs} answer.
 *
 * @param job the job's name
 * @param runs the runs of this page (never null), newest first
 * @param nextCursor the {@code cursor} of the next page, or null after the last
 */
public record RunsPage(String job, List<RunSummary> runs, String nextCursor) {
    /** Null lists become empty. */
    public RunsPage {
        runs = runs == null ? List.of() : List.copyOf(runs);
    }
}
