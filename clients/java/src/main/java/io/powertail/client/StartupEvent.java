package io.powertail.client;

/**
 * One change of a start-up attempt; the fields a kind has not are null.
 *
 * @param kind {@code loading}, {@code progress}, {@code ready}, {@code failed} or {@code exited}
 * @param line the line's index (null for a verdict from the status alone)
 * @param label progress: what progresses
 * @param done progress: steps done
 * @param total progress: steps in all
 * @param cause failed: the cause
 * @param status exited: the final status
 */
public record StartupEvent(String kind, Long line, String label, Long done, Long total, String cause, String status) {}
