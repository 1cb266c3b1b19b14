package io.powertail.client;

import java.time.Instant;

/**
 * Bounds and paging of {@link PowertailClient#runs(String, RunsOptions)}.
 *
 * @param since only runs finished since this time (epoch ms on the wire), or null
 * @param until only runs finished until this time, or null
 * @param limit runs in one page (1..=500), or null for the server's default (50)
 * @param cursor the {@code nextCursor} of the previous page, or null for the first
 */
public record RunsOptions(Instant since, Instant until, Integer limit, String cursor) {
    /** No bound, the server's page size, the first page. */
    public static final RunsOptions DEFAULT = new RunsOptions(null, null, null, null);

    /** The most hits or runs one page may hold. */
    public static final int MAX_LIMIT = 500;

    /** Checks the values. */
    public RunsOptions {
        checkLimit(limit);
    }

    static void checkLimit(Integer limit) {
        if (limit != null && (limit < 1 || limit > MAX_LIMIT)) {
            throw new IllegalArgumentException("limit must be 1..=" + MAX_LIMIT + ", not " + limit);
        }
    }

    /**
     * @param v the lower bound of the finish time, or null
     * @return these options with that bound
     */
    public RunsOptions withSince(Instant v) {
        return new RunsOptions(v, until, limit, cursor);
    }

    /**
     * @param v the upper bound of the finish time, or null
     * @return these options with that bound
     */
    public RunsOptions withUntil(Instant v) {
        return new RunsOptions(since, v, limit, cursor);
    }

    /**
     * @param v runs in one page (1..=500), or null
     * @return these options with that page size
     */
    public RunsOptions withLimit(Integer v) {
        return new RunsOptions(since, until, v, cursor);
    }

    /**
     * @param v the {@code nextCursor} of the previous page, or null
     * @return these options from that page
     */
    public RunsOptions withCursor(String v) {
        return new RunsOptions(since, until, limit, v);
    }
}
