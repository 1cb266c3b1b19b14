package io.powertail.client;

/**
 * The latest progress line of a start-up (weight shards, CUDA graph capture).
 *
 * @param label what progresses
 * @param done steps done
 * @param total steps in all
 * @param line the line's index
 */
public record Progress(String label, long done, long total, long line) {}
