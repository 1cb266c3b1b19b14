"""The pusher: a launch script's lines to ``POST /llm/logs/{instanceId}/append``
(issue 19), in small batches from a background thread, as the Java ``PushLogger`` does.

    from powertail_client import Pusher

    with Pusher("http://127.0.0.1:8080", instance_id, token=token) as p:
        p.log("loading weights")          # printed (PowerJob's copy) and pushed
        p.log("CUDA out of memory", "ERROR")
    # the rest, then a batch with final: true
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Deque, Dict, List, Literal, Optional, Set, Union

import httpx

from ._client import _instance_id
from ._retry import backoff, retry_after
from ._types import InstanceId

#: A line's level, as PowerJob writes it.
Level = Literal["DEBUG", "INFO", "WARN", "ERROR"]
_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")

#: Environment variables read by :meth:`Pusher.from_env` (as the Java library's).
ENV_URL = "POWERTAIL_URL"
ENV_TOKEN = "POWERTAIL_TOKEN"
ENV_WORKER = "POWERTAIL_WORKER"

#: How long the sender waits for a first line before it looks at ``closing`` again.
_IDLE_POLL_S = 0.2

_LOG = logging.getLogger("powertail_client.push")

#: Pushers not closed yet: closed at interpreter exit (the rest and ``final: true``), so
#: that a script that forgets :meth:`Pusher.close` loses nothing.
_OPEN: Set["Pusher"] = set()


@atexit.register
def _close_open_pushers() -> None:
    for pusher in list(_OPEN):
        pusher.close()


@dataclass(frozen=True)
class PushStats:
    """What a :class:`Pusher` did with its lines so far. Every line logged is counted once
    as ``dropped`` or ``queued``; a queued line is later ``sent``, ``rejected``, or still
    ``pending``.

    * ``dropped``: not queued: the queue was full (powertail slow or down), the pusher was
      closed or disabled, or no URL was given. The echoed copy (PowerJob's) has them.
    * ``sent``: acknowledged by powertail (including batches it had seen already).
    * ``rejected``: given up: refused (a 4xx), not delivered within ``give_up_after``, or
      abandoned at close.
    * ``disabled``: pushing stopped for good (401, 403, 404, 405: no such endpoint, scope
      or instance).
    * ``duplicates``: batches powertail answered ``"duplicate": true``: a retry of a batch
      whose first answer was lost (nothing was appended twice); their lines count as
      ``sent``.
    """

    queued: int
    dropped: int
    sent: int
    rejected: int
    batches: int
    retries: int
    pending: int
    disabled: bool
    duplicates: int = 0


@dataclass(frozen=True)
class _Line:
    ts: int
    level: str
    text: str


def _is_duplicate(response: httpx.Response) -> bool:
    """Whether an acknowledgement says ``"duplicate": true`` (a batch seen before)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("duplicate") is True


def default_worker() -> str:
    """This host's address and PowerJob's worker port (27777): what PowerJob names the
    worker in its log lines."""
    try:
        host = socket.gethostbyname(socket.gethostname())
    except OSError:
        host = "127.0.0.1"
    return f"{host}:27777"


class Pusher:
    """Pushes lines to powertail's ``POST /llm/logs/{instanceId}/append`` (issue 19), so
    that a reader gets them within a second instead of after PowerJob's 5 s flush and
    10 s file cache. Same contract as the Java ``PushLogger``:

    * :meth:`log` writes the line to ``echo`` (default ``"stdout"``: ``sys.stdout`` as it
      is at each call, which the processor running the script copies to PowerJob's
      online log, the fallback; ``None``: push only) and
      puts it in a bounded queue (``queue_capacity``, 10 000); when the queue is full the
      push of the line is dropped and counted. It never blocks on the network and never
      raises for it.
    * One daemon thread sends a batch once ``batch_size`` (20) lines wait, or sooner once
      the oldest waited ``linger`` (0.1 s), one batch in flight; lines that queued up
      meanwhile catch up in batches of up to ``max_batch_size`` (200; a 413 halves the
      batch and that bound).
    * The body: ``source`` (``<worker>/<random hex>``, one per pusher), ``seq`` from 0,
      ``worker``, ``timestamp``, ``final``, ``lines`` [{``ts``, ``level``, ``text``}].
    * A failed try (no answer, 408, 425, 429, 5xx) is retried under the same ``seq``
      after 0.1 s doubling to ``max_backoff`` (5 s), or ``Retry-After``, for at most
      ``give_up_after`` (60 s); 401, 403, 404, 405 turn pushing off for the run; another
      4xx drops that batch.
    * :meth:`close` (or leaving the ``with`` block) sends the rest and a batch with
      ``final: true``, waiting at most ``close_timeout`` (3 s); a pusher not closed is
      closed at interpreter exit.

    ``url`` None only echoes (pushing is opt-in). ``token`` needs the ``logs:push``
    scope; it is sent as ``Authorization: Bearer`` and never logged.
    """

    def __init__(
        self,
        url: Optional[str],
        instance_id: InstanceId,
        *,
        token: Optional[str] = None,
        worker: Optional[str] = None,
        echo: Union[IO[str], None, Literal["stdout"]] = "stdout",
        batch_size: int = 20,
        max_batch_size: int = 200,
        linger: float = 0.1,
        queue_capacity: int = 10_000,
        request_timeout: float = 5.0,
        max_backoff: float = 5.0,
        give_up_after: float = 60.0,
        close_timeout: float = 3.0,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.instance_id = _instance_id(instance_id)
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL, not {url!r}")
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1..=1000")
        if not 1 <= max_batch_size <= 10_000:
            raise ValueError("max_batch_size must be 1..=10000")
        if queue_capacity < 1:
            raise ValueError("queue_capacity must be positive")
        if min(linger, give_up_after, close_timeout) < 0 or min(request_timeout, max_backoff) <= 0:
            raise ValueError("times must not be negative (request_timeout, max_backoff: positive)")
        self.worker = worker or default_worker()
        self.source = f"{self.worker}/{secrets.token_hex(8)}"
        self._echo = echo
        self._batch_size = batch_size
        self._max_batch = max(batch_size, max_batch_size)
        self._linger = linger
        self._capacity = queue_capacity
        self._request_timeout = request_timeout
        self._max_backoff = max_backoff
        self._give_up_after = give_up_after
        self._close_timeout = close_timeout
        self._endpoint = f"{url.rstrip('/')}/llm/logs/{self.instance_id}/append" if url else None
        # Guards the queue, the counters and the flags; never held during I/O.
        self._cond = threading.Condition()
        self._order = threading.Lock()
        self._queue: Deque[_Line] = collections.deque()
        self._queued = self._dropped = self._sent = self._rejected = self._batches = self._retries = 0
        self._duplicates = 0
        self._idle = self._lingering = self._closing = self._disabled = False
        self._abandon_at = float("inf")
        self._abandon = threading.Event()
        self._seq = 0
        self._sender: Optional[threading.Thread] = None
        self._http: Optional[httpx.Client] = None
        if self._endpoint is not None:
            headers = {"User-Agent": "powertail-client-python/0.1 push", "Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self._http = httpx.Client(
                headers=headers, timeout=httpx.Timeout(request_timeout, connect=2.0), transport=transport
            )
            self._sender = threading.Thread(target=self._run, name=f"powertail-push-{self.instance_id}", daemon=True)
            self._sender.start()
            _OPEN.add(self)

    @classmethod
    def from_env(cls, instance_id: InstanceId, **kwargs: Any) -> "Pusher":
        """A pusher with the URL, token and worker from ``POWERTAIL_URL``,
        ``POWERTAIL_TOKEN`` and ``POWERTAIL_WORKER``; without a URL it only echoes, and so
        it does, with a warning, for a URL that is not http(s): a setting must not fail the
        script."""
        url = (os.environ.get(ENV_URL) or "").strip() or None
        if url is not None and not url.startswith(("http://", "https://")):
            _LOG.warning("powertail push off: %s must be an http(s) URL", ENV_URL)
            url = None
        return cls(
            url,
            instance_id,
            token=os.environ.get(ENV_TOKEN) or None,
            worker=os.environ.get(ENV_WORKER) or None,
            **kwargs,
        )

    def __enter__(self) -> "Pusher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pushing(self) -> bool:
        """Whether lines are pushed (a URL was given)."""
        return self._endpoint is not None

    # --- the caller's side ---------------------------------------------------------

    def log(self, text: str, level: Level = "INFO") -> bool:
        """Echoes one line and queues its push; never blocks on the network. False when
        the push was dropped (queue full, closed, disabled, or no URL)."""
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {_LEVELS}, not {level!r}")
        text = str(text)
        # One lock for the two copies, so that lines logged at once from several threads
        # reach PowerJob and the push in the same order.
        with self._order:
            ts = int(time.time() * 1000)
            echo = sys.stdout if self._echo == "stdout" else self._echo
            if echo is not None:
                try:
                    echo.write(text + "\n")
                    echo.flush()
                except (OSError, ValueError):
                    pass  # a closed stdout must not fail the script
            return self._offer(_Line(ts, level, text))

    def debug(self, text: str) -> bool:
        return self.log(text, "DEBUG")

    def info(self, text: str) -> bool:
        return self.log(text, "INFO")

    def warn(self, text: str) -> bool:
        return self.log(text, "WARN")

    def error(self, text: str) -> bool:
        return self.log(text, "ERROR")

    def _offer(self, line: _Line) -> bool:
        with self._cond:
            if self._endpoint is None or self._closing or self._disabled or len(self._queue) >= self._capacity:
                self._dropped += 1
                return False
            self._queue.append(line)
            self._queued += 1
            if self._idle or (self._lingering and len(self._queue) >= self._batch_size):
                self._cond.notify()
            return True

    def stats(self) -> PushStats:
        with self._cond:
            q, s, r = self._queued, self._sent, self._rejected
            return PushStats(
                q,
                self._dropped,
                s,
                r,
                self._batches,
                self._retries,
                max(0, q - s - r),
                self._disabled or not self.pushing,
                self._duplicates,
            )

    def close(self) -> None:
        """Sends what is queued and a last batch with ``final: true`` (this source sends
        nothing more), waiting at most ``close_timeout``; past it the rest is abandoned
        (counted as rejected once the request in flight ends). Later lines are still
        echoed but not pushed. Idempotent; never raises."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._abandon_at = time.monotonic() + self._close_timeout
            self._cond.notify_all()
        _OPEN.discard(self)
        if self._sender is not None:
            self._sender.join(self._close_timeout)
            if self._sender.is_alive():
                self._abandon.set()

    # --- the sender thread ---------------------------------------------------------

    def _run(self) -> None:
        batch: List[_Line] = []
        final_sent = False
        try:
            while True:
                with self._cond:
                    if not self._queue:
                        if self._closing:
                            break
                        self._idle = True
                        self._cond.wait(_IDLE_POLL_S)
                        self._idle = False
                        if not self._queue:
                            continue
                    # The line's own time stamp starts its linger, bounded so that a wall
                    # clock set back cannot hold it longer.
                    first_ts = self._queue[0].ts / 1000.0
                    linger_left = max(0.0, min(self._linger, first_ts + self._linger - time.time()))
                    deadline = time.monotonic() + linger_left
                    self._lingering = True
                    while not self._closing and len(self._queue) < self._batch_size:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    self._lingering = False
                    # A batch goes out at batch_size lines; lines that queued up meanwhile
                    # (one batch is in flight at a time) catch up in batches of max_batch.
                    for _ in range(min(len(self._queue), self._max_batch)):
                        batch.append(self._queue.popleft())
                    last = self._closing and not self._queue
                self._deliver(batch, last)
                batch = []
                if last:
                    final_sent = True
                    break
            if not final_sent and not self._disabled and not self._abandon.is_set():
                self._deliver(batch, True)
        except Exception:  # noqa: BLE001 - the sender must never take the script down
            _LOG.exception("powertail push of instance %s stopped", self.instance_id)
        finally:
            with self._cond:
                # What close() abandoned: the batch in hand and what is still queued.
                self._rejected += len(batch) + len(self._queue)
                self._queue.clear()
            if self._http is not None:
                self._http.close()

    def _body(self, lines: List[_Line], last: bool) -> bytes:
        body: Dict[str, Any] = {
            "source": self.source,
            "seq": self._seq,
            "worker": self.worker,
            "timestamp": lines[0].ts if lines else int(time.time() * 1000),
            "final": last,
            "lines": [{"ts": line.ts, "level": line.level, "text": line.text} for line in lines],
        }
        # A lone surrogate (text decoded with errors="surrogateescape") becomes "?".
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")

    def _reject(self, lines: List[_Line]) -> None:
        with self._cond:
            self._rejected += len(lines)
        lines.clear()

    def _deliver(self, lines: List[_Line], last: bool) -> None:
        """Sends one batch until powertail acknowledges it (2xx), refuses it for good (a
        4xx but 408, 425, 429), or ``give_up_after`` passes. Nothing is sent once
        disabled."""
        assert self._http is not None and self._endpoint is not None
        payload = self._body(lines, last)
        started = time.monotonic()
        failures = 0
        while not self._disabled and not self._abandon.is_set():
            timeout = self._request_timeout
            if self._closing:
                timeout = max(0.05, min(timeout, self._abandon_at - time.monotonic()))
            wait_hint: Optional[float] = None
            duplicate = False
            try:
                response = self._http.post(self._endpoint, content=payload, timeout=timeout)
                status = response.status_code
                duplicate = response.is_success and _is_duplicate(response)
                wait_hint = retry_after(response)
                if not response.is_success and failures == 0:
                    _LOG.warning(
                        "powertail push of instance %s: HTTP %d %s", self.instance_id, status, response.text.strip()[:200]
                    )
            except httpx.HTTPError as exc:
                status = -1
                if failures == 0:
                    _LOG.warning("powertail push of instance %s: %s", self.instance_id, type(exc).__name__)
            if 200 <= status < 300:
                with self._cond:
                    self._sent += len(lines)
                    self._batches += 1
                    if duplicate:
                        self._duplicates += 1  # a retry of a batch that had arrived
                self._seq += 1
                lines.clear()
                return
            if status in (401, 403, 404, 405):
                # No endpoint (an older powertail), no scope, or an instance it does not
                # know: nothing later can succeed. PowerJob's log still has every line.
                with self._cond:
                    self._disabled = True
                _LOG.warning("powertail push of instance %s disabled after HTTP %d", self.instance_id, status)
                break
            if status == 413 and len(lines) > 1:
                # Too large for this powertail: nothing was applied. Send it in halves under
                # this seq and the next, and keep later batches at most that large.
                half = len(lines) // 2
                self._max_batch = max(1, min(self._max_batch, half))
                first, second = lines[:half], lines[half:]
                lines.clear()
                self._deliver(first, False)
                self._deliver(second, last)
                return
            transient = status < 0 or status in (408, 425, 429) or status >= 500
            if not transient:
                # Refused for good (400, 413, ...): nothing was applied, the seq is free again.
                self._reject(lines)
                return
            failures += 1
            now = time.monotonic()
            if now - started > self._give_up_after or (self._closing and now > self._abandon_at):
                # Maybe applied, maybe not: the next batch takes the next seq, and powertail
                # skips the gap after its wait; the polled log fills it in.
                _LOG.warning(
                    "powertail push of instance %s: batch %d given up after %d tries", self.instance_id, self._seq, failures
                )
                self._reject(lines)
                self._seq += 1
                return
            with self._cond:
                self._retries += 1
            pause = backoff(min(0.1, self._max_backoff), self._max_backoff, failures)
            if wait_hint is not None:
                pause = min(self._max_backoff, max(pause, wait_hint))
            if self._closing:
                pause = min(pause, max(0.001, self._abandon_at - time.monotonic()))
            self._abandon.wait(max(0.001, pause))
        self._reject(lines)
