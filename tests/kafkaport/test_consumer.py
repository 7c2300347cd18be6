"""The consumer port on librdkafka, on the real broker: when poll returns, held partitions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping

import pytest

from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import BEGINNING, Held, Record, TopicPartition, connect
from kafkaport.topics import ensure_topics
from tests.fixtures.kafka import Broker
from tests.processors.brokerio import drop_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _fill(
    kafka_broker: Broker, partitions: int, per_partition: int
) -> tuple[Topics, CommonSettings]:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    settings = kafka_broker.settings(topics.prefix)
    kafka = connect(settings)
    ensure_topics(kafka, topics.specs(partitions))
    producer = kafka.producer(client_id="test-consumer")
    for p in range(partitions):
        for i in range(per_partition):
            producer.send(topics.events, b"{}", f"k{i}".encode(), partition=p)
    assert producer.flush(30) == 0
    producer.close(5)
    return topics, settings


def test_poll_returns_as_soon_as_records_are_there(kafka_broker: Broker) -> None:
    """librdkafka's batch consume waits for ``max_records`` or the whole timeout; the
    port's poll must not: a live reader would add the timeout to every record's latency."""
    topics, settings = _fill(kafka_broker, 1, 1)
    kafka = connect(settings)
    consumer = kafka.consumer(client_id="test-consumer")
    producer = kafka.producer(client_id="test-consumer")
    try:
        consumer.assign({TopicPartition(topics.events, 0): BEGINNING})
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = consumer.poll(1.0, 1000)  # the first fetch may take a moment
        assert len(got) == 1, "the first record did not come within 30 s"
        # a live record arrives while the reader waits: far fewer than max_records
        # and a 20 s timeout, yet poll must be back once it is there
        timer = threading.Timer(0.5, lambda: producer.send(topics.events, b"{}", b"k"))
        timer.start()
        started = time.monotonic()
        more = consumer.poll(20.0, 1000)
        timer.join()
        assert [r.offset for r in more] == [1]
        assert time.monotonic() - started < 10, "poll waited for max_records"
        started = time.monotonic()
        assert consumer.poll(0.3, 1000) == []  # nothing there: the timeout holds
        assert time.monotonic() - started >= 0.25
    finally:
        producer.close(5)
        consumer.close()
        drop_topics(settings, topics)


class _HoldOne:
    """Holds partition 1 of what the group assigns; the others start as committed."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned = threading.Event()

    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int | Held]:
        self.assigned.set()
        return {tp: Held() for tp in partitions if tp.partition == 1}

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        pass

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        pass


def test_a_held_partition_yields_nothing_until_sought_and_resumed(kafka_broker: Broker) -> None:
    topics, settings = _fill(kafka_broker, 2, 20)
    kafka = connect(settings)
    consumer = kafka.consumer(client_id="test-consumer", group_id=f"g-{topics.prefix}")
    listener = _HoldOne(topics.events)
    try:
        consumer.subscribe([topics.events], listener)
        seen: dict[int, list[int]] = {0: [], 1: []}
        deadline = time.monotonic() + 60
        while len(seen[0]) < 20 and time.monotonic() < deadline:
            for r in consumer.poll(0.2, 100):
                seen[r.partition].append(r.offset)
        assert listener.assigned.is_set()
        assert seen[0] == list(range(20))
        # a record fetched before the pause took hold may have come; nothing after it
        for _ in range(5):
            for r in consumer.poll(0.2, 100):
                seen[r.partition].append(r.offset)
        assert len(seen[1]) < 20, "the held partition was read to its end"
        held = TopicPartition(topics.events, 1)
        consumer.seek(held, 0)
        consumer.resume([held])
        again: list[int] = []
        deadline = time.monotonic() + 30
        while len(again) < 20 and time.monotonic() < deadline:
            again += [r.offset for r in consumer.poll(0.2, 100) if r.partition == 1]
        assert again == list(range(20))
    finally:
        consumer.close()
        drop_topics(settings, topics)
