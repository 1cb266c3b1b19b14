"""Against a real `powertail demo` (see conftest.py)."""

from __future__ import annotations

from typing import Tuple

import pytest

from powertail_client import (
    AuthError,
    Client,
    ConflictError,
    EpochMismatchError,
    ForbiddenError,
    InstanceNotFoundError,
    JobNotFoundError,
    NotFoundError,
    PowertailError,
    RequestError,
    UnauthorizedError,
)


def test_follow_reads_a_job_to_completion_exactly_as_the_raw_log(client: Client) -> None:
    run = client.run_job("vllm-start", {"port": 8001})
    assert run["jobName"] == "vllm-start"
    assert run["instanceId"].isdigit() and int(run["instanceId"]) > 2**53
    assert run["logsUrl"] == f"/llm/logs?instanceId={run['instanceId']}"

    lines = list(client.follow(run["instanceId"], wait=5))

    assert len(lines) > 100
    assert any("--port 8001" in line for line in lines)
    assert any("Application startup complete." in line for line in lines)
    # Complete: the raw log is exactly what was followed, one line per "\n".
    assert client.raw(run["instanceId"]) == "".join(line + "\n" for line in lines)
    last = client.read(run["instanceId"], len(lines))
    assert last["complete"] and last["lines"] == [] and last["nextLine"] == len(lines)
    # Following again from the middle resumes there.
    assert list(client.follow(int(run["instanceId"]), from_line=40)) == lines[40:]


def test_follow_pages_carry_the_cursor(client: Client) -> None:
    run = client.run_job("vllm-port-in-use")
    pages = list(client.follow_pages(run["instanceId"], wait=5, limit=7))
    assert pages[-1]["complete"] and not any(p["complete"] for p in pages[:-1])
    for before, after in zip(pages, pages[1:]):
        assert after["fromLine"] == before["nextLine"]
        assert len(before["lines"]) <= 7
    assert pages[-1]["status"] == "FAILED"
    assert pages[-1]["attempts"] == [{"attempt": 1, "fromLine": 0}]


def test_a_stale_epoch_raises_epoch_mismatch_with_the_current_one(client: Client) -> None:
    run = client.run_job("vllm-port-in-use")
    pages = list(client.follow_pages(run["instanceId"], wait=5))
    epoch = pages[0]["epoch"]
    assert epoch and all(p["epoch"] == epoch for p in pages)
    assert client.read(run["instanceId"], 3, epoch=epoch)["fromLine"] == 3
    # An epoch of another sequence (a restarted powertail, say): 410, never its lines.
    with pytest.raises(EpochMismatchError) as caught:
        client.read(run["instanceId"], 3, epoch="0000000000000000-1")
    assert (caught.value.status, caught.value.code, caught.value.epoch) == (410, "epoch_mismatch", epoch)
    with pytest.raises(EpochMismatchError):
        list(client.follow(run["instanceId"], 3, epoch="0000000000000000-1"))
    with pytest.raises(EpochMismatchError):
        list(client.stream(run["instanceId"], 3, epoch="0000000000000000-1"))
    # restart=True starts over from line 0 of the sequence served now.
    lines = [line for p in pages for line in p["lines"]]
    assert list(client.follow(run["instanceId"], 3, epoch="0000000000000000-1", restart=True)) == lines
    assert list(client.stream(run["instanceId"], 3, epoch="0000000000000000-1", restart=True)) == lines


def test_stream_yields_the_same_lines_as_follow(client: Client) -> None:
    run = client.run_job("vllm-start")
    streamed = list(client.stream(run["instanceId"]))
    followed = list(client.follow(run["instanceId"]))
    assert streamed == followed
    assert client.raw(run["instanceId"]) == "".join(line + "\n" for line in streamed)
    # Events: lines with their id, start-up, then end with the final position.
    events = list(client.stream_events(run["instanceId"], from_line=10))
    assert events[-1].event == "end"
    kinds = {e.event for e in events}
    assert {"lines", "end", "startup"} <= kinds
    first = next(e for e in events if e.event == "lines")
    assert '"fromLine":10' in first.data.replace(" ", "")
    assert events[-1].id == str(len(streamed))


def test_run_job_with_an_unknown_name_raises_job_not_found(client: Client) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        client.run_job("no-such-job")
    err = caught.value
    assert isinstance(err, NotFoundError) and isinstance(err, PowertailError)
    assert (err.status, err.code) == (404, "job_not_found")
    assert "no-such-job" in err.message
    assert err.retry_after is None


def test_an_unknown_instance_raises_instance_not_found(client: Client) -> None:
    with pytest.raises(InstanceNotFoundError) as caught:
        list(client.follow("1"))
    assert caught.value.status == 404
    with pytest.raises(InstanceNotFoundError):
        list(client.stream(1))
    with pytest.raises(InstanceNotFoundError):
        client.startup(1)


def test_a_bad_parameter_raises_bad_request(client: Client) -> None:
    with pytest.raises(RequestError) as caught:
        client.read("1", limit=0)
    assert (caught.value.status, caught.value.code) == (400, "bad_request")
    with pytest.raises(ValueError):
        client.read("12a")


def test_startup_of_vllm_start_reaches_ready(client: Client) -> None:
    run = client.run_job("vllm-start")
    first = client.startup(run["instanceId"])
    assert first["phase"] in ("starting", "loading") and not first["complete"]
    state = client.wait_startup(run["instanceId"], timeout=60)
    assert state["phase"] == "ready", state
    assert state["complete"] and state["failure"] is None
    assert state["ready"] is not None and "Application startup complete." in (state["ready"]["text"] or "")
    kinds = [e["kind"] for e in state["events"]]
    assert kinds[0] == "loading" and kinds[-1] == "ready" and "progress" in kinds


def test_startup_of_vllm_oom_fails_with_cuda_oom(client: Client) -> None:
    run = client.run_job("vllm-oom")
    state = client.wait_startup(run["instanceId"], timeout=60)
    assert state["complete"], state
    assert state["phase"] == "failed"
    assert state["failure"] is not None and state["failure"]["cause"] == "cuda_oom"
    assert state["status"] == "FAILED"
    # The line it names is the one the log serves there.
    lines = list(client.follow(run["instanceId"]))
    line = state["failure"]["line"]
    assert line is not None and lines[line] == state["failure"]["text"]


def test_startup_long_polls(client: Client) -> None:
    run = client.run_job("vllm-start")
    state = client.startup(run["instanceId"])
    changed = client.startup(run["instanceId"], 10, attempt=state["attempt"], from_event=len(state["events"]))
    assert len(changed["events"]) > len(state["events"]) or changed["complete"]


def test_tokens_are_sent_and_auth_errors_are_typed(authed: Tuple[str, str, str]) -> None:
    url, reader, runner = authed
    with Client(url) as anonymous:
        with pytest.raises(UnauthorizedError) as caught:
            anonymous.read("1")
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
        assert isinstance(caught.value, AuthError)
    with Client(url, token=reader) as client:
        with pytest.raises(ForbiddenError) as forbidden:
            client.run_job("vllm-start")
        assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    with Client(url, token=runner) as client:
        run = client.run_job("vllm-start", {"port": 8002})
    with Client(url, token=reader) as client:
        lines = list(client.stream(run["instanceId"]))
        assert any("--port 8002" in line for line in lines)
        assert list(client.follow(run["instanceId"])) == lines


def test_jobs_instance_and_stop(client: Client) -> None:
    names = [job["name"] for job in client.jobs()["jobs"]]
    assert {"vllm-start", "vllm-oom", "vllm-port-in-use"} <= set(names)
    run = client.run_job("vllm-port-in-use")
    list(client.follow(run["instanceId"]))
    info = client.instance(run["instanceId"])
    assert info["instanceId"] == run["instanceId"] and info["status"] == "FAILED"
    with pytest.raises(ConflictError) as caught:
        client.stop(run["instanceId"])
    assert caught.value.status == 409 and "FAILED" in caught.value.message
