package io.powertail.client;

import java.time.Duration;

/** No answer: connecting or reading failed (code {@code connection_error}, no status). A refused connection is thrown once the client's {@code connectRetryBudget} is spent. */
public class PowertailConnectionException extends PowertailException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public PowertailConnectionException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
