"""Keyed records land where they always did: librdkafka's murmur2 partitioner (the
processor's, for ClosedDay records of ``<prefix>.days``) picks the partition Java's and
kafka-python's default partitioner picks, so a compacted key written by an older version
is overwritten, not duplicated. (Changelog and aggregate records go to the input
partition's number.)"""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2

from contract import aggregates as agg
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import BEGINNING, TopicPartition, connect
from processors import recovery
from processors.context import Context
from processors.settings import ProcessorSettings
from tests.fixtures.kafka import TopicFactory, end_total, read_topic
from tests.fixtures.streams import generate
from tests.processors.brokerio import new_processor, produce

pytestmark = [pytest.mark.integration]

STREAM = generate(seed=31, journeys=200)


def test_the_producer_partitions_keys_like_the_java_default(topic_factory: TopicFactory) -> None:
    topics, common = topic_factory()
    settings = CommonSettings(kafka_bootstrap=common.kafka_bootstrap)
    kafka = connect(settings)
    rnd = random.Random(1)
    keys = [rnd.randbytes(rnd.randrange(1, 90)) for _ in range(300)]
    producer = kafka.producer(client_id="test-partitioning")
    for k in keys:
        producer.send(topics.days, b"v", k)
    assert producer.flush(30) == 0
    producer.close(5)
    consumer = kafka.consumer(client_id="test-partitioning")
    try:
        parts = sorted(consumer.partitions_for(topics.days, 30))
        assert len(parts) > 1
        tps = [TopicPartition(topics.days, q) for q in parts]
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


def test_a_restore_reads_only_the_state_of_its_partitions(
    settings: ProcessorSettings, ctx: Context
) -> None:
    """The aggregates of input partition p are in partition p (as the changelog's are):
    restoring two partitions reads those two of each topic, and every record there, and
    no other."""
    topics = Topics(settings.topic_prefix)
    produce(settings, topics, STREAM)
    proc, _ = new_processor(settings)
    proc.run_until_caught_up(timeout_s=120)
    for r in read_topic(settings, topics.aggregates):
        assert r.key is not None
        assert r.partition == agg.input_partition(r.key)

    kafka = connect(settings)
    group = kafka.consumer(client_id="test-restore", group_id=settings.group_id)
    try:
        got = recovery.restore(kafka, group, topics, [2, 7], ctx, 60)
    finally:
        group.close()
    assert set(got.read) == {
        f"{t}[{p}]" for t in (topics.changelog, topics.aggregates) for p in (2, 7)
    }
    of_aggregates = got.records - got.changelog_records
    offsets = sum(end - low for k, (low, end) in got.read.items() if topics.aggregates in k)
    assert 0 < of_aggregates <= offsets < end_total(settings, topics.aggregates) / 3
    assert got.changelog_records > 0
    assert sorted(got.engines) == [2, 7]
