"""Typed errors for powertail's JSON errors (`{"error": {"code", "message"}}`, docs/API.md).

Every error is a :class:`PowertailError` with ``.code`` (the API's snake_case code),
``.status`` (the HTTP status, ``None`` when no answer came), ``.message`` and
``.retry_after`` (seconds from the ``Retry-After`` header, or ``None``). Catch a family
(:class:`NotFoundError`, :class:`AuthError`, :class:`RetryableError`,
:class:`UpstreamError`, ...) or a single code's class. A code this version does not know
raises the family of its status (or :class:`PowertailError` itself), with ``.code`` set.
"""

from __future__ import annotations

from typing import Dict, Optional, Type


class PowertailError(Exception):
    """Base of every error this client raises for an answer or a failed connection."""

    def __init__(self, code: str, message: str, status: Optional[int] = None, retry_after: Optional[float] = None):
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


# Families.
class RequestError(PowertailError):
    """The request itself was refused (400, 405, 413, 431): fix the call, do not retry."""


class AuthError(PowertailError):
    """401 or 403."""


class NotFoundError(PowertailError):
    """404: no such route (``not_found``), instance or job."""


class ConflictError(PowertailError):
    """409 ``conflict``: stop/cancel/retry in a state PowerJob refuses."""


class InstanceConflictError(PowertailError):
    """409 ``instance_conflict`` (cluster mode): the shared store holds this instance id
    for another PowerJob (two PowerJob clusters share one Redis and ``key_prefix``);
    nothing of it is served. Not retryable: the configuration must change."""


class RetryableError(PowertailError):
    """Refused for now (429, 503): ``retry_after`` says when to try again.

    The idempotent calls (reads, long-polls, streams) sleep and retry these themselves,
    up to the client's ``max_retries`` in a row; ``run_job`` raises them.
    """


class ServerError(PowertailError):
    """A 5xx that is not PowerJob's fault (``internal``: a bug in powertail), or an answer
    that is not powertail's (a proxy's error page)."""


class UpstreamError(PowertailError):
    """PowerJob failed and powertail held nothing to answer instead (502, 503, 504)."""


class EpochMismatchError(PowertailError):
    """410 ``epoch_mismatch``: the log was rebuilt from scratch (powertail restarted, the
    log evicted) since the epoch sent; ``.epoch`` is the current one. The lines read so
    far belong to another sequence: start over from line 0 under ``.epoch``
    (``follow(..., restart=True)`` does that itself)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
        epoch: Optional[str] = None,
    ):
        super().__init__(code, message, status, retry_after)
        self.epoch = epoch


class PowertailConnectionError(PowertailError):
    """No answer: connecting or reading failed (code ``connection_error``, no status)."""


# One class a code.
class BadRequestError(RequestError):
    """400 ``bad_request``."""


class MethodNotAllowedError(RequestError):
    """405 ``method_not_allowed``."""


class PayloadTooLargeError(RequestError):
    """413 ``payload_too_large``."""


class HeadersTooLargeError(RequestError):
    """431 ``headers_too_large``."""


class UnauthorizedError(AuthError):
    """401 ``unauthorized``: tokens are configured and none or a wrong one was sent."""


class ForbiddenError(AuthError):
    """403 ``forbidden``: the token lacks the scope, or the job is not allowed."""


class InstanceNotFoundError(NotFoundError):
    """404 ``instance_not_found``: PowerJob does not know the instance."""


class JobNotFoundError(NotFoundError):
    """404 ``job_not_found``: no configured job of that name, or PowerJob has no such id."""


class RateLimitedError(RetryableError):
    """429 ``rate_limited``: too many job runs by this caller."""


class OverloadedError(RetryableError):
    """503 ``overloaded``: powertail sheds load."""


class UpstreamBadAnswerError(UpstreamError):
    """502 ``upstream_error``: PowerJob answered an error or something not its protocol."""


class UpstreamUnavailableError(UpstreamError, RetryableError):
    """503 ``upstream_unavailable``: PowerJob cannot be reached and nothing is cached."""


class StoreUnavailableError(RetryableError):
    """503 ``store_unavailable`` (cluster mode): the replica cannot reach its Redis and
    holds nothing of the instance; another replica, or a retry, may answer."""


class ArchiveUnavailableError(RetryableError):
    """503 ``archive_unavailable``: the archive's database cannot be reached just now
    (search, runs, stats); a retry later may answer."""


class UpstreamTimeoutError(UpstreamError):
    """504 ``upstream_timeout``: PowerJob did not answer in time and nothing is cached."""


class InternalError(ServerError):
    """500 ``internal``."""


_BY_CODE: Dict[str, Type[PowertailError]] = {
    "bad_request": BadRequestError,
    "method_not_allowed": MethodNotAllowedError,
    "payload_too_large": PayloadTooLargeError,
    "headers_too_large": HeadersTooLargeError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "instance_not_found": InstanceNotFoundError,
    "job_not_found": JobNotFoundError,
    "conflict": ConflictError,
    "instance_conflict": InstanceConflictError,
    "epoch_mismatch": EpochMismatchError,
    "rate_limited": RateLimitedError,
    "overloaded": OverloadedError,
    "upstream_error": UpstreamBadAnswerError,
    "upstream_unavailable": UpstreamUnavailableError,
    "upstream_timeout": UpstreamTimeoutError,
    "store_unavailable": StoreUnavailableError,
    "archive_unavailable": ArchiveUnavailableError,
    "internal": InternalError,
}


def _family_of_status(status: int) -> Type[PowertailError]:
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status in (429, 503):
        return RetryableError
    if 400 <= status < 500:
        return RequestError
    if status in (502, 504):
        return UpstreamError
    if status >= 500:
        return ServerError
    return PowertailError


def error_for(code: str, message: str, status: Optional[int], retry_after: Optional[float]) -> PowertailError:
    """The typed error for an API error code (the status's family for an unknown code)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = PowertailError if status is None else _family_of_status(status)
    return cls(code, message, status, retry_after)
