package io.powertail.client;

/**
 * How much of a log came from pushes (issue 19): the {@code push} field of a log answer,
 * present once anything was pushed for the instance.
 *
 * @param sources pushers seen (one per processor run)
 * @param lines lines served from pushes (the rest came from PowerJob's log)
 * @param lastAt the server's clock when the last batch arrived (epoch ms)
 */
public record PushInfo(long sources, long lines, long lastAt) {}
