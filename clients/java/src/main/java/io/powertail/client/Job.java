package io.powertail.client;

/**
 * A configured job of {@code GET /llm/jobs}.
 *
 * @param name its name under {@code [jobs.<name>]}
 * @param jobId the PowerJob job id (digits)
 * @param description its description, or null
 */
public record Job(String name, String jobId, String description) {}
