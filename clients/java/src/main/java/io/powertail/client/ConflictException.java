package io.powertail.client;

import java.time.Duration;

/** 409 {@code conflict}: stop, cancel or retry in a state PowerJob refuses; the message names the instance's status. */
public class ConflictException extends PowertailException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public ConflictException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
