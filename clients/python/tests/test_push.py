"""The pusher (`Pusher`, issue 19 item 6) against an in-test HTTP server that records
every body it receives and answers as each test scripts it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from powertail_client import Pusher

INSTANCE = "677182124851200064"
PATH = f"/llm/logs/{INSTANCE}/append"

#: Decides the answer to the n-th request (from 0): a status, or None to hang.
Script = Callable[[int], Optional[int]]


class Recorder:
    """A loopback HTTP server recording the JSON bodies of its POSTs."""

    def __init__(self) -> None:
        self.bodies: List[Dict[str, Any]] = []
        self.paths: List[str] = []
        self.auth: List[Optional[str]] = []
        self.script: Script = lambda n: 200
        self.release = threading.Event()
        self.cond = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                with recorder.cond:
                    n = len(recorder.bodies)
                    recorder.bodies.append(json.loads(data))
                    recorder.paths.append(self.path)
                    recorder.auth.append(self.headers.get("Authorization"))
                    recorder.cond.notify_all()
                status = recorder.script(n)
                if status is None:  # hang until the test ends
                    recorder.release.wait(30)
                    return
                body = json.dumps({"accepted": 1} if status == 200 else {"error": {"code": "x", "message": "y"}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """The bodies once at least `count` arrived; fails after `timeout`."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.bodies) >= count, timeout), self.bodies
            return list(self.bodies)

    def wait_final(self, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """The bodies once one with `final: true` arrived."""
        with self.cond:
            assert self.cond.wait_for(lambda: any(b["final"] for b in self.bodies), timeout), self.bodies
            return list(self.bodies)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.stop()


def texts(bodies: List[Dict[str, Any]]) -> List[str]:
    return [line["text"] for b in bodies for line in b["lines"]]


def test_batches_at_twenty_lines_then_the_rest_and_final_on_close(server: Recorder) -> None:
    echo = io.StringIO()
    with Pusher(server.url, INSTANCE, token="s3cret", worker="10.0.0.5:27777", echo=echo, linger=30.0) as p:
        for i in range(20):
            p.log(f"line {i}", "WARN" if i == 3 else "INFO")
        # 20 lines fill a batch at once, although a line may linger 30 s.
        first = server.wait_for(1)[0]
        assert [line["text"] for line in first["lines"]] == [f"line {i}" for i in range(20)]
        for i in range(20, 25):
            p.log(f"line {i}")
    bodies = server.wait_final()
    assert echo.getvalue() == "".join(f"line {i}\n" for i in range(25))
    assert [b["seq"] for b in bodies] == list(range(len(bodies)))
    assert texts(bodies) == [f"line {i}" for i in range(25)]
    assert [b["final"] for b in bodies] == [False] * (len(bodies) - 1) + [True]
    assert set(server.paths) == {PATH}
    assert set(server.auth) == {"Bearer s3cret"}
    b = bodies[0]
    assert list(b) == ["source", "seq", "worker", "timestamp", "final", "lines"]
    assert b["worker"] == "10.0.0.5:27777" and b["source"].startswith("10.0.0.5:27777/")
    assert {x["source"] for x in bodies} == {b["source"]}
    assert b["timestamp"] == b["lines"][0]["ts"]
    assert b["lines"][3]["level"] == "WARN" and b["lines"][0]["level"] == "INFO"
    assert abs(b["lines"][0]["ts"] - time.time() * 1000) < 60_000
    assert p.stats().sent == 25 and p.stats().pending == 0 and p.stats().batches == len(bodies)


def test_a_lone_line_goes_out_after_the_linger(server: Recorder) -> None:
    with Pusher(server.url, INSTANCE, echo=None, linger=0.1) as p:
        started = time.monotonic()
        p.log("alone")
        bodies = server.wait_for(1)
        elapsed = time.monotonic() - started
        assert texts(bodies) == ["alone"] and bodies[0]["final"] is False
        assert 0.05 <= elapsed < 5.0
    last = server.wait_final()[1]
    assert (last["seq"], last["final"], last["lines"]) == (1, True, [])


def test_retried_under_the_same_seq_on_503(server: Recorder) -> None:
    server.script = lambda n: 503 if n in (0, 1) else 200
    with Pusher(server.url, INSTANCE, echo=None, linger=0.0) as p:
        p.log("a")
        server.wait_for(3)
        p.log("b")
        server.wait_for(4)
    bodies = server.wait_final()
    assert [b["seq"] for b in bodies] == [0, 0, 0, 1, 2]
    assert bodies[0] == bodies[1] == bodies[2]
    assert texts(bodies[2:]) == ["a", "b"]
    assert bodies[-1]["final"] is True
    s = p.stats()
    assert (s.sent, s.retries, s.rejected, s.dropped) == (2, 2, 0, 0)


def test_caught_up_lines_keep_their_order_and_seq(server: Recorder) -> None:
    gate = threading.Event()

    def slow_first(n: int) -> int:
        if n == 0:
            gate.wait(10)
        return 200

    server.script = slow_first
    with Pusher(server.url, INSTANCE, echo=None, linger=0.0, max_batch_size=50) as p:
        p.log("first")
        server.wait_for(1)  # in flight: the others queue up behind it
        for i in range(120):
            p.log(f"l{i}")
        gate.set()
    bodies = server.wait_final()
    assert texts(bodies) == ["first"] + [f"l{i}" for i in range(120)]
    assert [len(b["lines"]) for b in bodies[1:4]] == [50, 50, 20]  # the last one final
    assert [b["seq"] for b in bodies] == list(range(len(bodies)))


def test_413_halves_the_batch(server: Recorder) -> None:
    server.script = lambda n: 413 if n == 0 else 200
    with Pusher(server.url, INSTANCE, echo=None, linger=30.0, batch_size=8) as p:
        for i in range(8):
            p.log(f"l{i}")
        server.wait_for(3)
    bodies = server.wait_final()
    assert [len(b["lines"]) for b in bodies] == [8, 4, 4, 0]
    assert [b["seq"] for b in bodies] == [0, 0, 1, 2]
    assert texts(bodies[1:]) == [f"l{i}" for i in range(8)]


def test_a_hung_server_drops_and_counts_and_never_blocks_the_caller(server: Recorder) -> None:
    server.script = lambda n: None
    p = Pusher(server.url, INSTANCE, echo=None, linger=0.0, queue_capacity=100, close_timeout=0.5)
    p.log("stuck")
    server.wait_for(1)  # in flight, never answered
    started = time.monotonic()
    for i in range(5000):
        p.log(f"l{i}")
    spent = time.monotonic() - started
    s = p.stats()
    assert (s.queued, s.dropped) == (101, 4900)
    assert spent < 2.0, f"5000 log calls took {spent:.2f} s"
    started = time.monotonic()
    p.close()
    assert time.monotonic() - started < 2.0
    assert not p.log("after close")
    assert p.stats().dropped == 4901


def test_404_turns_pushing_off(server: Recorder) -> None:
    server.script = lambda n: 404
    with Pusher(server.url, INSTANCE, echo=None, linger=0.0) as p:
        p.log("a")
        server.wait_for(1)
        deadline = time.monotonic() + 10
        while not p.stats().disabled:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not p.log("b")
    s = p.stats()
    assert (s.disabled, s.rejected, s.dropped, s.sent) == (True, 1, 1, 0)
    assert len(server.bodies) == 1  # no final batch either


def test_nothing_listening_is_counted_not_raised() -> None:
    with Pusher("http://127.0.0.1:9", INSTANCE, echo=None, linger=0.0, give_up_after=0.3, close_timeout=1.0) as p:
        assert p.log("into the void")
    s = p.stats()
    assert s.sent == 0 and s.queued == 1 and s.retries >= 1


def test_without_a_url_it_only_echoes() -> None:
    echo = io.StringIO()
    with Pusher(None, 42, echo=echo) as p:
        assert not p.log("hello")
        assert not p.pushing
    assert echo.getvalue() == "hello\n"
    assert p.stats().dropped == 1


def test_a_bad_url_in_the_environment_only_echoes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTAIL_URL", "powertail:8080")
    echo = io.StringIO()
    with Pusher.from_env(42, echo=echo) as p:
        assert not p.pushing
        p.log("still printed")
    assert echo.getvalue() == "still printed\n"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Pusher("http://x", "12a")
    with pytest.raises(ValueError):
        Pusher("ftp://x", 1)
    with Pusher(None, 1, echo=None) as p, pytest.raises(ValueError):
        p.log("x", "LOUD")  # type: ignore[arg-type]


def test_a_pusher_never_closed_is_closed_at_exit(server: Recorder) -> None:
    script = (
        "from powertail_client import Pusher\n"
        f"p = Pusher({server.url!r}, {INSTANCE!r}, linger=30.0)\n"
        "for i in range(3):\n"
        "    p.log(f'line {i}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "line 0\nline 1\nline 2\n"  # the echo: PowerJob's copy
    bodies = server.wait_final()
    assert texts(bodies) == ["line 0", "line 1", "line 2"]
    assert [b["seq"] for b in bodies] == list(range(len(bodies)))
