package io.powertail.client;

import java.time.Duration;
import java.util.Objects;

/**
 * How {@link PowertailClient#follow}, {@link PowertailClient#followPages} and
 * {@link PowertailClient#stream} follow a log.
 *
 * <pre>{@code
 * FollowOptions.DEFAULT.withFromLine(40).withLongPoll(Duration.ofSeconds(5)).withRestart(true)
 * }</pre>
 *
 * @param fromLine the first line wanted (the {@code nextLine} of a previous answer)
 * @param longPoll each long-poll's {@code waitMs} (at most 30 s); the event stream ignores it
 * @param limit most lines in one answer, or null for the server's default (1000); the
 *     event stream ignores it
 * @param epoch the epoch {@code fromLine} belongs to, or null to take the first answer's
 * @param restart on a rebuilt log (410 {@code epoch_mismatch}), start over from line 0 of
 *     the new sequence instead of throwing {@link EpochMismatchException}: lines already
 *     yielded come again, in the new order
 */
public record FollowOptions(long fromLine, Duration longPoll, Integer limit, String epoch, boolean restart) {
    /** From line 0, 20 s long-polls, the server's page size, any epoch, no restart. */
    public static final FollowOptions DEFAULT = new FollowOptions(0, Duration.ofSeconds(20), null, null, false);

    /** Checks the values. */
    public FollowOptions {
        if (fromLine < 0) {
            throw new IllegalArgumentException("fromLine must be >= 0, not " + fromLine);
        }
        Objects.requireNonNull(longPoll, "longPoll");
        if (longPoll.isNegative()) {
            throw new IllegalArgumentException("longPoll must not be negative");
        }
        if (limit != null && (limit < 1 || limit > 10_000)) {
            throw new IllegalArgumentException("limit must be 1..=10000, not " + limit);
        }
    }

    /**
     * These options from another line.
     *
     * @param line the first line wanted
     * @return the new options
     */
    public FollowOptions withFromLine(long line) {
        return new FollowOptions(line, longPoll, limit, epoch, restart);
    }

    /**
     * These options with another long-poll time.
     *
     * @param w each long-poll's wait (capped at 30 s)
     * @return the new options
     */
    public FollowOptions withLongPoll(Duration w) {
        return new FollowOptions(fromLine, w, limit, epoch, restart);
    }

    /**
     * These options with another page size.
     *
     * @param l most lines in one answer, or null
     * @return the new options
     */
    public FollowOptions withLimit(Integer l) {
        return new FollowOptions(fromLine, longPoll, l, epoch, restart);
    }

    /**
     * These options with an epoch.
     *
     * @param e the epoch {@code fromLine} belongs to, or null
     * @return the new options
     */
    public FollowOptions withEpoch(String e) {
        return new FollowOptions(fromLine, longPoll, limit, e, restart);
    }

    /**
     * These options with another restart policy.
     *
     * @param r start over on a rebuilt log instead of throwing
     * @return the new options
     */
    public FollowOptions withRestart(boolean r) {
        return new FollowOptions(fromLine, longPoll, limit, epoch, r);
    }
}
