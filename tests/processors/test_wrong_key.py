"""The key rule on a real broker: an agency's own client keying by the journey id alone.

The start goes in keyed canonically (as the API and the producer library key it); the
decision comes from a raw kafka-python producer keyed ``j9``, the journey id, as the README
used to suggest. It must be dead-lettered with reason ``wrong_key`` for the agency, not
counted as an ``unknown`` decision in another partition.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from kafka import KafkaProducer

from processors.settings import ProcessorSettings
from tests.fixtures.streams import Stream, event, local
from tests.processors.brokerio import materialise, new_processor, produce, read_all, summed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_a_record_keyed_by_the_journey_id_is_dead_lettered_not_split(
    settings: ProcessorSettings,
) -> None:
    t = local("2026-03-02 10:00")
    start = event("journey.started", t, journey="j9", channel="mfc")
    decision = event("decision.made", t + timedelta(hours=1), journey="j9", outcome="approved")
    proc, _ = new_processor(settings)
    produce(settings, proc.topics, Stream(events={0: [start]}))
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        raw.send(proc.topics.events, key=b"j9", value=json.dumps(decision).encode())
        raw.flush()
    finally:
        raw.close()
    stats = proc.run_until_caught_up(timeout_s=120)
    assert stats.events == 2 and stats.deadletters == 1
    dead = [json.loads(v or b"{}") for _k, v in read_all(settings, proc.topics.deadletter)]
    assert [(d["reason"], d["agency"], d["event_id"]) for d in dead] == [
        ("wrong_key", "soc", decision["event_id"])
    ]
    cells, gauges = summed(materialise(settings, proc.topics))
    decisions = {k: v for r in cells.values() for k, v in r.decisions.items()}
    assert decisions == {}  # not an "unknown" decision on another partition
    assert gauges["pending"] == 1  # the application is still pending, visibly
