package io.powertail.client;

/**
 * PowerJob's view of an instance ({@code GET /llm/instances/{id}}).
 *
 * @param instanceId the instance id
 * @param jobId its job id, or null
 * @param status the status name
 * @param result the processor's result or a system reason, or null
 * @param actualTriggerTime epoch milliseconds, or null
 * @param finishedTime epoch milliseconds, or null
 * @param taskTrackerAddress the worker that runs it, or null
 * @param runningTimes the run count, or null
 */
public record Instance(
        String instanceId,
        String jobId,
        String status,
        String result,
        Long actualTriggerTime,
        Long finishedTime,
        String taskTrackerAddress,
        Long runningTimes) {}
