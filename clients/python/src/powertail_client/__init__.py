"""Python client for powertail: follow PowerJob job-instance logs, run jobs, and watch a
model server's start-up.

    from powertail_client import Client

    with Client("http://127.0.0.1:8080") as pt:
        run = pt.run_job("vllm-start", {"port": 8001})
        for line in pt.follow(run["instanceId"]):
            print(line)
"""

from ._client import CONNECT_BUDGET_S, CONNECT_TIMEOUT_S, MAX_WAIT_S, MIN_QUERY_CHARS, Client, TimeBound
from ._push import PushStats, Pusher
from ._sse import ServerSentEvent, SSEDecoder
from ._types import (
    Attempt,
    Failure,
    InstanceId,
    JobRef,
    JobStats,
    LineRef,
    LogPage,
    Progress,
    PushInfo,
    RunAnswer,
    RunSummary,
    RunsPage,
    SearchHit,
    SearchPage,
    StartupState,
)
from .errors import (
    ArchiveUnavailableError,
    AuthError,
    BadRequestError,
    ConflictError,
    InstanceConflictError,
    EpochMismatchError,
    ForbiddenError,
    HeadersTooLargeError,
    InstanceNotFoundError,
    InternalError,
    JobNotFoundError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PowertailConnectionError,
    PowertailError,
    RateLimitedError,
    RequestError,
    RetryableError,
    ServerError,
    UnauthorizedError,
    UpstreamBadAnswerError,
    UpstreamError,
    UpstreamTimeoutError,
    StoreUnavailableError,
    UpstreamUnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "CONNECT_BUDGET_S",
    "CONNECT_TIMEOUT_S",
    "MAX_WAIT_S",
    "MIN_QUERY_CHARS",
    "ArchiveUnavailableError",
    "JobStats",
    "PushInfo",
    "RunSummary",
    "RunsPage",
    "SearchHit",
    "SearchPage",
    "TimeBound",
    "Attempt",
    "AuthError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "InstanceConflictError",
    "EpochMismatchError",
    "Failure",
    "ForbiddenError",
    "HeadersTooLargeError",
    "InstanceId",
    "InstanceNotFoundError",
    "JobRef",
    "InternalError",
    "JobNotFoundError",
    "LineRef",
    "LogPage",
    "MethodNotAllowedError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PowertailConnectionError",
    "PowertailError",
    "PushStats",
    "Pusher",
    "Progress",
    "RateLimitedError",
    "RequestError",
    "RetryableError",
    "RunAnswer",
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "StartupState",
    "UnauthorizedError",
    "UpstreamBadAnswerError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "StoreUnavailableError",
    "UpstreamUnavailableError",
]
