"""Aggregate records land where they always did: librdkafka's murmur2 partitioner
(the processor's) picks the partition Java's and kafka-python's default partitioner picks,
so a compacted key written by an older version is overwritten, not duplicated."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2

from contract.settings import CommonSettings
from kafkaport import BEGINNING, TopicPartition, connect
from tests.fixtures.kafka import TopicFactory

pytestmark = [pytest.mark.integration]


def test_the_producer_partitions_keys_like_the_java_default(topic_factory: TopicFactory) -> None:
    topics, common = topic_factory()
    settings = CommonSettings(kafka_bootstrap=common.kafka_bootstrap)
    kafka = connect(settings)
    rnd = random.Random(1)
    keys = [rnd.randbytes(rnd.randrange(1, 90)) for _ in range(300)]
    producer = kafka.producer(client_id="test-partitioning")
    for k in keys:
        producer.send(topics.aggregates, b"v", k)
    assert producer.flush(30) == 0
    producer.close(5)
    consumer = kafka.consumer(client_id="test-partitioning")
    try:
        parts = sorted(consumer.partitions_for(topics.aggregates, 30))
        assert len(parts) > 1
        tps = [TopicPartition(topics.aggregates, q) for q in parts]
        consumer.assign(dict.fromkeys(tps, BEGINNING))
        seen: dict[bytes, int] = {}
        while len(seen) < len(set(keys)):
            for r in consumer.poll(1.0, 1000):
                assert r.key is not None
                seen[r.key] = r.partition
    finally:
        consumer.close()
    for k, q in seen.items():
        assert q == (murmur2(k) & 0x7FFFFFFF) % len(parts)
