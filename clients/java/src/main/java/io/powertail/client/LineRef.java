package io.powertail.client;

/**
 * A line of the served sequence: the ready line of a start-up.
 *
 * @param line its index, 0-based like {@code fromLine}
 * @param text its text
 */
public record LineRef(Long line, String text) {}
