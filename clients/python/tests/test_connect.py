"""Failing fast when the server is down (issue 21, item 4): a refused connection raises
:class:`PowertailConnectionError` after the connect budget (default 2 s), not after ten
back-offs; and `run_job` takes a numeric job id as an int."""

from __future__ import annotations

import socket
import time
from typing import Callable, List

import pytest

from powertail_client import CONNECT_BUDGET_S, Client, PowertailConnectionError

from test_fake_server import FakeServer, Reply, json_reply, page, serve  # noqa: F401 (the fixture)


def dead_url() -> str:
    """The URL of a loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def raised_after(call: Callable[[], object]) -> float:
    """Seconds until `call` raised PowertailConnectionError."""
    started = time.monotonic()
    with pytest.raises(PowertailConnectionError) as caught:
        call()
    elapsed = time.monotonic() - started
    err = caught.value
    assert (err.code, err.status) == ("connection_error", None)
    return elapsed


def test_a_refused_connection_raises_after_the_default_budget_of_2_s() -> None:
    assert CONNECT_BUDGET_S == 2.0
    with Client(dead_url()) as pt:
        elapsed = raised_after(pt.jobs)
    # Retried for the whole budget (0.25 + 0.5 + 1 + 0.25 s of pauses), then raised.
    assert 1.9 <= elapsed < 3.5, elapsed


def test_the_budget_is_the_callers_and_zero_fails_at_once() -> None:
    url = dead_url()
    with Client(url, connect_budget=0) as pt:
        assert raised_after(lambda: pt.read("5")) < 0.5
    with Client(url, connect_budget=0.6) as pt:
        elapsed = raised_after(lambda: pt.startup("5"))
        assert 0.55 <= elapsed < 1.6, elapsed
    # The pauses: doubling from 0.25 s, the last cut to end at the budget.
    slept: List[float] = []
    with Client(url, connect_budget=0.6) as pt:
        pt._sleep = slept.append  # no real pause: the retries end at `max_retries`
        with pytest.raises(PowertailConnectionError) as caught:
            pt.instance("5")
    assert slept[:3] == [0.25, 0.5, pytest.approx(0.6, abs=0.05)], slept
    assert len(slept) == 10
    assert "retried" in caught.value.message and "0.6 s" in caught.value.message


def test_the_event_stream_of_a_stopped_server_raises_within_the_budget() -> None:
    with Client(dead_url(), connect_budget=0.5) as pt:
        elapsed = raised_after(lambda: list(pt.stream("5")))
    assert elapsed < 1.5, elapsed


def test_follow_raises_soon_after_its_server_died(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([page(0, ["a", "b"], False)])
    got: List[str] = []
    with Client(fake.url, min_poll_interval=0) as pt:
        lines = pt.follow("677182124851200064")
        got.append(next(lines))
        got.append(next(lines))
        fake.close()  # the server is gone: the next long-poll is refused
        elapsed = raised_after(lambda: next(lines))
    assert got == ["a", "b"]
    assert elapsed < 3.5, elapsed


def test_any_answer_ends_a_row_of_failed_connections(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([page(0, ["a"], False), page(1, ["b"], True)])
    with Client(fake.url, connect_budget=0) as pt:
        # A live server is never a connection failure, whatever the budget.
        assert list(pt.follow("5")) == ["a", "b"]


def test_run_job_accepts_a_numeric_job_id_as_an_int(serve: Callable[[List[Reply]], FakeServer]) -> None:
    answer = {
        "jobId": "12",
        "jobName": "vllm-start",
        "instanceId": "677182124851200064",
        "logsUrl": "/llm/logs?instanceId=677182124851200064",
        "startupUrl": "/llm/instances/677182124851200064/startup",
    }
    fake = serve([json_reply(201, answer), json_reply(201, answer)])
    with Client(fake.url) as pt:
        assert pt.run_job(12)["instanceId"] == "677182124851200064"
        assert pt.run_job("12", {"port": 8001})["jobId"] == "12"
        with pytest.raises(TypeError):
            pt.run_job(True)
        with pytest.raises(TypeError):
            pt.run_job(12.5)  # type: ignore[arg-type]
    assert [p for p, _ in fake.requests] == ["/llm/jobs/12/run", "/llm/jobs/12/run"]
