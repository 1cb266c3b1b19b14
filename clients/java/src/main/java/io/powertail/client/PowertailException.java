package io.powertail.client;

import java.time.Duration;
import java.util.Optional;

/**
 * Base of every error this client throws for an error answer of powertail
 * ({@code {"error": {"code", "message"}}}, docs/API.md) or a failed connection.
 *
 * <p>{@link #code()} is the API's snake_case code, {@link #status()} the HTTP status
 * (empty when no answer came), {@link #retryAfter()} the {@code Retry-After} header.
 * Catch a family ({@link NotFoundException}, {@link AuthException}, {@link RetryableException},
 * {@link UpstreamException}, ...) or one code's class; a code this version does not know
 * is thrown as the family of its status, with {@link #code()} set. Unchecked, so that the
 * lazy streams of {@link PowertailClient} can throw it.
 */
public class PowertailException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final String apiMessage;
    private final Integer status;
    private final Duration retryAfter;

    /**
     * An error.
     *
     * @param code the API's error code, e.g. {@code instance_not_found}
     * @param message the API's message
     * @param status the HTTP status, or null when no answer came
     * @param retryAfter the {@code Retry-After} of the answer, or null
     */
    public PowertailException(String code, String message, Integer status, Duration retryAfter) {
        super(status == null ? code + ": " + message : status + " " + code + ": " + message);
        this.code = code;
        this.apiMessage = message;
        this.status = status;
        this.retryAfter = retryAfter;
    }

    /** The API's snake_case error code ({@code connection_error} when no answer came). */
    public String code() {
        return code;
    }

    /** The API's human message. */
    public String apiMessage() {
        return apiMessage;
    }

    /** The HTTP status; empty when no answer came. */
    public Optional<Integer> status() {
        return Optional.ofNullable(status);
    }

    /** The answer's {@code Retry-After}; empty when it had none. */
    public Optional<Duration> retryAfter() {
        return Optional.ofNullable(retryAfter);
    }

    /**
     * Whether the same request may succeed later unchanged (429, 503): the idempotent calls
     * retry these themselves.
     */
    public boolean isRetryable() {
        return false;
    }
}
