package io.powertail.client;

import java.time.Duration;

/** Refused for now (429, 503): {@link #retryAfter()} says when to try again. The idempotent calls (reads, long-polls, streams) sleep and retry these themselves, up to the client's {@code maxRetries} in a row; {@code runJob} and the instance controls throw them. */
public class RetryableException extends PowertailException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public RetryableException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }

    @Override
    public boolean isRetryable() {
        return true;
    }
}
