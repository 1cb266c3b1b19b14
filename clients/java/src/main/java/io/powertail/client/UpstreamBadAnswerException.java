package io.powertail.client;

import java.time.Duration;

/** 502 {@code upstream_error}: PowerJob answered an error or something not its protocol. */
public class UpstreamBadAnswerException extends UpstreamException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public UpstreamBadAnswerException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
