package io.powertail.client;

/**
 * A {@code POST /llm/jobs/{jobId}/run} answer.
 *
 * @param jobId the PowerJob job id run (digits)
 * @param jobName the configured job name, or null when run by a numeric id not configured
 * @param instanceId the new instance's id (digits)
 * @param logsUrl the path of its log ({@code /llm/logs?instanceId=...})
 * @param startupUrl the path of its start-up state
 */
public record RunAnswer(String jobId, String jobName, String instanceId, String logsUrl, String startupUrl) {}
