package io.powertail.push;

/**
 * What a {@link PushLogger} did with its lines so far. Every line logged is counted once
 * as {@code dropped} or {@code queued}; a queued line is later {@code sent},
 * {@code rejected}, or still {@code pending}.
 *
 * @param queued lines taken into the queue
 * @param dropped lines not queued: the queue was full (powertail slow or down), the pusher
 *     was closed or disabled, the line was below {@code pushLevel}, or none was configured.
 *     PowerJob's {@code OmsLogger} got them all the same
 * @param sent lines powertail acknowledged (including batches it had already seen)
 * @param rejected queued lines given up: refused by powertail (a 4xx), or not delivered
 *     within the retry window, or abandoned at close
 * @param batches batches acknowledged
 * @param retries failed tries that were retried
 * @param pending lines queued and not yet sent, rejected or dropped
 * @param disabled pushing stopped for good (401, 403, 404, 405: no such endpoint, scope or
 *     instance)
 * @param duplicates batches powertail answered {@code "duplicate": true}: a retry of a batch
 *     whose first answer was lost (nothing appended twice); their lines count as sent
 */
public record PushStats(
        long queued, long dropped, long sent, long rejected, long batches, long retries, long pending, boolean disabled, long duplicates) {}
