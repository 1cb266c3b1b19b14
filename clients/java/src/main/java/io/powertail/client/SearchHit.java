package io.powertail.client;

/**
 * One line found by {@code GET /llm/search} (issue 20).
 *
 * @param instanceId the instance id (a string of digits)
 * @param attempt the run of the instance the line belongs to ({@code runningTimes})
 * @param line the line's index in the served log (its {@code fromLine})
 * @param text the line, exactly as served
 * @param jobName the job's name, or null when unknown
 * @param finishedAt when the run finished (epoch ms), or null
 * @param url the viewer at that line ({@code /?instanceId=…&line=…}), relative to the server
 */
public record SearchHit(String instanceId, int attempt, long line, String text, String jobName, Long finishedAt, String url) {}
