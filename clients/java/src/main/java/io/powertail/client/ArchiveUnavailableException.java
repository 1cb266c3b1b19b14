package io.powertail.client;

import java.time.Duration;

/** 503 {@code archive_unavailable}: the archive's database cannot be reached just now (search, runs, stats); a retry later may answer. */
public class ArchiveUnavailableException extends RetryableException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public ArchiveUnavailableException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
