package io.powertail.client;

import java.time.Duration;

/** A 5xx that is not PowerJob's fault ({@code internal}: a bug in powertail), or an answer that is not powertail's (a proxy's error page). */
public class ServerException extends PowertailException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public ServerException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
