package io.powertail.client;

import java.time.Duration;
import java.util.Map;

/** The typed exception of each API error code (docs/API.md). */
final class Errors {
    private Errors() {}

    @FunctionalInterface
    private interface Maker {
        PowertailException make(String code, String message, Integer status, Duration retryAfter);
    }

    private static final Map<String, Maker> BY_CODE = Map.ofEntries(
            Map.entry("bad_request", BadRequestException::new),
            Map.entry("method_not_allowed", MethodNotAllowedException::new),
            Map.entry("payload_too_large", PayloadTooLargeException::new),
            Map.entry("headers_too_large", HeadersTooLargeException::new),
            Map.entry("unauthorized", UnauthorizedException::new),
            Map.entry("forbidden", ForbiddenException::new),
            Map.entry("not_found", NotFoundException::new),
            Map.entry("instance_not_found", InstanceNotFoundException::new),
            Map.entry("job_not_found", JobNotFoundException::new),
            Map.entry("conflict", ConflictException::new),
            Map.entry("epoch_mismatch", (c, m, s, r) -> new EpochMismatchException(c, m, s, r, null)),
            Map.entry("rate_limited", RateLimitedException::new),
            Map.entry("overloaded", OverloadedException::new),
            Map.entry("upstream_error", UpstreamBadAnswerException::new),
            Map.entry("upstream_unavailable", UpstreamUnavailableException::new),
            Map.entry("upstream_timeout", UpstreamTimeoutException::new),
            Map.entry("store_unavailable", StoreUnavailableException::new),
            Map.entry("archive_unavailable", ArchiveUnavailableException::new),
            Map.entry("instance_conflict", InstanceConflictException::new),
            Map.entry("internal", InternalException::new));

    /** The family of a status, for a code this version does not know. */
    private static Maker familyOf(Integer status) {
        if (status == null) {
            return PowertailException::new;
        }
        int s = status;
        if (s == 401 || s == 403) {
            return AuthException::new;
        }
        if (s == 404) {
            return NotFoundException::new;
        }
        if (s == 409) {
            return ConflictException::new;
        }
        if (s == 429 || s == 503) {
            return RetryableException::new;
        }
        if (s >= 400 && s < 500) {
            return RequestException::new;
        }
        if (s == 502 || s == 504) {
            return UpstreamException::new;
        }
        if (s >= 500) {
            return ServerException::new;
        }
        return PowertailException::new;
    }

    /** The typed error for an API error code (the status's family for an unknown code). */
    static PowertailException of(String code, String message, Integer status, Duration retryAfter, String epoch) {
        if ("epoch_mismatch".equals(code)) {
            return new EpochMismatchException(code, message, status, retryAfter, epoch);
        }
        return BY_CODE.getOrDefault(code, familyOf(status)).make(code, message, status, retryAfter);
    }

    /** The codes this version knows, one exception class each. */
    static java.util.Set<String> knownCodes() {
        return BY_CODE.keySet();
    }
}
