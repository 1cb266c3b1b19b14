"""The shapes of powertail's answers (docs/API.md), as TypedDicts."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, TypedDict, Union

#: An instance id: a string of decimal digits (ids exceed 2**53) or an int.
InstanceId = Union[str, int]

#: A job to run: a name configured under `[jobs.<name>]`, or a PowerJob job id (an int
#: or a string of digits).
JobRef = Union[str, int]


class Attempt(TypedDict):
    attempt: int
    fromLine: int


class _LogPage(TypedDict):
    instanceId: str
    epoch: str
    fromLine: int
    nextLine: int
    lines: List[str]
    totalLines: int
    status: str
    complete: bool
    stale: bool
    attempt: int
    attempts: List[Attempt]


class LogPage(_LogPage, total=False):
    """A `GET /llm/logs` answer; `truncated` and `upstreamLost` only when they happen,
    `push` once anything was pushed for the instance (issue 19)."""

    truncated: bool
    upstreamLost: bool
    push: "PushInfo"


class RunAnswer(TypedDict):
    """A `POST /llm/jobs/{name}/run` answer."""

    jobId: str
    jobName: Optional[str]
    instanceId: str
    logsUrl: str
    startupUrl: str


class LineRef(TypedDict):
    line: Optional[int]
    text: Optional[str]


class _Failure(TypedDict):
    cause: str
    line: Optional[int]
    text: Optional[str]


class Failure(_Failure, total=False):
    """The start-up's failure. `final` is false while a more specific cause may still
    follow (the phase is then not yet `failed`); a server that does not send it means
    final (`failure.get("final", True)`)."""

    final: bool


class Progress(TypedDict):
    label: str
    done: int
    total: int
    line: int


class _StartupState(TypedDict):
    instanceId: str
    attempt: int
    phase: str
    ready: Optional[LineRef]
    failure: Optional[Failure]
    progress: Optional[Progress]
    events: List[Dict[str, Any]]
    complete: bool
    status: str
    stale: bool


class StartupState(_StartupState, total=False):
    """A `GET /llm/instances/{id}/startup` answer. `phase` is `starting`, `loading`,
    `ready`, `failed` or `exited`; `events` are `{"kind", "line", ...}`. `tracked` is
    false for a job without start-up rules (no model server: nothing to show); a server
    that does not send it means true (`state.get("tracked", True)`)."""

    tracked: bool


class PushInfo(TypedDict):
    """The `push` field of a log answer (issue 19), present once anything was pushed for
    the instance: pushers seen, lines served from pushes, and the server's clock (epoch
    ms) when the last batch arrived."""

    sources: int
    lines: int
    lastAt: int


class SearchHit(TypedDict):
    """One line found by `GET /llm/search` (issue 20). `url` opens the viewer at the line
    (relative to the server)."""

    instanceId: str
    attempt: int
    line: int
    text: str
    jobName: Optional[str]
    finishedAt: Optional[int]
    url: str


class SearchPage(TypedDict):
    """A `GET /llm/search` answer: hits newest run first; `nextCursor` is None after the
    last page."""

    hits: List[SearchHit]
    nextCursor: Optional[str]
    tookMs: int


class RunSummary(TypedDict):
    """One archived run of a job (`GET /llm/jobs/{name}/runs`)."""

    instanceId: str
    attempt: int
    status: str
    startedAt: Optional[int]
    finishedAt: Optional[int]
    phase: Optional[str]
    readyAfterMs: Optional[int]
    cause: Optional[str]
    causeLine: Optional[int]
    lines: int


class RunsPage(TypedDict):
    """A `GET /llm/jobs/{name}/runs` answer."""

    job: str
    runs: List[RunSummary]
    nextCursor: Optional[str]


class JobStats(TypedDict):
    """A `GET /llm/jobs/{name}/stats` answer: runs by start-up outcome and failure cause,
    and the p50/p95 time to ready (None when no run became ready)."""

    job: str
    since: Optional[int]
    runs: int
    byOutcome: Dict[str, int]
    byCause: Dict[str, int]
    readyP50Ms: Optional[int]
    readyP95Ms: Optional[int]
