package io.powertail.client;

import java.util.List;

/**
 * A {@code GET /llm/instances/{id}/startup} answer (docs/API.md "Start-up state").
 *
 * @param instanceId the instance id
 * @param attempt PowerJob's {@code runningTimes} of the current run
 * @param phase {@code starting}, {@code loading}, {@code ready}, {@code failed} or {@code exited}
 * @param ready the ready line once reached, else null
 * @param failure the most specific failure, else null
 * @param progress the latest progress, else null
 * @param events every change of the attempt, in order
 * @param complete nothing about this attempt can change any more
 * @param status PowerJob's status name
 * @param stale PowerJob could not be read just now
 */
public record StartupState(
        String instanceId,
        int attempt,
        String phase,
        LineRef ready,
        Failure failure,
        Progress progress,
        List<StartupEvent> events,
        boolean complete,
        String status,
        boolean stale) {}
