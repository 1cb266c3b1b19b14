"""Fixtures: a real `powertail demo` for the session, a client of it, and a second
powertail with API tokens in front of the demo's simulator.

The binary is `$POWERTAIL_BIN`, else the repository's `target/debug/powertail` (CI runs
`cargo build` first). The demo runs at `$POWERTAIL_DEMO_SCALE` times its speed (default
0.1: a vLLM start-up in about 3 s).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import httpx
import pytest

from powertail_client import Client

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SCALE = float(os.environ.get("POWERTAIL_DEMO_SCALE", "0.1"))


def binary() -> Path:
    path = Path(os.environ.get("POWERTAIL_BIN", REPO / "target" / "debug" / "powertail"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `cargo build` first (or set POWERTAIL_BIN)")
    return path


def start(args: List[str], url: str, log: Path, env: Dict[str, str]) -> "subprocess.Popen[bytes]":
    """Starts powertail with `args` and waits until `url` answers /healthz."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary()), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"powertail {args} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"powertail {args} did not answer /healthz in 30 s:\n{log.read_text()}")
        time.sleep(0.1)


def stop(proc: "subprocess.Popen[bytes]") -> None:
    proc.terminate()  # SIGTERM: in-flight requests finish, at most 10 s
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, str]]:
    """(powertail's URL, the simulated PowerJob server's URL) of a running demo."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("demo") / "powertail-demo.log"
    env = dict(os.environ, POWERTAIL_DEMO_SCALE=str(SCALE))
    proc = start(["demo", "--listen", f"127.0.0.1:{port}"], url, log, env)
    try:
        found = re.search(r"simulated PowerJob server at (http://[0-9.:]+)", log.read_text())
        assert found, log.read_text()
        yield url, found.group(1)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def demo_url(demo: Tuple[str, str]) -> str:
    return demo[0]


@pytest.fixture(scope="session")
def authed(demo: Tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, str, str]]:
    """(URL, reader token, runner token) of a powertail with API tokens configured, in
    front of the demo's simulator: `reader` may read logs, `runner` may also run jobs."""
    reader, runner = secrets.token_hex(16), secrets.token_hex(16)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = tmp_path_factory.mktemp("authed")

    def ms(v: float) -> int:  # the demo's times (src/demo.rs `setup`)
        return max(1, round(v * SCALE))

    (work / "config.toml").write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
[powerjob]
addresses = ["{demo[1]}"]
app_name = "llm-test-platform"
app_password = "secret"
request_timeout_ms = 5000
log_cache_ms = {ms(2000)}
worker_flush_ms = {ms(1000)}
clock_skew_ms = {ms(500)}
sync_delay_ms = {ms(20000)}
[logs]
refresh_interval_ms = {max(10, ms(500))}
first_read_delay_ms = {ms(1500)}
[jobs.vllm-start]
job_id = 12
[[auth.tokens]]
name = "reader"
token = "{reader}"
scopes = ["logs:read"]
[[auth.tokens]]
name = "runner"
token = "{runner}"
scopes = ["logs:read", "jobs:run"]
"""
    )
    proc = start(["--config", str(work / "config.toml")], url, work / "powertail.log", dict(os.environ))
    try:
        yield url, reader, runner
    finally:
        stop(proc)


#: `push.max_batch_lines` of the `pushing` powertail: larger batches get 413.
PUSH_MAX_BATCH_LINES = 8


@pytest.fixture(scope="session")
def pushing(demo: Tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, str, str]]:
    """(URL, reader token, pusher token) of a powertail in front of the demo's simulator
    with API tokens (`reader`: logs:read; `pusher`: logs:read, logs:push, jobs:run) and
    at most `PUSH_MAX_BATCH_LINES` lines a pushed batch."""
    reader, pusher = secrets.token_hex(16), secrets.token_hex(16)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = tmp_path_factory.mktemp("pushing")

    def ms(v: float) -> int:
        return max(1, round(v * SCALE))

    (work / "config.toml").write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
[powerjob]
addresses = ["{demo[1]}"]
app_name = "llm-test-platform"
app_password = "secret"
request_timeout_ms = 5000
log_cache_ms = {ms(2000)}
worker_flush_ms = {ms(1000)}
clock_skew_ms = {ms(500)}
sync_delay_ms = {ms(20000)}
[logs]
refresh_interval_ms = {max(10, ms(500))}
first_read_delay_ms = {ms(1500)}
[push]
max_batch_lines = {PUSH_MAX_BATCH_LINES}
[jobs.vllm-start]
job_id = 12
[[auth.tokens]]
name = "reader"
token = "{reader}"
scopes = ["logs:read"]
[[auth.tokens]]
name = "pusher"
token = "{pusher}"
scopes = ["logs:read", "logs:push", "jobs:run"]
"""
    )
    proc = start(["--config", str(work / "config.toml")], url, work / "powertail.log", dict(os.environ))
    try:
        yield url, reader, pusher
    finally:
        stop(proc)


@pytest.fixture
def client(demo_url: str) -> Iterator[Client]:
    with Client(demo_url) as c:
        yield c
