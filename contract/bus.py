"""The one module that talks to the Kafka client library (kafka-python 3.x).

Everything else imports Kafka types and factories from here, so swapping the client
means changing this file only. Note that kafka-python's constructors connect to the
bootstrap servers at once: call the factories where the component starts, not in
constructors of our own objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from contract.errors import BusError
from contract.settings import CommonSettings
from contract.topics import TopicSpec

__all__ = [
    "CommitFailedError",
    "ConsumerRebalanceListener",
    "IllegalStateError",
    "KafkaConnectionError",
    "KafkaConsumer",
    "KafkaError",
    "KafkaProducer",
    "KafkaTimeoutError",
    "OffsetAndMetadata",
    "ProducerFencedError",
    "TopicPartition",
    "admin",
    "commit_offset",
    "consumer",
    "ensure_topics",
    "producer",
]

logger = logging.getLogger(__name__)


def producer(settings: CommonSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer with ``acks=all`` (the only kind this project uses).

    Pass ``transactional_id`` for a transactional producer. Raises :class:`BusError`
    when no broker answers.
    """
    cfg: dict[str, Any] = {
        **settings.kafka_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": None,
        "max_in_flight_requests_per_connection": 5,
        "client_id": "servicepulse",
    }
    cfg.update(overrides)
    try:
        return KafkaProducer(**cfg)
    except KafkaError as exc:
        raise BusError(
            f"cannot connect a producer to Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from exc


def consumer(settings: CommonSettings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer that reads ``read_committed`` and never auto-commits."""
    cfg: dict[str, Any] = {
        **settings.kafka_config(),
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "client_id": "servicepulse",
    }
    cfg.update(overrides)
    try:
        return KafkaConsumer(*topics, **cfg)
    except KafkaError as exc:
        raise BusError(
            f"cannot connect a consumer to Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from exc


def admin(settings: CommonSettings, **overrides: Any) -> KafkaAdminClient:
    """An admin client."""
    try:
        return KafkaAdminClient(
            **{**settings.kafka_config(), "client_id": "servicepulse-admin", **overrides}
        )
    except KafkaError as exc:
        raise BusError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc


def ensure_topics(settings: CommonSettings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Existing topics are left as they are (their partition count is not changed: that
    would move keys between partitions and split state).
    """
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        new = [
            NewTopic(
                s.name,
                s.partitions,
                1 if _single_broker(client) else 3,
                topic_configs=dict(s.configs),
            )
            for s in specs
            if s.name not in existing
        ]
        if new:
            try:
                client.create_topics(new)
            except TopicAlreadyExistsError:
                logger.info("topics created concurrently by another process")
            logger.info("created topics %s", ", ".join(t.name for t in new))
        return [t.name for t in new]
    except KafkaError as exc:
        raise BusError(f"cannot create topics on {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        client.close()


def _single_broker(client: KafkaAdminClient) -> bool:
    return len(client.describe_cluster().get("brokers", [])) < 3


def commit_offset(offset: int) -> OffsetAndMetadata:
    """The offset-and-metadata value kafka-python expects for a commit of ``offset``."""
    return OffsetAndMetadata(offset, "", -1)


def delete_topics(settings: CommonSettings, names: Iterable[str]) -> None:
    """Delete topics, ignoring those that do not exist (tests clean up with this)."""
    client = admin(settings)
    try:
        client.delete_topics(list(names))
    except UnknownTopicOrPartitionError:
        pass
    finally:
        client.close()
