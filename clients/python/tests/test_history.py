"""The archive's reads (issue 20) against a scripted transport: the exact requests, the
typed answers, paging and errors. The same calls against the real binary are in
test_archive_demo.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List

import httpx
import pytest

from powertail_client import ArchiveUnavailableError, BadRequestError, Client, NotFoundError


def scripted(answers: List[httpx.Response], seen: List[str]) -> Client:
    script = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return script.pop(0) if len(script) > 1 else script[0]

    client = Client("http://powertail.test", transport=httpx.MockTransport(handle))
    client._sleep = lambda s: None
    return client


def hit(instance: str, line: int, text: str) -> Dict[str, Any]:
    return {
        "instanceId": instance,
        "attempt": 1,
        "line": line,
        "text": text,
        "jobName": "vllm-start",
        "finishedAt": 1764900001120,
        "url": f"/?instanceId={instance}&line={line}",
    }


def test_search_sends_every_filter_and_returns_the_page() -> None:
    seen: List[str] = []
    answer = {"hits": [hit("1234567890123456789", 12, "CUDA out of memory")], "nextCursor": "c2", "tookMs": 3}
    with scripted([httpx.Response(200, json=answer)], seen) as pt:
        page = pt.search(
            "out of memory",
            job="vllm start/2",
            status="FAILED",
            cause="cuda_oom",
            since=1000,
            until=datetime.fromtimestamp(2, tz=timezone.utc),
            limit=10,
            cursor="c1",
        )
    assert page == answer
    assert seen == [
        "/llm/search?q=out+of+memory&job=vllm+start%2F2&status=FAILED&cause=cuda_oom&since=1000&until=2000&limit=10&cursor=c1"
    ]


def test_search_all_follows_the_cursor_lazily() -> None:
    seen: List[str] = []
    pages = [
        httpx.Response(200, json={"hits": [hit("3", 1, "a"), hit("3", 2, "b")], "nextCursor": "p2", "tookMs": 1}),
        httpx.Response(200, json={"hits": [], "nextCursor": "p3", "tookMs": 1}),
        httpx.Response(200, json={"hits": [hit("2", 7, "c")], "nextCursor": None, "tookMs": 1}),
    ]
    with scripted(pages, seen) as pt:
        it = pt.search_all("abc", limit=2)
        assert [next(it)["text"], next(it)["text"]] == ["a", "b"]
        assert len(seen) == 1, "the next page only when this one is used up"
        assert [f"{h['instanceId']}:{h['line']}" for h in it] == ["2:7"]
    assert seen == ["/llm/search?q=abc&limit=2", "/llm/search?q=abc&limit=2&cursor=p2", "/llm/search?q=abc&limit=2&cursor=p3"]


def test_runs_iter_runs_and_stats() -> None:
    seen: List[str] = []
    run = {
        "instanceId": "9",
        "attempt": 2,
        "status": "FAILED",
        "startedAt": 100,
        "finishedAt": 200,
        "phase": "failed",
        "readyAfterMs": None,
        "cause": "cuda_oom",
        "causeLine": 41,
        "lines": 57,
    }
    stats = {
        "job": "vllm start",
        "since": 5,
        "runs": 4,
        "byOutcome": {"ready": 3, "failed": 1},
        "byCause": {"cuda_oom": 1},
        "readyP50Ms": 2310,
        "readyP95Ms": 4000,
    }
    answers = [
        httpx.Response(200, json={"job": "vllm start", "runs": [run], "nextCursor": "r2"}),
        httpx.Response(200, json={"job": "vllm start", "runs": [dict(run, instanceId="8")], "nextCursor": None}),
        httpx.Response(200, json=stats),
    ]
    with scripted(answers, seen) as pt:
        assert [r["instanceId"] for r in pt.iter_runs("vllm start", since=5, limit=1)] == ["9", "8"]
        assert pt.stats("vllm start", since=5) == stats
    assert seen == [
        "/llm/jobs/vllm%20start/runs?since=5&limit=1",
        "/llm/jobs/vllm%20start/runs?since=5&limit=1&cursor=r2",
        "/llm/jobs/vllm%20start/stats?since=5",
    ]


def test_archive_errors_are_typed_and_a_down_archive_is_retried() -> None:
    seen: List[str] = []
    down = httpx.Response(503, json={"error": {"code": "archive_unavailable", "message": "db down"}}, headers={"Retry-After": "0"})
    with scripted([down, httpx.Response(200, json={"hits": [], "nextCursor": None, "tookMs": 0})], seen) as pt:
        assert pt.search("abc")["hits"] == []
    assert len(seen) == 2
    with scripted([down], []) as pt:
        pt.max_retries = 1
        with pytest.raises(ArchiveUnavailableError):
            pt.search("abc")
    short = httpx.Response(400, json={"error": {"code": "bad_request", "message": "q: at least 3 characters"}})
    with scripted([short], []) as pt:
        with pytest.raises(BadRequestError):
            pt.search("ab")
    off = httpx.Response(404, json={"error": {"code": "not_found", "message": "no archive"}})
    with scripted([off], []) as pt:
        with pytest.raises(NotFoundError):
            pt.runs("j")
        with pytest.raises(ValueError):
            pt.runs("")
        with pytest.raises(ValueError):
            pt.search("abc", limit=501)
        with pytest.raises(ValueError):
            pt.stats("j", since=datetime(2026, 1, 1))
