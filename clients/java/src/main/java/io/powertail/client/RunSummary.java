package io.powertail.client;

/**
 * One archived run of a job ({@code GET /llm/jobs/{name}/runs}, issue 20).
 *
 * @param instanceId the instance id (a string of digits)
 * @param attempt the run of the instance ({@code runningTimes})
 * @param status the instance's final status
 * @param startedAt when it started (epoch ms), or null
 * @param finishedAt when it finished (epoch ms), or null
 * @param phase the start-up's last phase ({@code ready}, {@code failed}, {@code exited}, ...), or null
 *     for a job without start-up rules
 * @param readyAfterMs how long the model server took to become ready, or null
 * @param cause the start-up failure's cause ({@code cuda_oom}, ...), or null
 * @param causeLine the line of that cause, or null
 * @param lines the run's line count
 */
public record RunSummary(
        String instanceId,
        int attempt,
        String status,
        Long startedAt,
        Long finishedAt,
        String phase,
        Long readyAfterMs,
        String cause,
        Long causeLine,
        long lines) {}
