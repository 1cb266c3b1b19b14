package io.powertail.client;

import java.time.Duration;

/** 404 {@code job_not_found}: no configured job of that name, or PowerJob has no such id. */
public class JobNotFoundException extends NotFoundException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public JobNotFoundException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
