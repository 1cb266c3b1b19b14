"""Behaviour that the demo cannot be made to show on demand (429/503 retries, a dropped
event stream), against a tiny scripted HTTP server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from powertail_client import (
    Client,
    EpochMismatchError,
    InstanceConflictError,
    OverloadedError,
    RateLimitedError,
    RetryableError,
    ServerError,
    SSEDecoder,
    UpstreamError,
    UpstreamUnavailableError,
    StoreUnavailableError,
)

Reply = Callable[[BaseHTTPRequestHandler], None]


def json_reply(status: int, body: object, headers: Optional[Dict[str, str]] = None) -> Reply:
    def reply(h: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    return reply


def error(status: int, code: str, retry_after: Optional[str] = None) -> Reply:
    return json_reply(
        status, {"error": {"code": code, "message": f"test {code}"}}, {"Retry-After": retry_after} if retry_after else None
    )


def page(from_line: int, lines: List[str], complete: bool, stale: bool = False, epoch: str = "E1") -> Reply:
    return json_reply(
        200,
        {
            "instanceId": "677182124851200064",
            "epoch": epoch,
            "fromLine": from_line,
            "nextLine": from_line + len(lines),
            "lines": lines,
            "totalLines": from_line + len(lines),
            "status": "SUCCEED" if complete else "RUNNING",
            "complete": complete,
            "stale": stale,
            "attempt": 1,
            "attempts": [{"attempt": 1, "fromLine": 0}],
        },
    )


def sse(text: str) -> Reply:
    """An event stream that the server closes after `text` (no `Content-Length`)."""

    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(text.encode())
        h.wfile.flush()
        h.close_connection = True

    return reply


def sse_cut(text: str) -> Reply:
    """An event stream whose connection breaks after `text` (fewer bytes than announced)."""

    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(text.encode()) + 1000))
        h.end_headers()
        h.wfile.write(text.encode())
        h.wfile.flush()
        h.close_connection = True

    return reply


class FakeServer:
    def __init__(self, replies: List[Reply]) -> None:
        self.replies = list(replies)
        self.requests: List[Tuple[str, Dict[str, str]]] = []
        self.times: List[float] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def handle_one(self) -> None:
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                fake.times.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fake.replies.pop(0)(self)

            do_GET = do_POST = handle_one

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[List[Reply]], FakeServer]]:
    servers: List[FakeServer] = []

    def start(replies: List[Reply]) -> FakeServer:
        servers.append(FakeServer(replies))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_follow_sleeps_retry_after_on_503_and_429_and_keeps_polling_when_stale(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve(
        [
            page(0, ["a", "b"], False),
            error(503, "overloaded", "1"),
            error(429, "rate_limited", "1"),
            page(2, [], False, stale=True),
            page(2, ["c"], True),
        ]
    )
    with Client(fake.url, min_poll_interval=0) as client:
        assert list(client.follow("677182124851200064")) == ["a", "b", "c"]
    paths = [p for p, _ in fake.requests]
    assert [p.split("fromLine=")[1].split("&")[0] for p in paths] == ["0", "2", "2", "2", "2"]
    assert all("waitMs=20000" in p for p in paths)
    # Each Retry-After (1 s) was slept before the next try.
    assert fake.times[2] - fake.times[1] >= 0.95
    assert fake.times[3] - fake.times[2] >= 0.95


def test_retries_give_up_after_max_retries_with_the_typed_error(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([error(503, "upstream_unavailable", "0")] * 3)
    with Client(fake.url, max_retries=2) as client:
        with pytest.raises(UpstreamUnavailableError) as caught:
            list(client.follow("5"))
    err = caught.value
    assert isinstance(err, UpstreamError) and isinstance(err, RetryableError)
    assert (err.status, err.code, err.retry_after, err.message) == (503, "upstream_unavailable", 0.0, "test upstream_unavailable")
    assert len(fake.requests) == 3


def test_a_replica_without_its_store_is_retried_then_typed(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([error(503, "store_unavailable", "0")] * 2)
    with Client(fake.url, max_retries=1) as client:
        with pytest.raises(StoreUnavailableError) as caught:
            client.read("5")
    assert isinstance(caught.value, RetryableError) and not isinstance(caught.value, UpstreamError)
    assert (caught.value.status, caught.value.retry_after) == (503, 0.0)
    assert len(fake.requests) == 2


def test_an_instance_of_another_powerjob_is_typed_and_not_retried(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([error(409, "instance_conflict", None)] * 2)
    with Client(fake.url, max_retries=3) as client:
        with pytest.raises(InstanceConflictError) as caught:
            client.read("5")
    assert not isinstance(caught.value, RetryableError)
    assert caught.value.status == 409
    assert len(fake.requests) == 1


def test_run_job_is_never_retried(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([error(429, "rate_limited", "7")])
    with Client(fake.url, token="s3cret") as client:
        with pytest.raises(RateLimitedError) as caught:
            client.run_job("vllm-start", {"port": 8001})
    assert caught.value.retry_after == 7.0
    assert len(fake.requests) == 1
    path, headers = fake.requests[0]
    assert path == "/llm/jobs/vllm-start/run"
    assert headers["authorization"] == "Bearer s3cret"


def test_an_answer_that_is_not_powertails_gets_the_family_of_its_status(serve: Callable[[List[Reply]], FakeServer]) -> None:
    def html(h: BaseHTTPRequestHandler) -> None:
        h.send_response(502)
        h.send_header("Content-Type", "text/html")
        h.end_headers()
        h.wfile.write(b"<html>Bad Gateway</html>")

    fake = serve([html, error(503, "overloaded")])
    with Client(fake.url, max_retries=0) as client:
        # A proxy's page, not PowerJob's failure relayed by powertail.
        with pytest.raises(ServerError) as caught:
            client.read("5")
        assert not isinstance(caught.value, UpstreamError)
        assert (caught.value.code, caught.value.status) == ("http_error", 502)
        assert caught.value.message == "<html>Bad Gateway</html>"
        with pytest.raises(OverloadedError) as over:
            client.read("5")
        assert over.value.retry_after is None


def test_stream_resumes_with_last_event_id_after_a_dropped_connection(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve(
        [
            sse(': hello\n\nevent: lines\nid: 2\ndata: {"fromLine":0,"nextLine":2,"lines":["a","b"]}\n\nevent: lin'),
            error(503, "overloaded", "0"),
            sse('event: lines\nid: 3\ndata: {"fromLine":2,"nextLine":3,"lines":["c"]}\n\n'
                'event: shutdown\ndata: {}\n\n'),
            sse('event: error\ndata: {"code":"upstream_timeout","message":"slow"}\n\n'
                'event: end\nid: 3\ndata: {"nextLine":3}\n\n'),
        ]
    )
    with Client(fake.url) as client:
        client._sleep = lambda s: None  # the back-off between reconnections
        assert list(client.stream("9", from_line=0)) == ["a", "b", "c"]
    assert [h.get("last-event-id") for _, h in fake.requests] == [None, "2", "2", "3"]
    assert all(p.startswith("/llm/logs/9/stream") for p, _ in fake.requests)


def test_stream_starts_at_from_line(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve([sse('event: end\nid: 7\ndata: {"nextLine":7}\n\n')])
    with Client(fake.url) as client:
        events = list(client.stream_events("9", from_line=7))
    assert [(e.event, e.id) for e in events] == [("end", "7")]
    assert fake.requests[0][0] == "/llm/logs/9/stream?fromLine=7"


def test_the_event_stream_parser() -> None:
    d = SSEDecoder()
    text = "retry: 2500\n: comment\nevent: lines\nid: 4\ndata:first\ndata: second\n\n\ndata: x\n\nid\nevent: e\ndata\n\n"
    events = list(d.iter_events(text.split("\n")))
    assert [(e.event, e.data, e.id) for e in events] == [
        ("lines", "first\nsecond", "4"),
        ("message", "x", "4"),
        ("e", "", ""),
    ]
    assert events[0].retry == 2500 and events[1].retry is None and d.retry == 2500
    # An event the stream did not finish is not dispatched.
    assert list(SSEDecoder().iter_events(["event: end", "data: {}"])) == []


def test_stream_resumes_after_a_broken_connection(serve: Callable[[List[Reply]], FakeServer]) -> None:
    fake = serve(
        [
            sse_cut('event: lines\nid: 1\ndata: {"fromLine":0,"nextLine":1,"lines":["a"]}\n\nretry: 10\n\ndata: {"li'),
            sse('event: lines\nid: 2\ndata: {"fromLine":1,"nextLine":2,"lines":["b"]}\n\nevent: end\ndata: {}\n\n'),
        ]
    )
    slept: List[float] = []
    with Client(fake.url) as client:
        client._sleep = slept.append
        assert list(client.stream(9)) == ["a", "b"]
    assert [h.get("last-event-id") for _, h in fake.requests] == [None, "1"]
    assert slept == [0.25]  # the first back-off of the connect budget (above the stream's `retry: 10` ms)


def gone(epoch: str) -> Reply:
    """410 `epoch_mismatch`: the log was rebuilt, `epoch` is the current one."""
    return json_reply(410, {"error": {"code": "epoch_mismatch", "message": "the log was rebuilt"}, "epoch": epoch})


def query_of(path: str) -> Dict[str, str]:
    return dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&")) if "?" in path else {}


def test_follow_sends_the_epoch_and_raises_epoch_mismatch_when_the_log_was_rebuilt(
    serve: Callable[[List[Reply]], FakeServer],
) -> None:
    fake = serve([page(0, ["a", "b"], False), gone("E2")])
    got: List[str] = []
    with Client(fake.url, min_poll_interval=0) as client:
        with pytest.raises(EpochMismatchError) as caught:
            for line in client.follow("5"):
                got.append(line)
    assert got == ["a", "b"]
    err = caught.value
    assert (err.status, err.code, err.epoch, err.message) == (410, "epoch_mismatch", "E2", "the log was rebuilt")
    queries = [query_of(p) for p, _ in fake.requests]
    assert "epoch" not in queries[0]
    assert (queries[1]["fromLine"], queries[1]["epoch"]) == ("2", "E1")


def test_follow_with_restart_starts_over_from_line_0_under_the_new_epoch(
    serve: Callable[[List[Reply]], FakeServer],
) -> None:
    fake = serve([page(0, ["a", "b"], False), gone("E2"), page(0, ["b", "a", "c"], True, epoch="E2")])
    with Client(fake.url, min_poll_interval=0) as client:
        pages = list(client.follow_pages("5", restart=True))
    assert [(p["epoch"], p["fromLine"], p["lines"]) for p in pages] == [("E1", 0, ["a", "b"]), ("E2", 0, ["b", "a", "c"])]
    queries = [query_of(p) for p, _ in fake.requests]
    assert [(q["fromLine"], q.get("epoch")) for q in queries] == [("0", None), ("2", "E1"), ("0", "E2")]
    # A given epoch is sent from the first request on.
    fake = serve([gone("E3")])
    with Client(fake.url) as client:
        with pytest.raises(EpochMismatchError) as caught:
            client.read("5", 10, epoch="E1")
    assert caught.value.epoch == "E3"
    assert query_of(fake.requests[0][0])["epoch"] == "E1"


def test_stream_raises_or_restarts_on_epoch_mismatch(serve: Callable[[List[Reply]], FakeServer]) -> None:
    lines_e1 = 'event: lines\nid: 2\ndata: {"epoch":"E1","fromLine":0,"nextLine":2,"lines":["a","b"]}\n\n'
    rebuilt = 'event: error\ndata: {"code":"epoch_mismatch","message":"rebuilt","epoch":"E2"}\n\n'
    lines_e2 = (
        'event: lines\nid: 1\ndata: {"epoch":"E2","fromLine":0,"nextLine":1,"lines":["z"]}\n\n'
        'event: end\nid: 1\ndata: {"epoch":"E2","nextLine":1}\n\n'
    )
    # Rebuilt while streaming: raised after the lines of the old sequence.
    fake = serve([sse(lines_e1 + rebuilt)])
    got: List[str] = []
    with Client(fake.url) as client:
        with pytest.raises(EpochMismatchError) as caught:
            for line in client.stream("9"):
                got.append(line)
    assert (got, caught.value.epoch, caught.value.status) == (["a", "b"], "E2", 410)
    # With restart=True: the new sequence from line 0, under its epoch; a reconnect
    # (Last-Event-ID) sends the epoch learnt; a 410 before the stream starts restarts too.
    fake = serve([sse(lines_e1), sse(rebuilt), sse(lines_e2), gone("E3"), sse(lines_e2.replace("E2", "E3"))])
    with Client(fake.url) as client:
        client._sleep = lambda s: None
        assert list(client.stream("9", restart=True)) == ["a", "b", "z"]
        assert list(client.stream("9", epoch="E2", restart=True)) == ["z"]
    sent = [(query_of(p).get("epoch"), query_of(p).get("fromLine"), h.get("last-event-id")) for p, h in fake.requests]
    assert sent == [(None, None, None), ("E1", None, "2"), ("E2", None, None), ("E2", None, None), ("E3", None, None)]
    fake = serve([gone("E2")])
    with Client(fake.url) as client:
        with pytest.raises(EpochMismatchError):
            list(client.stream("9", epoch="E1"))
