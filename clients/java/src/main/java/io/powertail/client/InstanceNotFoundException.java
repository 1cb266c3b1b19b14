package io.powertail.client;

import java.time.Duration;

/** 404 {@code instance_not_found}: PowerJob does not know the instance. */
public class InstanceNotFoundException extends NotFoundException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public InstanceNotFoundException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
