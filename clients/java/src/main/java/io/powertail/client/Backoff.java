package io.powertail.client;

import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;

/**
 * Exponential back-off and {@code Retry-After}: the one retry helper of this library, used
 * by the client's retries and the pusher's ({@code io.powertail.push}).
 *
 * @param initial the pause after the first failure
 * @param max the longest pause
 */
public record Backoff(Duration initial, Duration max) {
    /** Checks the values. */
    public Backoff {
        if (initial.isNegative() || initial.isZero() || max.compareTo(initial) < 0) {
            throw new IllegalArgumentException("0 < initial <= max is required");
        }
    }

    /**
     * The pause after {@code failures} failures in a row: {@code initial} doubling, at most
     * {@code max}.
     *
     * @param failures at least 1
     * @return milliseconds
     */
    public long delayMillis(int failures) {
        long first = initial.toMillis();
        int shift = Math.max(0, Math.min(failures - 1, 30));
        long d = first > (Long.MAX_VALUE >> shift) ? Long.MAX_VALUE : first << shift;
        return Math.min(d, max.toMillis());
    }

    /**
     * The pause after {@code failures} failures when the answer said {@code Retry-After}:
     * the longer of the two, at most {@code max}.
     *
     * @param failures at least 1
     * @param retryAfter the answer's {@code Retry-After}, or null
     * @return milliseconds
     */
    public long delayMillis(int failures, Duration retryAfter) {
        long d = delayMillis(failures);
        return retryAfter == null ? d : Math.min(max.toMillis(), Math.max(d, retryAfter.toMillis()));
    }

    /**
     * A {@code Retry-After} header: delta-seconds or an HTTP date.
     *
     * @param value the header, or null
     * @return the time to wait (zero for a date past), or null when absent or unreadable
     */
    public static Duration retryAfter(String value) {
        if (value == null) {
            return null;
        }
        String v = value.trim();
        if (!v.isEmpty() && v.length() < 10 && v.chars().allMatch(c -> c >= '0' && c <= '9')) {
            return Duration.ofSeconds(Long.parseLong(v));
        }
        try {
            ZonedDateTime when = ZonedDateTime.parse(v, DateTimeFormatter.RFC_1123_DATE_TIME);
            Duration d = Duration.between(ZonedDateTime.now(when.getZone()), when);
            return d.isNegative() ? Duration.ZERO : d;
        } catch (DateTimeParseException e) {
            return null;
        }
    }
}
