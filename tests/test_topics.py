"""The project's topics as the product creates them, on the real broker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from contract import bus
from contract.topics import Topics
from tests.fixtures.kafka import Broker

LOG_APPEND_TIME = 1  # the record timestamp type the broker reports for arrival time


@pytest.mark.integration
def test_events_topic_stamps_arrival_time_whatever_the_sender_claims(
    kafka_broker: Broker,
) -> None:
    """A sender's old timestamp would make time retention delete the record at the next
    check, processed or not, and would stand in for the receive time."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    settings = kafka_broker.settings(topics.prefix)
    bus.ensure_topics(settings, topics.specs(1))
    try:
        sent_at = int(time.time() * 1000)
        producer = bus.producer(settings)
        a_year_ago = sent_at - 365 * 86_400_000
        producer.send(topics.events, key=b"k", value=b"{}", timestamp_ms=a_year_ago)
        producer.flush()
        producer.close()

        consumer = bus.consumer(settings)
        try:
            tp = bus.TopicPartition(topics.events, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            deadline = time.monotonic() + 30
            records: list[Any] = []
            while not records and time.monotonic() < deadline:
                records = consumer.poll(timeout_ms=500).get(tp, [])
        finally:
            consumer.close()
        assert len(records) == 1
        rec = records[0]
        assert rec.timestamp_type == LOG_APPEND_TIME
        assert sent_at - 1000 <= rec.timestamp <= int(time.time() * 1000) + 1000
    finally:
        bus.delete_topics(
            settings, [topics.events, topics.changelog, topics.aggregates, topics.deadletter]
        )
