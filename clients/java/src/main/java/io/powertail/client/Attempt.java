package io.powertail.client;

/**
 * One run of an instance (PowerJob retries an instance under the same id).
 *
 * @param attempt PowerJob's {@code runningTimes} of the run
 * @param fromLine the first line the run logged
 */
public record Attempt(int attempt, long fromLine) {}
