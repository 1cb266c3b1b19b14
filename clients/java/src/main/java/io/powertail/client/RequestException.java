package io.powertail.client;

import java.time.Duration;

/** The request itself was refused (400, 405, 413, 431): fix the call, do not retry. */
public class RequestException extends PowertailException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public RequestException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
