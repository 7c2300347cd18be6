"""Kafka stops under the API: ingest answers 503 with Retry-After, never reports an event
accepted that Kafka did not acknowledge, and recovers when the broker returns."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from contract.topics import Topics
from kafkaport import connect
from kafkaport.topics import ensure_topics
from tests.fixtures.api import api_settings, event, read_topic, running_api
from tests.fixtures.kafka import Broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kafka_down_is_503_and_nothing_is_falsely_accepted(
    private_broker: Broker, tmp_path: Path
) -> None:
    assert private_broker.process is not None
    common = private_broker.settings("down")
    topics = Topics("down")
    ensure_topics(connect(common), topics.specs(3))
    settings = api_settings(
        common,
        tmp_path,
        request_timeout=3.0,
        kafka_retry_after=2,
        max_inflight_events=1000,
        backpressure_wait=0.2,
    )
    accepted: set[str] = set()
    with running_api(settings) as server:
        server.wait_ready()
        token = server.agency_token()
        client = server.client(token)

        def send(batch: list[dict[str, object]]) -> httpx.Response:
            r = client.post("/v1/events", content=json.dumps(batch).encode())
            if r.status_code == 200:
                accepted.update(
                    x["event_id"] for x in r.json()["results"] if x["status"] == "accepted"
                )
            return r

        assert send([event() for _ in range(10)]).status_code == 200
        assert len(accepted) == 10

        private_broker.process.stop()
        # backpressure: while 1000 events wait for Kafka, no room for more: 503 at once
        holder = threading.Thread(target=send, args=([event() for _ in range(1000)],))
        holder.start()
        deadline = time.monotonic() + 60  # a bound for a busy machine, not a speed
        while server.app.state.services.ingestor.inflight < 1000:
            assert time.monotonic() < deadline, "the first batch never went in flight"
            time.sleep(0.02)
        t0 = time.monotonic()
        with server.client(token) as other:
            r = other.post("/v1/events", content=json.dumps([event()]).encode())
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "in flight" in r.json()["error"]["message"]
        refused_s = time.monotonic() - t0  # compared below with a request that waited
        holder.join(15)
        assert server.registry.get_sample_value("servicepulse_api_saturated_total") == 1
        assert len(accepted) == 10

        batch = [event() for _ in range(20)]
        waited = []
        for _ in range(3):  # the first failure, and the ones after it
            t0 = time.monotonic()
            r = send(batch)
            elapsed = time.monotonic() - t0
            waited.append(elapsed)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "2"
            assert r.json()["error"]["code"] == "unavailable"
            assert "accepted" not in r.json()
            # the Kafka timeout, and slack: 3 s plus this run's quick round trip (the lag)
            assert elapsed < settings.request_timeout.total_seconds() + 3 + refused_s
        # backpressure answers at once: far quicker than a request that waited for Kafka
        # (a ratio within this run, so a busy machine slows both alike)
        assert refused_s < max(waited) / 2, (refused_s, waited)
        assert len(accepted) == 10

        private_broker.process.start()
        deadline = time.monotonic() + 90
        while True:
            r = send(batch)
            if r.status_code == 200:
                break
            assert r.status_code == 503, r.text
            assert time.monotonic() < deadline, f"ingest did not recover: {r.text}"
            time.sleep(float(r.headers["retry-after"]))
        body = r.json()
        assert body["accepted"] + body["duplicates"] == 20 and body["rejected"] == 0
        client.close()

    # everything reported accepted is in Kafka (maybe more: a 503 may have been written)
    in_kafka = {json.loads(v)["event_id"] for _, v in read_topic(common, topics.events)}
    assert accepted <= in_kafka
    assert len(accepted) == 30
