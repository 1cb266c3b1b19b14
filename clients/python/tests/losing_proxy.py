"""A loopback HTTP proxy in front of a real powertail that forwards every request and,
for the requests `lose` selects (numbered from 0), drops the connection instead of
relaying the answer: the request was applied, its answer lost, as when a network fails
after the server acted."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import httpx


class LosingProxy:
    def __init__(self, target: str, lose: Callable[[int], bool]) -> None:
        self.requests = 0
        self.lost = 0
        lock = threading.Lock()
        proxy = self
        client = httpx.Client(base_url=target, timeout=10.0)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                answer = client.post(self.path, content=body, headers=headers)
                with lock:
                    n = proxy.requests
                    proxy.requests += 1
                    drop = lose(n)
                    if drop:
                        proxy.lost += 1
                if drop:
                    self.close_connection = True  # applied upstream; no answer
                    return
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer.content)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._client = client
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> "LosingProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
