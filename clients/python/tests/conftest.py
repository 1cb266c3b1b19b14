"""Fixtures: a real `powertail demo` for the session, and a client of it.

The binary is `$POWERTAIL_BIN`, else the repository's `target/debug/powertail` (CI runs
`cargo build` first). The demo runs at `$POWERTAIL_DEMO_SCALE` times its speed (default
0.1: a vLLM start-up in about 3 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from powertail_client import Client

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = Path(os.environ.get("POWERTAIL_BIN", REPO / "target" / "debug" / "powertail"))
    if not binary.is_file():
        pytest.fail(f"{binary} does not exist: run `cargo build` first (or set POWERTAIL_BIN)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("demo") / "powertail-demo.log"
    env = dict(os.environ, POWERTAIL_DEMO_SCALE=os.environ.get("POWERTAIL_DEMO_SCALE", "0.1"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "demo", "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"powertail demo exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"powertail demo did not answer /healthz in 30 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def client(demo_url: str) -> Iterator[Client]:
    with Client(demo_url) as c:
        yield c
