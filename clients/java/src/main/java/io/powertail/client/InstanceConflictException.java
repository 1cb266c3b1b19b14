package io.powertail.client;

import java.time.Duration;

/** 409 {@code instance_conflict} (cluster mode): the shared store holds this instance id for another PowerJob (two PowerJob clusters share one Redis and {@code key_prefix}); nothing of it is served. Not retryable: the configuration must change. */
public class InstanceConflictException extends PowertailException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public InstanceConflictException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
