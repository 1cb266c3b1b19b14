package io.powertail.client;

import java.time.Duration;

/** 503 {@code store_unavailable} (cluster mode): the replica cannot reach its Redis and holds nothing of the instance; another replica, or a retry, may answer. */
public class StoreUnavailableException extends RetryableException {
    private static final long serialVersionUID = 1L;

    /**
     * The error of an answer.
     *
     * @param code the API's error code
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public StoreUnavailableException(String code, String message, Integer status, Duration retryAfter) {
        super(code, message, status, retryAfter);
    }
}
