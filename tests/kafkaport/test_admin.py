"""The admin port on librdkafka, on the real broker: a group's committed offsets."""

from __future__ import annotations

import uuid

import pytest

from contract.topics import Topics
from kafkaport import TopicPartition, connect
from kafkaport.topics import ensure_topics
from tests.fixtures.kafka import Broker
from tests.processors.brokerio import drop_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_group_offsets_of_new_groups_and_after_a_transaction(kafka_broker: Broker) -> None:
    """Asking a coordinator about groups it has not loaded yet is where librdkafka's
    admin ListConsumerGroupOffsets crashed the process (SIGSEGV on NOT_COORDINATOR,
    confluentinc/librdkafka#5040): the port must answer ``None`` for each partition, and
    the committed offset once a transaction has committed one."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    settings = kafka_broker.settings(topics.prefix)
    kafka = connect(settings)
    ensure_topics(kafka, topics.specs(3))
    parts = [TopicPartition(topics.events, p) for p in range(3)]
    admin = kafka.admin()
    try:
        # many groups the coordinator has never seen, each asked at once
        for _ in range(20):
            got = admin.group_offsets(f"new-{uuid.uuid4().hex[:12]}", parts, 30)
            assert got == dict.fromkeys(parts)

        group = f"g-{uuid.uuid4().hex[:12]}"
        consumer = kafka.consumer(client_id="test-admin", group_id=group)
        producer = kafka.transactional_producer(
            client_id="test-admin",
            transactional_id=f"test-admin-{group}",
            transaction_timeout_ms=30_000,
        )
        try:
            producer.init_transactions(30)
            producer.begin_transaction()
            producer.send(topics.events, b"{}", b"k", partition=1)
            producer.send_offsets({parts[1]: 7}, consumer.group_metadata(), 30)
            producer.commit_transaction(30)
        finally:
            producer.close(5)
            consumer.close()
        assert admin.group_offsets(group, parts, 30) == {
            parts[0]: None,
            parts[1]: 7,
            parts[2]: None,
        }
        assert admin.group_offsets(group, [], 30) == {}
    finally:
        admin.close()
        drop_topics(settings, topics)
