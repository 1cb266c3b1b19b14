package io.powertail.client;

import java.util.List;

/**
 * A {@code GET /llm/logs} answer (docs/API.md "Reading logs").
 *
 * @param instanceId the instance id (a string of digits: ids exceed 2^53)
 * @param epoch the served sequence: send it back with the next {@code fromLine}
 * @param fromLine the first line of {@code lines}
 * @param nextLine {@code fromLine + lines.size()}: the next {@code fromLine}
 * @param lines exact upstream lines, without terminators
 * @param totalLines lines held now (may grow)
 * @param status PowerJob's status name ({@code RUNNING}, {@code SUCCEED}, ...)
 * @param complete no line can follow: stop following
 * @param stale PowerJob could not be read just now; this is the cache
 * @param attempt the {@code runningTimes} of the run followed
 * @param attempts every run seen with its first line
 * @param truncated the log reached the line cap and was cut there
 * @param upstreamLost PowerJob's own copy lost lines powertail still serves
 * @param push how many lines came from pushes, or null when nothing was pushed (issue 19)
 */
public record LogPage(
        String instanceId,
        String epoch,
        long fromLine,
        long nextLine,
        List<String> lines,
        long totalLines,
        String status,
        boolean complete,
        boolean stale,
        int attempt,
        List<Attempt> attempts,
        boolean truncated,
        boolean upstreamLost,
        PushInfo push) {}
