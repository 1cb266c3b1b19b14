"""The pusher against the real powertail binary and its simulated PowerJob (issue 19):
every line pushed is served once, in order, in PowerJob's record format, next to the job's
own log; a retry whose answer was lost is answered `duplicate: true` and appends nothing;
a 413 halves the batch; 401, 403 and 404 turn pushing off without raising."""

from __future__ import annotations

import re
import time
from typing import List, Optional, Tuple

from powertail_client import Client, Pusher, PushStats

from conftest import PUSH_MAX_BATCH_LINES
from losing_proxy import LosingProxy

RECORD = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \[(?P<worker>[^\]]+)\] (?P<level>[A-Z]+) (?P<text>.*)$")


def of(worker: str, served: List[str]) -> List[str]:
    """"LEVEL text" of the served lines of `worker`."""
    out = []
    for line in served:
        m = RECORD.match(line)
        if m and m.group("worker") == worker:
            out.append(f"{m.group('level')} {m.group('text')}")
    return out


def script(tag: str) -> List[str]:
    """120 distinct lines, some WARN, and a burst of equal progress lines."""
    out = []
    for k in range(120):
        out.append(f"{'WARN' if k % 25 == 7 else 'INFO'} {tag} line {k}")
        if k == 60:
            out.extend([f"INFO {tag} progress 50%"] * 4)
    return out


def play(p: Pusher, lines: List[str]) -> None:
    for k, line in enumerate(lines, 1):
        level, text = line.split(" ", 1)
        p.log(text, "WARN" if level == "WARN" else "INFO")
        if k % 10 == 0:
            time.sleep(0.005)  # several batches, not one


def test_every_pushed_line_is_served_once_in_order_next_to_the_jobs_own_log(client: Client, demo_url: str) -> None:
    run = client.run_job("vllm-start")
    iid, worker, lines = run["instanceId"], "10.0.1.9:27777", script("pushed")
    with Pusher(demo_url, iid, worker=worker, echo=None) as p:
        play(p, lines)
    s = p.stats()
    assert s == PushStats(len(lines), 0, len(lines), 0, s.batches, 0, 0, False, 0)
    assert s.batches >= 3, s
    served = list(client.follow(iid, wait=5))
    assert of(worker, served) == lines
    assert any("Application startup complete." in line for line in served)
    assert client.raw(iid) == "".join(line + "\n" for line in served)
    push = client.read(iid, len(served)).get("push")
    assert push is not None and push["sources"] >= 1 and push["lines"] >= len(lines), push


def test_a_retry_whose_first_answer_was_lost_is_a_duplicate(client: Client, demo_url: str) -> None:
    run = client.run_job("vllm-start")
    iid, worker, lines = run["instanceId"], "10.0.1.10:27777", script("retried")
    with LosingProxy(demo_url, lambda n: n in (0, 2)) as proxy:
        with Pusher(proxy.url, iid, worker=worker, echo=None) as p:
            play(p, lines)
        s = p.stats()
        assert proxy.lost == 2
    assert (s.duplicates, s.retries, s.sent, s.rejected + s.dropped) == (2, 2, len(lines), 0), s
    assert of(worker, list(client.follow(iid, wait=5))) == lines


def test_a_413_halves_the_batch_until_it_fits(pushing: Tuple[str, str, str]) -> None:
    url, _, pusher = pushing
    with Client(url, pusher) as pt:
        run = pt.run_job("vllm-start")
        iid, worker, lines = run["instanceId"], "10.0.1.11:27777", script("halved")
        with LosingProxy(url, lambda n: False) as proxy:
            with Pusher(proxy.url, iid, token=pusher, worker=worker, echo=None, linger=1.0) as p:
                play(p, lines)
            s = p.stats()
            assert s == PushStats(len(lines), 0, len(lines), 0, s.batches, 0, 0, False, 0)
            assert s.batches >= len(lines) // PUSH_MAX_BATCH_LINES, s
            assert proxy.requests > s.batches, "some batches were refused with 413 first"
        assert of(worker, list(pt.follow(iid, wait=5))) == lines


def test_401_403_404_turn_pushing_off_and_never_raise(pushing: Tuple[str, str, str], demo_url: str) -> None:
    url, reader, pusher = pushing
    with Client(url, pusher) as pt:
        iid = pt.run_job("vllm-start")["instanceId"]
    cases: List[Tuple[str, str, Optional[str]]] = [
        (url, iid, None),  # 401: tokens configured, none sent
        (url, iid, reader),  # 403: no logs:push scope
        (demo_url, "1", None),  # 404: PowerJob does not know instance 1
    ]
    for target, instance, token in cases:
        with LosingProxy(target, lambda n: False) as proxy:
            p = Pusher(proxy.url, instance, token=token, echo=None, linger=0.0)
            assert p.log("first")
            deadline = time.monotonic() + 10
            while not p.stats().disabled:
                assert time.monotonic() < deadline, p.stats()
                time.sleep(0.02)
            assert not p.log("second")
            p.close()
            s = p.stats()
            assert (s.disabled, s.sent, s.dropped) == (True, 0, 1), (target, token, s)
            assert proxy.requests == 1, "nothing sent once off"
