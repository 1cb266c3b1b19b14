package io.powertail.client;

/**
 * Why a start-up failed.
 *
 * @param cause e.g. {@code cuda_oom}, {@code port_in_use}, {@code unknown}
 * @param line the failure line's index, or null when there is none
 * @param text the failure line, or null
 */
public record Failure(String cause, Long line, String text) {}
