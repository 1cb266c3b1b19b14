package io.powertail.client;

import java.time.Instant;

/**
 * Filters and paging of {@link PowertailClient#search(String, SearchOptions)}.
 *
 * <pre>{@code
 * SearchOptions.DEFAULT.withJob("vllm-start").withCause("cuda_oom").withSince(Instant.now().minus(Duration.ofDays(7)))
 * }</pre>
 *
 * @param job only runs of this job (its name), or null
 * @param status only runs that ended in this status ({@code FAILED}, ...), or null
 * @param cause only runs whose start-up failed with this cause ({@code cuda_oom}, ...), or null
 * @param since only runs finished since this time (epoch ms on the wire), or null
 * @param until only runs finished until this time, or null
 * @param limit hits in one page (1..=500), or null for the server's default (50)
 * @param cursor the {@code nextCursor} of the previous page, or null for the first
 */
public record SearchOptions(String job, String status, String cause, Instant since, Instant until, Integer limit, String cursor) {
    /** No filter, the server's page size, the first page. */
    public static final SearchOptions DEFAULT = new SearchOptions(null, null, null, null, null, null, null);

    /** Checks the values. */
    public SearchOptions {
        RunsOptions.checkLimit(limit);
    }

    /**
     * @param v the job's name, or null
     * @return these options with that job
     */
    public SearchOptions withJob(String v) {
        return new SearchOptions(v, status, cause, since, until, limit, cursor);
    }

    /**
     * @param v the final status, or null
     * @return these options with that status
     */
    public SearchOptions withStatus(String v) {
        return new SearchOptions(job, v, cause, since, until, limit, cursor);
    }

    /**
     * @param v the start-up failure's cause, or null
     * @return these options with that cause
     */
    public SearchOptions withCause(String v) {
        return new SearchOptions(job, status, v, since, until, limit, cursor);
    }

    /**
     * @param v the lower bound of the finish time, or null
     * @return these options with that bound
     */
    public SearchOptions withSince(Instant v) {
        return new SearchOptions(job, status, cause, v, until, limit, cursor);
    }

    /**
     * @param v the upper bound of the finish time, or null
     * @return these options with that bound
     */
    public SearchOptions withUntil(Instant v) {
        return new SearchOptions(job, status, cause, since, v, limit, cursor);
    }

    /**
     * @param v hits in one page (1..=500), or null
     * @return these options with that page size
     */
    public SearchOptions withLimit(Integer v) {
        return new SearchOptions(job, status, cause, since, until, v, cursor);
    }

    /**
     * @param v the {@code nextCursor} of the previous page, or null
     * @return these options from that page
     */
    public SearchOptions withCursor(String v) {
        return new SearchOptions(job, status, cause, since, until, limit, v);
    }
}
