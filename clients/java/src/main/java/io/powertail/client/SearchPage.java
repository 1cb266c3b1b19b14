package io.powertail.client;

import java.util.List;

/**
 * A {@code GET /llm/search} answer: hits ordered by finish time (newest first), instance
 * id, line.
 *
 * @param hits the hits of this page (never null)
 * @param nextCursor the {@code cursor} of the next page, or null after the last
 * @param tookMs how long the archive took to answer
 */
public record SearchPage(List<SearchHit> hits, String nextCursor, long tookMs) {
    /** Null lists become empty. */
    public SearchPage {
        hits = hits == null ? List.of() : List.copyOf(hits);
    }
}
