package io.powertail.client;

import java.util.List;

/**
 * A {@code GET /llm/jobs} answer.
 *
 * @param jobs the configured jobs
 * @param canRun whether this caller may run jobs
 */
public record JobList(List<Job> jobs, boolean canRun) {}
