"""The synchronous client."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, TypeVar, Union, cast
from urllib.parse import quote

import httpx

from ._retry import backoff, retry_after
from ._sse import ServerSentEvent, SSEDecoder
from ._types import InstanceId, JobRef, JobStats, LogPage, RunAnswer, RunSummary, RunsPage, SearchHit, SearchPage, StartupState
from .errors import (
    EpochMismatchError,
    PowertailConnectionError,
    PowertailError,
    RetryableError,
    ServerError,
    error_for,
)

#: The longest long-poll the API accepts (`waitMs` 0..=30000).
MAX_WAIT_S = 30.0

#: How long failed connections are retried in a row by default (seconds): a stopped
#: server raises :class:`PowertailConnectionError` after about this long.
CONNECT_BUDGET_S = 2.0

#: How long one attempt to connect may take by default (seconds).
CONNECT_TIMEOUT_S = 2.0

#: The first pause after a failed connection (seconds); each further one doubles, up
#: to `CONNECT_BACKOFF_MAX_S`.
CONNECT_BACKOFF_S = 0.25
CONNECT_BACKOFF_MAX_S = 5.0


def _instance_id(value: InstanceId) -> str:
    """Instance ids exceed 2**53: the API carries them as strings of digits."""
    text = str(value)
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise ValueError(f"an instance id is a string of decimal digits, not {value!r}")
    return text


def _job_ref(value: JobRef) -> str:
    """A configured job name, or a PowerJob job id (an int, or a string of digits)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"a job is a configured name or a numeric job id, not {value!r}")
    return str(value)


class _ConnectBudget:
    """The retries of failed connections in a row (see :class:`Client`): the pause
    before the next try, or ``None`` once the budget is spent."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.since: Optional[float] = None
        self.failures = 0

    def reset(self) -> None:
        self.since, self.failures = None, 0

    def next_pause(self) -> Optional[float]:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        left = self.since + self.budget_s - now
        if left <= 0:
            return None
        self.failures += 1
        return min(backoff(CONNECT_BACKOFF_S, CONNECT_BACKOFF_MAX_S, self.failures), left)


#: A time bound of the archive's reads: epoch milliseconds, or an aware datetime.
TimeBound = Union[int, datetime, None]

#: The shortest search query the server accepts (docs/API.md, issue 20).
MIN_QUERY_CHARS = 3

_T = TypeVar("_T")


def _millis(value: TimeBound, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: a naive datetime is ambiguous; give it a tzinfo")
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is epoch milliseconds (int) or a datetime, not {value!r}")
    return value


def _limit(value: Optional[int]) -> Optional[int]:
    if value is not None and not 1 <= value <= 500:
        raise ValueError(f"limit must be 1..=500, not {value!r}")
    return value


def _wait_ms(seconds: float) -> int:
    return int(min(max(seconds, 0.0), MAX_WAIT_S) * 1000)


def _retry_after(response: httpx.Response) -> Optional[float]:
    """`Retry-After` in seconds: delta-seconds or an HTTP date."""
    return retry_after(response)


def _connection_failure(exc: Exception, connect: _ConnectBudget) -> str:
    """The message of a :class:`PowertailConnectionError`: the cause, and how long it
    was retried."""
    cause = str(exc) or type(exc).__name__
    if connect.failures:
        return f"{cause} (retried {connect.failures} times for {connect.budget_s:g} s)"
    return cause


def _error_of(response: httpx.Response) -> PowertailError:
    """The typed error of a non-2xx answer (`{"error": {"code", "message"}}`)."""
    retry_after = _retry_after(response)
    try:
        body = response.json()
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
        epoch = body.get("epoch")
    except (ValueError, KeyError, TypeError, AttributeError):
        # Not powertail's shape: a proxy's page, say.
        text = response.text.strip()[:200] or response.reason_phrase
        err = error_for("http_error", text, response.status_code, retry_after)
        if response.status_code >= 500 and not isinstance(err, RetryableError):
            return ServerError("http_error", text, response.status_code, retry_after)
        return err
    err = error_for(code, message, response.status_code, retry_after)
    if isinstance(err, EpochMismatchError) and isinstance(epoch, str):
        err.epoch = epoch
    return err


class _Cursor:
    """Where a follower stands in one instance's log: the line and the epoch (the served
    sequence) it belongs to. The one place its state changes (`advance`), so that a
    follower starts over from a fresh cursor when the server says its cursor no longer
    holds (410 `epoch_mismatch`)."""

    def __init__(self, instance_id: str, next_line: int, epoch: Optional[str] = None) -> None:
        self.instance_id = instance_id
        self.next_line = next_line
        self.epoch = epoch
        self.attempt: Optional[int] = None

    def params(self, wait_ms: int, limit: Optional[int]) -> Dict[str, Union[str, int]]:
        params: Dict[str, Union[str, int]] = {"instanceId": self.instance_id, "fromLine": self.next_line}
        if wait_ms:
            params["waitMs"] = wait_ms
        if limit is not None:
            params["limit"] = limit
        if self.epoch is not None:
            params["epoch"] = self.epoch
        return params

    def advance(self, page: LogPage) -> None:
        self.next_line = page["nextLine"]
        self.epoch = page.get("epoch", self.epoch)
        self.attempt = page.get("attempt")


class Client:
    """A client of one powertail server.

    ``base_url`` is the server's root (``http://127.0.0.1:8080``); ``token`` an API
    token, sent as ``Authorization: Bearer``. The idempotent calls (reads, long-polls,
    the event stream) retry 429 and 503 answers after their ``Retry-After`` (or a short
    back-off without one), up to ``max_retries`` times in a row, then raise the error.

    Failed connections (no answer: refused, no route, a connect slower than
    ``connect_timeout`` seconds, the connection lost before the answer) are retried by
    the same calls after 0.25 s, 0.5 s, 1 s, ... (doubling, at most 5 s) only while
    less than ``connect_budget`` seconds (default 2) have passed since the first failure
    of the row (and at most ``max_retries`` times); the last try is at the budget's end,
    then :class:`PowertailConnectionError` is raised. So a stopped server raises after
    about ``connect_budget`` seconds; ``connect_budget=0`` raises at the first failure,
    a larger one rides out a restart. Any answer ends the row (docs/API.md, "Client
    retry policy"). ``run_job`` and the instance controls never retry: their error says
    when to.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 10,
        min_poll_interval: float = 1.0,
        connect_budget: float = CONNECT_BUDGET_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        headers = {"User-Agent": "powertail-client-python/0.1", "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.max_retries = max_retries
        self.min_poll_interval = min_poll_interval
        self.connect_budget = connect_budget
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        return backoff(0.5, 5.0, failures)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Union[str, int]]] = None,
        body: Any = None,
        wait_s: float = 0.0,
        retry: bool = True,
    ) -> httpx.Response:
        """One call, retried (when `retry`) on 429/503 and failed connections."""
        timeout = httpx.Timeout(self._timeout, connect=self._connect_timeout, read=self._timeout + wait_s + 30.0)
        failures = 0
        connect = _ConnectBudget(self.connect_budget)
        while True:
            try:
                response = self._http.request(
                    method, path, params=params, json=body, timeout=timeout
                )
            except httpx.TransportError as exc:
                pause = connect.next_pause() if retry and failures < self.max_retries else None
                if pause is not None:
                    failures += 1
                    self._sleep(pause)
                    continue
                raise PowertailConnectionError("connection_error", _connection_failure(exc, connect)) from exc
            connect.reset()
            if response.is_success:
                return response
            error = _error_of(response)
            if retry and isinstance(error, RetryableError) and failures < self.max_retries:
                failures += 1
                self._sleep(error.retry_after if error.retry_after is not None else self._backoff(failures))
                continue
            raise error

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError("http_error", "the answer is not JSON", response.status_code) from exc

    # --- logs -----------------------------------------------------------------------

    def read(
        self,
        instance_id: InstanceId,
        from_line: int = 0,
        *,
        limit: Optional[int] = None,
        wait: float = 0.0,
        epoch: Optional[str] = None,
    ) -> LogPage:
        """One `GET /llm/logs` answer; `wait` (seconds, at most 30) long-polls. With
        `epoch` (that of an earlier answer) a log rebuilt since raises
        :class:`EpochMismatchError`."""
        cursor = _Cursor(_instance_id(instance_id), from_line, epoch)
        return self._read_page(cursor, wait, limit)

    def _read_page(self, cursor: _Cursor, wait: float, limit: Optional[int]) -> LogPage:
        wait_ms = _wait_ms(wait)
        page = self._json("GET", "/llm/logs", params=cursor.params(wait_ms, limit), wait_s=wait_ms / 1000)
        return cast(LogPage, page)

    def follow_pages(
        self,
        instance_id: InstanceId,
        from_line: int = 0,
        *,
        wait: float = 20.0,
        limit: Optional[int] = None,
        epoch: Optional[str] = None,
        restart: bool = False,
    ) -> Iterator[LogPage]:
        """Every `GET /llm/logs` answer of a follower, from `from_line` until the one that
        says `complete`: long-polls of `wait` seconds, each from the previous
        `nextLine` and with the `epoch` learnt from the first answer (or given). A
        `stale` answer (PowerJob slow or unreachable, the cache served) just leads to the
        next poll; answers without lines come at most every `min_poll_interval` seconds.

        When the log was rebuilt from scratch (powertail restarted, the log evicted: 410
        `epoch_mismatch`), raises :class:`EpochMismatchError` (its ``.epoch`` is the new
        one), so that lines of another sequence are never mixed with those read. With
        ``restart=True`` it starts over instead: the next page is line 0 of the new
        sequence (``fromLine == 0``, a new ``epoch``), and the caller drops what it had."""
        cursor = _Cursor(_instance_id(instance_id), from_line, epoch)
        while True:
            started = time.monotonic()
            try:
                page = self._read_page(cursor, wait, limit)
            except EpochMismatchError as err:
                if not restart or err.epoch is None:
                    raise
                cursor = _Cursor(cursor.instance_id, 0, err.epoch)
                continue
            cursor.advance(page)
            yield page
            if page["complete"]:
                return
            if not page["lines"]:
                pause = self.min_poll_interval - (time.monotonic() - started)
                if pause > 0:
                    self._sleep(pause)

    def follow(
        self,
        instance_id: InstanceId,
        from_line: int = 0,
        *,
        wait: float = 20.0,
        limit: Optional[int] = None,
        epoch: Optional[str] = None,
        restart: bool = False,
    ) -> Iterator[str]:
        """The log's lines from `from_line` on, as they come, ending when the log is
        `complete` (no line can follow). Raises a :class:`PowertailError` subclass for
        an error answer (after the retries of 429/503, see :class:`Client`).

        The epoch of the first answer is sent with every later read: a log rebuilt from
        scratch meanwhile raises :class:`EpochMismatchError` (the default: what was
        yielded cannot be continued). With ``restart=True`` the lines of the new
        sequence are yielded from its line 0 instead, so lines already yielded come
        again (in the new order): use it where the consumer can start over, e.g. a
        search for a line, not an append-only copy."""
        pages = self.follow_pages(instance_id, from_line, wait=wait, limit=limit, epoch=epoch, restart=restart)
        for page in pages:
            yield from page["lines"]

    def raw(self, instance_id: InstanceId) -> str:
        """`GET /llm/logs/{id}/raw`: the whole log held now, one line per `\\n`."""
        return self._request("GET", f"/llm/logs/{_instance_id(instance_id)}/raw").text

    # --- event stream ---------------------------------------------------------------

    def stream_events(
        self, instance_id: InstanceId, from_line: int = 0, *, epoch: Optional[str] = None, restart: bool = False
    ) -> Iterator[ServerSentEvent]:
        """The Server-Sent Events of `GET /llm/logs/{id}/stream` (`lines`, `startup`,
        `error`, `shutdown`, `end`), ending after `end`. A dropped connection or a
        `shutdown` event reconnects with `Last-Event-ID` (the `nextLine` of the last
        `lines` event) and the `epoch` of the events, so no line is lost or repeated;
        429/503 before the stream starts are retried like the other reads. A log rebuilt
        from scratch (410 `epoch_mismatch` before the stream starts, or an `error` event
        `epoch_mismatch`) raises :class:`EpochMismatchError`, or with ``restart=True``
        starts over from line 0 of the new sequence (the `epoch_mismatch` event is
        yielded first, then the new sequence's events)."""
        path = f"/llm/logs/{_instance_id(instance_id)}/stream"
        # A heartbeat comes every 15 s.
        timeout = httpx.Timeout(self._timeout, connect=self._connect_timeout, read=45.0)
        last_id: Optional[str] = None
        reconnect_ms: Optional[int] = None
        failures = 0
        connect = _ConnectBudget(self.connect_budget)
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            params: Dict[str, Union[str, int]] = {}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            elif from_line:
                params["fromLine"] = from_line
            if epoch is not None:
                params["epoch"] = epoch
            error: PowertailError
            try:
                with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as response:
                    connect.reset()
                    if not response.is_success:
                        response.read()
                        error = _error_of(response)
                        if isinstance(error, EpochMismatchError) and restart and error.epoch is not None:
                            epoch, last_id, from_line = error.epoch, None, 0
                            continue
                        if not isinstance(error, RetryableError) or failures >= self.max_retries:
                            raise error
                        failures += 1
                        self._sleep(error.retry_after if error.retry_after is not None else self._backoff(failures))
                        continue
                    decoder = SSEDecoder(last_id)
                    rebuilt: Optional[EpochMismatchError] = None
                    for event in decoder.iter_events(response.iter_lines()):
                        last_id = decoder.last_event_id
                        if decoder.retry is not None:
                            reconnect_ms = decoder.retry
                        failures = 0
                        if event.event in ("lines", "end", "error"):
                            data = json.loads(event.data)
                            if event.event != "error":
                                epoch = data.get("epoch", epoch)
                            elif data.get("code") == "epoch_mismatch" and isinstance(data.get("epoch"), str):
                                rebuilt = EpochMismatchError(
                                    "epoch_mismatch", str(data.get("message", "")), 410, None, data["epoch"]
                                )
                        if rebuilt is not None and not restart:
                            raise rebuilt
                        yield event
                        if event.event == "end":
                            return
                        if event.event == "shutdown" or rebuilt is not None:
                            break
                    if rebuilt is not None:
                        epoch, last_id, from_line = rebuilt.epoch, None, 0
                        continue
                    last_id = decoder.last_event_id
                cause: Exception = ConnectionError("the event stream ended before its `end` event")
            except httpx.TransportError as exc:
                cause = exc
            # A dropped stream reconnects after the back-off (at least its `retry:`);
            # reconnections that fail are retried within the connect budget.
            pause = connect.next_pause()
            if pause is None or failures >= self.max_retries:
                raise PowertailConnectionError("connection_error", _connection_failure(cause, connect)) from cause
            failures += 1
            if reconnect_ms is not None:
                pause = max(pause, reconnect_ms / 1000)
            self._sleep(pause)

    def stream(
        self, instance_id: InstanceId, from_line: int = 0, *, epoch: Optional[str] = None, restart: bool = False
    ) -> Iterator[str]:
        """The log's lines over Server-Sent Events, ending on the `end` event: the same
        lines :meth:`follow` yields, pushed instead of polled (`epoch` and `restart` as
        for :meth:`follow`)."""
        for event in self.stream_events(instance_id, from_line, epoch=epoch, restart=restart):
            if event.event == "lines":
                lines: List[str] = json.loads(event.data)["lines"]
                yield from lines

    # --- jobs and instances ---------------------------------------------------------

    def run_job(
        self, name: JobRef, params: Union[Mapping[str, Any], str, None] = None, *, delay_ms: Optional[int] = None
    ) -> RunAnswer:
        """`POST /llm/jobs/{name}/run`: run a configured job (or a PowerJob job id, an
        int or a string of digits). A mapping in `params` is merged over the job's
        default params; a string is sent as is. Never retried (a retry could run the job
        twice)."""
        body: Dict[str, Any] = {}
        if params is not None:
            body["instanceParams"] = params if isinstance(params, str) else dict(params)
        if delay_ms is not None:
            body["delayMs"] = delay_ms
        return cast(RunAnswer, self._json("POST", f"/llm/jobs/{quote(_job_ref(name), safe='')}/run", body=body, retry=False))

    def jobs(self) -> Dict[str, Any]:
        """`GET /llm/jobs`: `{"jobs": [{"name", "jobId", "description"}], "canRun"}`."""
        return cast(Dict[str, Any], self._json("GET", "/llm/jobs"))

    def instance(self, instance_id: InstanceId) -> Dict[str, Any]:
        """`GET /llm/instances/{id}`: PowerJob's view of the instance."""
        return cast(Dict[str, Any], self._json("GET", f"/llm/instances/{_instance_id(instance_id)}"))

    def stop(self, instance_id: InstanceId) -> Dict[str, Any]:
        """`POST /llm/instances/{id}/stop` (409 :class:`ConflictError` when finished)."""
        return cast(
            Dict[str, Any], self._json("POST", f"/llm/instances/{_instance_id(instance_id)}/stop", retry=False)
        )

    def startup(
        self,
        instance_id: InstanceId,
        wait: float = 0.0,
        *,
        attempt: Optional[int] = None,
        from_event: Optional[int] = None,
    ) -> StartupState:
        """`GET /llm/instances/{id}/startup`: the model server's start-up state. With
        `wait` (seconds, at most 30) it long-polls until the state changes from
        (`attempt`, `from_event`), by default the state when the request arrives, or is
        `complete`."""
        params: Dict[str, Union[str, int]] = {}
        wait_ms = _wait_ms(wait)
        if wait_ms:
            params["waitMs"] = wait_ms
        if attempt is not None:
            params["attempt"] = attempt
        if from_event is not None:
            params["fromEvent"] = from_event
        path = f"/llm/instances/{_instance_id(instance_id)}/startup"
        return cast(StartupState, self._json("GET", path, params=params, wait_s=wait_ms / 1000))

    def wait_startup(self, instance_id: InstanceId, timeout: Optional[float] = None) -> StartupState:
        """Long-polls the start-up state until it is `complete` (`ready`, or the job
        ended and its log is complete: `failed` with its final cause, or `exited`) and
        returns it; after `timeout` seconds returns the state as it is (check
        `complete`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state: Optional[StartupState] = None
        while True:
            wait = 20.0 if deadline is None else min(20.0, max(0.0, deadline - time.monotonic()))
            started = time.monotonic()
            if state is None:
                state = self.startup(instance_id, wait)
            else:
                state = self.startup(instance_id, wait, attempt=state["attempt"], from_event=len(state["events"]))
            if state["complete"] or (deadline is not None and time.monotonic() >= deadline):
                return state
            pause = self.min_poll_interval - (time.monotonic() - started)
            if pause > 0:
                self._sleep(pause)

    # --- the archive (issue 20) -----------------------------------------------------

    def search(
        self,
        q: str,
        *,
        job: Optional[str] = None,
        status: Optional[str] = None,
        cause: Optional[str] = None,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> SearchPage:
        """`GET /llm/search`: one page of archived lines containing `q` (a
        case-insensitive substring of at least 3 characters, else
        :class:`BadRequestError`), newest run first. Filters: the job's name, the final
        `status`, the start-up failure's `cause`, and the run's finish time (`since`,
        `until`: epoch ms or an aware datetime). Pass `nextCursor` back as `cursor` for
        the next page, or use :meth:`search_all`. No archive configured:
        :class:`NotFoundError`; an archive that is down is retried, then raised as
        :class:`ArchiveUnavailableError`."""
        params: Dict[str, Union[str, int]] = {"q": q}
        for key, value in (
            ("job", job),
            ("status", status),
            ("cause", cause),
            ("since", _millis(since, "since")),
            ("until", _millis(until, "until")),
            ("limit", _limit(limit)),
            ("cursor", cursor),
        ):
            if value is not None:
                params[key] = value
        return cast(SearchPage, self._json("GET", "/llm/search", params=params))

    def search_all(
        self,
        q: str,
        *,
        job: Optional[str] = None,
        status: Optional[str] = None,
        cause: Optional[str] = None,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Iterator[SearchHit]:
        """Every hit of :meth:`search`, page after page; a page is fetched only when the
        previous one is used up."""

        def page(c: Optional[str]) -> SearchPage:
            return self.search(q, job=job, status=status, cause=cause, since=since, until=until, limit=limit, cursor=c)

        return _pages(cursor, page, lambda p: p["hits"])

    def runs(
        self,
        job: str,
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> RunsPage:
        """`GET /llm/jobs/{name}/runs`: one page of the job's archived runs, newest first:
        status, times, start-up phase, time to ready, failure cause and line, line
        count."""
        params: Dict[str, Union[str, int]] = {}
        for key, value in (
            ("since", _millis(since, "since")),
            ("until", _millis(until, "until")),
            ("limit", _limit(limit)),
            ("cursor", cursor),
        ):
            if value is not None:
                params[key] = value
        return cast(RunsPage, self._json("GET", f"{_job_path(job)}/runs", params=params))

    def iter_runs(
        self,
        job: str,
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Iterator[RunSummary]:
        """Every archived run of the job, page after page (lazily)."""

        def page(c: Optional[str]) -> RunsPage:
            return self.runs(job, since=since, until=until, limit=limit, cursor=c)

        return _pages(cursor, page, lambda p: p["runs"])

    def stats(self, job: str, since: TimeBound = None) -> JobStats:
        """`GET /llm/jobs/{name}/stats`: the job's archived runs by start-up outcome and by
        failure cause, and the p50/p95 time to ready."""
        params: Dict[str, Union[str, int]] = {}
        since_ms = _millis(since, "since")
        if since_ms is not None:
            params["since"] = since_ms
        return cast(JobStats, self._json("GET", f"{_job_path(job)}/stats", params=params))


def _job_path(job: str) -> str:
    if not isinstance(job, str) or not job:
        raise ValueError(f"a job is a non-empty name, not {job!r}")
    return f"/llm/jobs/{quote(job, safe='')}"


def _pages(
    cursor: Optional[str], fetch: Callable[[Optional[str]], Any], items: Callable[[Any], List[_T]]
) -> Iterator[_T]:
    """The items of every page from `cursor` on, fetched lazily, until a page without a
    `nextCursor` (or one that does not advance)."""
    while True:
        page = fetch(cursor)
        yield from items(page)
        following = page.get("nextCursor")
        if not following or following == cursor:
            return
        cursor = following
