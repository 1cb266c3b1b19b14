package io.powertail.client;

import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.function.Function;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * The archive's reads (issue 20): search across runs, the runs of a job, its start-up
 * statistics. {@link PowertailClient} delegates to it. All three are idempotent reads:
 * 429/503 (e.g. {@code archive_unavailable}) are retried as for log reads.
 */
final class History {
    /** The shortest query the server accepts ({@code q} of fewer characters: 400). */
    static final int MIN_QUERY_CHARS = 3;

    private final Transport transport;

    History(Transport transport) {
        this.transport = transport;
    }

    SearchPage search(String q, SearchOptions o) {
        Objects.requireNonNull(q, "q");
        Objects.requireNonNull(o, "options");
        Map<String, Object> params = new LinkedHashMap<>();
        params.put("q", q);
        putIf(params, "job", o.job());
        putIf(params, "status", o.status());
        putIf(params, "cause", o.cause());
        putIf(params, "since", millis(o.since()));
        putIf(params, "until", millis(o.until()));
        putIf(params, "limit", o.limit());
        putIf(params, "cursor", o.cursor());
        return transport.sendJson("GET", "/llm/search", params, null, 0, true, SearchPage.class);
    }

    Stream<SearchHit> searchAll(String q, SearchOptions o) {
        return pages(o.cursor(), c -> search(q, o.withCursor(c)), SearchPage::hits, SearchPage::nextCursor);
    }

    RunsPage runs(String job, RunsOptions o) {
        Objects.requireNonNull(o, "options");
        Map<String, Object> params = new LinkedHashMap<>();
        putIf(params, "since", millis(o.since()));
        putIf(params, "until", millis(o.until()));
        putIf(params, "limit", o.limit());
        putIf(params, "cursor", o.cursor());
        return transport.sendJson("GET", jobPath(job) + "/runs", params, null, 0, true, RunsPage.class);
    }

    Stream<RunSummary> allRuns(String job, RunsOptions o) {
        return pages(o.cursor(), c -> runs(job, o.withCursor(c)), RunsPage::runs, RunsPage::nextCursor);
    }

    JobStats stats(String job, Instant since) {
        Map<String, Object> params = new LinkedHashMap<>();
        putIf(params, "since", millis(since));
        return transport.sendJson("GET", jobPath(job) + "/stats", params, null, 0, true, JobStats.class);
    }

    /** {@code /llm/jobs/{name}}, the name as one path segment. */
    static String jobPath(String job) {
        Objects.requireNonNull(job, "job");
        if (job.isEmpty()) {
            throw new IllegalArgumentException("job must not be empty");
        }
        return "/llm/jobs/" + URLEncoder.encode(job, StandardCharsets.UTF_8).replace("+", "%20");
    }

    private static void putIf(Map<String, Object> params, String key, Object value) {
        if (value != null) {
            params.put(key, value);
        }
    }

    private static Long millis(Instant t) {
        return t == null ? null : t.toEpochMilli();
    }

    /**
     * The items of every page from {@code first} on, fetched lazily: the next page is
     * asked for only when the items of this one are used up, and not after a page without
     * a {@code nextCursor}. A page with no item but a cursor is followed (bounded by the
     * server, which always advances).
     */
    static <P, T> Stream<T> pages(String first, Function<String, P> fetch, Function<P, List<T>> items, Function<P, String> next) {
        Iterator<T> it = new Iterator<>() {
            private Iterator<T> current = List.<T>of().iterator();
            private String cursor = first;
            private boolean more = true;

            @Override
            public boolean hasNext() {
                while (!current.hasNext() && more) {
                    P page = fetch.apply(cursor);
                    current = items.apply(page).iterator();
                    String n = next.apply(page);
                    if (n == null || n.isEmpty() || n.equals(cursor)) {
                        more = false;
                    }
                    cursor = n;
                }
                return current.hasNext();
            }

            @Override
            public T next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                return current.next();
            }
        };
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(it, Spliterator.ORDERED | Spliterator.NONNULL), false);
    }
}
