"""The ingest benchmark's load loops against a stand-in ``POST /v1/events`` (no API, no Kafka).

The stand-in answers like the API: 202 with ``{"accepted": n}`` (a body element
``"dup"`` is not accepted), 422 for a body containing ``"bad"``, after ``DELAY`` s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, cast

import pytest

from bench import ingest


class _Ingest(BaseHTTPRequestHandler):
    arrivals: ClassVar[list[float]] = []
    delay: ClassVar[float] = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).arrivals.append(time.perf_counter())
        time.sleep(type(self).delay)
        items = json.loads(body)
        status, reply = (
            (422, {"detail": "bad event"})
            if "bad" in items
            else (202, {"accepted": sum(1 for x in items if x != "dup")})
        )
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ingest.Server]:
    _Ingest.arrivals = []
    _Ingest.delay = 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ingest.Server(proc=cast(Any, None), port=httpd.server_address[1], token="t")
    finally:
        httpd.shutdown()
        httpd.server_close()


def _body(*items: str) -> tuple[int, bytes]:
    return len(items), json.dumps(list(items)).encode()


def test_closed_loop_counts_what_was_not_accepted(server: ingest.Server) -> None:
    bodies = [_body("a", "b", "c") for _ in range(8)]
    bodies += [_body("a", "bad", "c"), _body("a", "dup", "c")]
    load = ingest.closed_loop(server, bodies, threads=3)
    assert (load.requests, load.events, load.not_accepted) == (10, 30, 4)
    assert len(load.latencies) == 10 and min(load.latencies) > 0
    assert load.errors == ['HTTP 422: b\'{"detail": "bad event"}\'']
    assert load.rate == pytest.approx(26 / load.seconds)


def test_closed_loop_stops_after_its_duration(server: ingest.Server) -> None:
    _Ingest.delay = 0.05
    load = ingest.closed_loop(server, [_body("a")] * 200, threads=1, duration=0.3)
    assert 1 <= load.requests < 50
    assert load.events == load.requests and load.not_accepted == 0


def test_open_loop_sends_on_schedule_and_times_from_it(server: ingest.Server) -> None:
    bodies = [_body("a", "b") for _ in range(6)]
    load = ingest.open_loop(server, bodies, rate=50.0, threads=3)  # one body per 40 ms
    assert (load.requests, load.events, load.not_accepted) == (6, 12, 0)
    arrivals = sorted(_Ingest.arrivals)
    assert arrivals[-1] - arrivals[0] >= 5 * 0.04 - 0.005
    assert load.seconds >= 0.1 + 5 * 0.04
    assert min(load.latencies) >= 0
