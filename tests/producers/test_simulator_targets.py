"""Simulator targets: Kafka through the producer library, and the HTTP ingest API."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from contract.catalog import load_catalog
from contract.events import Event, decode_event, event_key
from producers.producer import EventProducer
from producers.simulator import Simulation, generate
from producers.simulator.runner import Plan, run
from producers.simulator.sinks import HttpSink, KafkaSink
from servicepulse.stack import free_port
from tests.fixtures.kafka import TopicFactory, read_topic

TZ = ZoneInfo("Asia/Yekaterinburg")
MONDAY = datetime(2025, 3, 3, 9, tzinfo=TZ)


@pytest.mark.integration
def test_kafka_target_round_trip(topic_factory: TopicFactory) -> None:
    topics, settings = topic_factory(4)
    catalog = load_catalog()
    end = MONDAY + timedelta(minutes=30)
    sim = Simulation(catalog, seed=21, start=MONDAY, rate=2)
    producer = EventProducer(settings, catalog, pseudonym_secret="sim-test")
    stats = run(sim, KafkaSink(producer), Plan(end=end))
    expected = list(generate(catalog, 21, MONDAY, end, rate=2))
    assert stats.events == len(expected) > 100

    got: dict[str, Event] = {}
    for rec in read_topic(settings, topics.events):
        assert rec.value is not None
        decoded = decode_event(rec.value)
        assert isinstance(decoded, Event)
        assert rec.key == event_key(decoded)
        got[decoded.event_id] = decoded
    assert set(got) == {e["event_id"] for e in expected}
    assert Counter(e.type.value for e in got.values()) == stats.by_type


class _Api(BaseHTTPRequestHandler):
    """A stand-in for POST /v1/events: records batches, answers like the API."""

    tokens: ClassVar[dict[str, str]] = {"tok-minsoc": "minsoc", "tok-minobr": "minobr"}
    batches: ClassVar[list[tuple[str, list[dict[str, Any]]]]] = []
    throttled: ClassVar[int] = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.path != "/v1/events" or token not in self.tokens:
            self.send_response(401)
            self.end_headers()
            return
        if _Api.throttled == 0:
            _Api.throttled += 1
            self.send_response(429)
            self.send_header("Retry-After", "0.2")
            self.end_headers()
            return
        events = json.loads(body)
        _Api.batches.append((token, events))
        agency = self.tokens[token]
        results = []
        for i, e in enumerate(events):
            ok = agency in ("*", e["agency"])
            results.append(
                {"index": i, "status": "accepted", "event_id": e["event_id"]}
                if ok
                else {
                    "index": i,
                    "status": "rejected",
                    "code": 403,
                    "problems": [{"field": "agency", "reason": "forbidden_agency", "message": "x"}],
                }
            )
        rejected = sum(r["status"] == "rejected" for r in results)
        answer = {
            "accepted": len(events) - rejected,
            "duplicates": 0,
            "rejected": rejected,
            "results": results,
        }
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.mark.slow
def test_http_target_batches_per_agency_with_its_token() -> None:
    catalog = load_catalog()
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.batches = []
    _Api.throttled = 0
    try:
        end = MONDAY + timedelta(hours=3)
        sink = HttpSink(
            f"http://127.0.0.1:{port}",
            tokens={"minsoc": "tok-minsoc", "minobr": "tok-minobr"},
            batch_size=1000,
        )
        sim = Simulation(catalog, seed=2, start=MONDAY, rate=1)
        stats = run(sim, sink, Plan(end=end))
    finally:
        server.shutdown()
        server.server_close()
    expected = list(generate(catalog, 2, MONDAY, end, rate=1))
    own = [e for e in expected if e["agency"] in ("minsoc", "minobr")]
    received = [e for _, batch in _Api.batches for e in batch]
    assert stats.events == len(expected)
    assert sorted(e["event_id"] for e in received) == sorted(e["event_id"] for e in own)
    assert all(len(batch) <= 1000 for _, batch in _Api.batches)
    assert any(len(batch) == 1000 for _, batch in _Api.batches)
    for token, batch in _Api.batches:
        assert {e["agency"] for e in batch} == {_Api.tokens[token]}
    assert _Api.throttled == 1  # the 429 was retried, nothing lost
    assert sink.stats.delivered == len(own)
    assert sink.stats.rejected["no_token"] == len(expected) - len(own)
