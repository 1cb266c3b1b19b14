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
    """A `GET /llm/logs` answer; `truncated` and `upstreamLost` only when they happen."""

    truncated: bool
    upstreamLost: bool


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
