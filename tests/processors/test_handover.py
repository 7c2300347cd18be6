"""Hand-over races of the processor, made deterministic.

First, a partition handed over while its previous owner's last transaction is open.

This is the race behind one rebalance undercount that test_exactly_once's join/leave
scenario hit, made deterministic: the old owner
has put its input offsets into a transaction (accepted, as its generation was still
current) and then drops out of the group before it has written the transaction's state
records. The new owner is assigned the partitions at once. It must not read its state
before that transaction is decided: KIP-447's order is to fetch the committed input
offsets with ``require_stable`` first (that waits for the pending transaction), then
read the changelog and aggregates to their end, then start from exactly those offsets.
Reading state first restores it without the old owner's last transaction while the
offsets already point past it, and the events of that transaction are lost.

Second, a client that moves a partition's position past records it never returned, or
back over records it returned already: the processor must catch both before committing.
(The skips once blamed on kafka-python were records deleted by retention:
tests/processors/test_retention.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from kafkaport import BEGINNING, TopicPartition, connect
from processors.engine import PartitionEngine
from processors.runner import RunStats
from processors.settings import ProcessorSettings
from tests.fixtures.streams import generate
from tests.processors import oracle
from tests.processors.brokerio import materialise, new_processor, produce, summed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STREAM = generate(seed=23, journeys=120)


def _total(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(f"servicepulse_processor_{name}_total") or 0.0


class _Keep:
    """A group member's listener that starts at the committed offsets."""

    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {}

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        pass

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        pass


def test_new_owner_waits_for_the_old_owners_open_transaction(
    settings: ProcessorSettings,
) -> None:
    proc, _ = new_processor(settings)
    topics = proc.topics
    produce(settings, topics, STREAM)
    parts = sorted(STREAM.events)
    tps = [TopicPartition(topics.events, p) for p in parts]
    kafka = connect(settings)

    # The old owner's work: the first half of every partition through real engines.
    reader = kafka.consumer(client_id="test-old-reader")
    reader.assign(dict.fromkeys(tps, BEGINNING))
    half = {tp: len(STREAM.events[tp.partition]) // 2 for tp in tps}
    engines = {p: PartitionEngine(p, proc.ctx) for p in parts}
    for e in engines.values():
        e.finish_restore()
    deadline = time.monotonic() + 60
    while any((reader.position(tp) or 0) < half[tp] for tp in tps):
        assert time.monotonic() < deadline, "could not read the first half of the stream"
        for r in reader.poll(0.5, 10_000):
            if r.offset < half[TopicPartition(r.topic, r.partition)]:
                engines[r.partition].process([r])
    reader.close()

    # It joins the group, puts its offsets into a transaction and leaves the group.
    old = kafka.consumer(client_id="test-old", group_id=settings.group_id, session_timeout_ms=6000)
    old.subscribe([topics.events], _Keep())
    deadline = time.monotonic() + 60
    while len(old.assignment()) < len(tps):
        assert time.monotonic() < deadline, "the old owner was never assigned the partitions"
        old.poll(0.2, 1)
    producer = kafka.transactional_producer(
        client_id="test-old",
        transactional_id=f"{settings.group_id}-old",
        transaction_timeout_ms=60_000,
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.send_offsets(half, old.group_metadata(), 30)
    old.close()

    # The new owner starts and is assigned every partition at once.
    stats: list[RunStats] = []
    runner = threading.Thread(
        target=lambda: stats.append(proc.run_until_caught_up(timeout_s=120)), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 60
    while True:
        session = proc._session
        if session is not None and session.restoring:
            break
        assert time.monotonic() < deadline, "the new owner was never assigned the partitions"
        time.sleep(0.05)
    time.sleep(3)  # long enough for a restore that does not wait to have finished

    # Only now does the old owner write its state and commit.
    for p, eng in engines.items():
        out = eng.flush()
        for k, v in out.changelog:
            producer.send(topics.changelog, v, k, partition=p)
        for k, v in out.aggregates:
            producer.send(topics.aggregates, v, k, partition=p)
        for k, v in out.days:
            producer.send(topics.days, v, k)
    producer.commit_transaction(30)
    producer.close(5)

    runner.join(timeout=150)
    assert stats, "the new owner did not catch up"
    assert stats[0].events == sum(len(v) for v in STREAM.events.values()) - sum(half.values())

    cells, gauges = summed(materialise(settings, topics))
    oracle.assert_matches(STREAM, cells, gauges)


def test_records_the_client_skips_are_caught_before_a_commit(
    settings: ProcessorSettings,
) -> None:
    """A client that moves a partition's position past records it never returned (the
    consumer moved forward by hand here; librdkafka 2.12 did it by itself after cooperative
    rebalances): the processor must notice the gap before committing, move the consumer
    back and still count every event once."""
    slow = settings.model_copy(
        update={"max_batch": 20, "poll_records": 20, "commit_interval": timedelta(milliseconds=50)}
    )
    proc, registry = new_processor(slow)
    produce(slow, proc.topics, STREAM)
    tp = TopicPartition(proc.topics.events, 0)
    end = len(STREAM.events[0])
    stats: list[RunStats] = []
    runner = threading.Thread(
        target=lambda: stats.append(proc.run_until_caught_up(timeout_s=120)), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 60
    while _total(registry, "client_skips") == 0:
        assert time.monotonic() < deadline, "no skip was caught"
        assert runner.is_alive(), "the processor finished before a skip could be made"
        session = proc._session
        at = session.next_offset.get(0) if session is not None else None
        if session is not None and at is not None and at + 8 < end:
            assert session.consumer is not None  # an open session: it has a position
            session.consumer.seek(tp, at + 5)  # what the client did by itself
        time.sleep(0.05)
    runner.join(timeout=150)
    assert stats, "the processor did not catch up"
    assert _total(registry, "sessions") == 1, "a skip needs no new session"

    cells, gauges = summed(materialise(slow, proc.topics))
    oracle.assert_matches(STREAM, cells, gauges)


def test_records_the_client_delivers_again_count_once(settings: ProcessorSettings) -> None:
    """A client that moves a partition's position back over records it returned already
    (librdkafka 2.12 restarted a retained partition's fetch from its assigned offset
    after a cooperative rebalance; moved back by hand here): those records are applied
    already and must not be counted again (as duplicates or otherwise)."""
    slow = settings.model_copy(
        update={"max_batch": 5, "poll_records": 5, "commit_interval": timedelta(milliseconds=50)}
    )
    proc, registry = new_processor(slow)
    produce(slow, proc.topics, STREAM)
    tp = TopicPartition(proc.topics.events, 0)
    end = len(STREAM.events[0])
    stats: list[RunStats] = []
    runner = threading.Thread(
        target=lambda: stats.append(proc.run_until_caught_up(timeout_s=120)), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 60
    moved = 0
    while moved < 2 and runner.is_alive():
        assert time.monotonic() < deadline, "the consumer was never moved back"
        session = proc._session
        at = session.next_offset.get(0) if session is not None else None
        consumer = session.consumer if session is not None else None
        if consumer is not None and at is not None and 10 < at < end - 5:
            consumer.seek(tp, at - 10)  # what the client did by itself
            moved += 1
            time.sleep(0.2)
        time.sleep(0.01)
    runner.join(timeout=150)
    assert moved >= 1, "the processor finished before the consumer could be moved back"
    assert stats, "the processor did not catch up"
    assert stats[0].events == sum(len(v) for v in STREAM.events.values())
    assert _total(registry, "sessions") == 1

    cells, gauges = summed(materialise(slow, proc.topics))
    oracle.assert_matches(STREAM, cells, gauges)
