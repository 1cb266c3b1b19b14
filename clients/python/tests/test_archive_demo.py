"""The archive's reads (issue 20) against a real `powertail demo`, which archives every run
it started into a SQLite file: search hits exact against a scan of the followed log, the
run's summary against its start-up state, the statistics of the runs of this test."""

from __future__ import annotations

import time
from typing import Callable, List, Optional, TypeVar

import pytest

from powertail_client import BadRequestError, Client, RunSummary

T = TypeVar("T")


def await_value(get: Callable[[], Optional[T]], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.1)


def run_of(client: Client, job: str, instance_id: str, since: int) -> Optional[RunSummary]:
    return next((r for r in client.iter_runs(job, since=since) if r["instanceId"] == instance_id), None)


def test_a_failed_run_is_searchable_listed_and_counted_exactly(client: Client) -> None:
    since = int(time.time() * 1000) - 1000
    run = client.run_job("vllm-oom")
    iid = run["instanceId"]
    lines = list(client.follow(iid, wait=5))
    state = client.wait_startup(iid, timeout=60)
    failure = state["failure"]
    assert failure is not None and failure["cause"] == "cuda_oom", state

    summary = await_value(lambda: run_of(client, "vllm-oom", iid, since), f"the run of {iid}")
    assert summary == {
        "instanceId": iid,
        "attempt": state["attempt"],
        "status": "FAILED",
        "startedAt": summary["startedAt"],
        "finishedAt": summary["finishedAt"],
        "phase": "failed",
        "readyAfterMs": None,
        "cause": "cuda_oom",
        "causeLine": failure["line"],
        "lines": len(lines),
    }
    assert summary["finishedAt"] is not None

    q = "out of MEMORY"
    expected = [k for k, line in enumerate(lines) if q.lower() in line.lower()]
    assert expected, "the demo's OOM log mentions it"
    hits = [
        h
        for h in client.search_all(q, job="vllm-oom", since=since, status="FAILED", cause="cuda_oom", limit=2)
        if h["instanceId"] == iid
    ]
    assert [h["line"] for h in hits] == expected
    for h in hits:
        assert h["text"] == lines[h["line"]]
        assert h["jobName"] == "vllm-oom"
        assert h["finishedAt"] == summary["finishedAt"]
        assert h["url"] == f"/?instanceId={iid}&line={h['line']}"
    page = client.search(q, job="vllm-oom", since=since, status="FAILED", cause="cuda_oom", limit=500)
    assert [h for h in page["hits"] if h["instanceId"] == iid] == hits
    assert client.search(q, job="vllm-oom", since=since, cause="port_in_use")["hits"] == []
    assert client.search(q, job="vllm-start", since=since)["hits"] == []

    stats = client.stats("vllm-oom", since=since)
    assert stats["runs"] == 1, stats
    assert stats["byOutcome"] == {"failed": 1}
    assert stats["byCause"] == {"cuda_oom": 1}
    assert stats["readyP50Ms"] is None


def test_a_ready_run_has_its_time_to_ready_and_bad_queries_are_typed(client: Client) -> None:
    since = int(time.time() * 1000) - 1000
    run = client.run_job("vllm-start")
    list(client.follow(run["instanceId"], wait=5))
    assert client.wait_startup(run["instanceId"], timeout=60)["phase"] == "ready"
    summary = await_value(lambda: run_of(client, "vllm-start", run["instanceId"], since), "the run")
    assert summary["phase"] == "ready" and summary["readyAfterMs"] is not None
    stats = client.stats("vllm-start", since=since)
    assert stats["byOutcome"] == {"ready": 1}
    assert stats["readyP50Ms"] == stats["readyP95Ms"] == summary["readyAfterMs"]
    with pytest.raises(BadRequestError):
        client.search("ab")
    with pytest.raises(BadRequestError):
        client.search("abc", status="NOT_A_STATUS")
    assert client.runs("no-such-job")["runs"] == []
