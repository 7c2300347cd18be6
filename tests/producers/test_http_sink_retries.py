"""The simulator's HTTP sink retries through tenacity: busy answers and a dead server."""

from __future__ import annotations

import http.server
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from producers.errors import SinkError
from producers.simulator.sinks import HttpSink


class _Busy(http.server.BaseHTTPRequestHandler):
    """503 with Retry-After for the first ``busy`` requests, then 200 accepting all."""

    busy = 2
    seen: list[float]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        events = json.loads(self.rfile.read(length))
        self.seen.append(time.monotonic())
        if len(self.seen) <= self.busy:
            self.send_response(503)
            self.send_header("Retry-After", "0.2")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = json.dumps({"results": [{"status": "accepted"} for _ in events]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def busy_server() -> Iterator[tuple[str, list[float]]]:
    seen: list[float] = []
    handler = type("Handler", (_Busy,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_busy_answers_are_retried_after_their_retry_after(
    busy_server: tuple[str, list[float]],
) -> None:
    url, seen = busy_server
    sink = HttpSink(url, default_token="tok", batch_size=1, retry_for_s=30.0)
    sink.send({"agency": "minsoc", "n": 1})
    sink.close()
    assert len(seen) == 3  # two 503s, then the 200
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(seen))
    assert sink.stats.rejected == {}
    assert sink.stats.delivered == 1


def test_a_dead_server_fails_after_the_retry_period_with_the_attempts_named() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = HttpSink(f"http://127.0.0.1:{port}", default_token="tok", batch_size=1, retry_for_s=1.0)
    with pytest.raises(SinkError, match=r"after [2-9]\d* attempts"):
        sink.send({"agency": "minsoc", "n": 1})
    assert sink.stats.rejected["not_delivered"] == 1
