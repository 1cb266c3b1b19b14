package io.powertail.client;

import java.time.Duration;
import java.util.Optional;

/**
 * 410 {@code epoch_mismatch}: the log was rebuilt from scratch (powertail restarted, the log
 * was evicted) since the epoch sent; {@link #epoch()} is the current one. The lines read so
 * far belong to another sequence: start over from line 0 under the new epoch
 * ({@code FollowOptions.restart(true)} does that itself).
 */
public class EpochMismatchException extends PowertailException {
    private static final long serialVersionUID = 1L;

    private final String epoch;

    /**
     * The error of a 410 answer.
     *
     * @param code the API's error code ({@code epoch_mismatch})
     * @param message the API's message
     * @param status the HTTP status (410)
     * @param retryAfter the {@code Retry-After} of the answer, or null
     * @param epoch the current epoch the answer names, or null
     */
    public EpochMismatchException(String code, String message, Integer status, Duration retryAfter, String epoch) {
        super(code, message, status, retryAfter);
        this.epoch = epoch;
    }

    /** The epoch of the sequence served now; empty if the answer named none. */
    public Optional<String> epoch() {
        return Optional.ofNullable(epoch);
    }
}
