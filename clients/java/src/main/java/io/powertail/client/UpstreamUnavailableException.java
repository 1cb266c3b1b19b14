package io.powertail.client;

import java.time.Duration;

/** 503 {@code upstream_unavailable}: PowerJob cannot be reached and nothing is cached (retryable: {@link #retryAfter()} is set). */
public class UpstreamUnavailableException extends UpstreamException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public UpstreamUnavailableException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }

    @Override
    public boolean isRetryable() {
        return true;
    }
}
