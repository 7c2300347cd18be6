"""The one module that talks to the Kafka client library (kafka-python 3.x).

Everything else imports Kafka types and factories from here, so swapping the client
means changing this file only. Note that kafka-python's constructors connect to the
bootstrap servers at once: call the factories where the component starts, not in
constructors of our own objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
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
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata, TopicPartition

from contract.errors import BusError
from contract.settings import CommonSettings
from contract.topics import TopicSpec

__all__ = [
    "CommitFailedError",
    "ConfigDrift",
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
    "abort_transaction",
    "admin",
    "align_topic_configs",
    "await_group_metadata",
    "commit_offset",
    "commit_transaction",
    "committed_offsets",
    "consumer",
    "ensure_topics",
    "key_partition",
    "nudge",
    "position_now",
    "producer",
    "send_offsets",
    "topic_config_drift",
]

logger = logging.getLogger(__name__)


def _not_unstable_offsets(record: logging.LogRecord) -> bool:
    """kafka-python logs every UNSTABLE_OFFSET_COMMIT answer as an error although it is
    the expected answer while a transaction is open (see :func:`committed_offsets`)."""
    return "UnstableOffsetCommitError" not in record.getMessage()


logging.getLogger("kafka.coordinator.consumer").addFilter(_not_unstable_offsets)


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


@dataclass(frozen=True, slots=True)
class ConfigDrift:
    """A config of an existing topic that differs from what the project creates it with."""

    topic: str
    key: str
    actual: str | None
    wanted: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.key} is {self.actual}, the project sets {self.wanted}"


def topic_config_drift(settings: CommonSettings, specs: Iterable[TopicSpec]) -> list[ConfigDrift]:
    """The configs of existing topics that differ from their specs.

    :func:`ensure_topics` never alters a topic that exists, so a topic created by an
    older version keeps its old configs; callers warn with these and
    :func:`align_topic_configs` sets them.
    """
    specs = [s for s in specs if s.configs]
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        wanted = [s for s in specs if s.name in existing]
        if not wanted:
            return []
        found = client.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, s.name, dict.fromkeys(s.configs))
                for s in wanted
            ],
            config_filter="all",
        ).get("topic", {})
    except KafkaError as exc:
        raise BusError(f"cannot read topic configs on {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        client.close()
    out = []
    for s in wanted:
        have = found.get(s.name, {})
        for key, value in s.configs.items():
            actual = (have.get(key) or {}).get("value")
            if actual != value:
                out.append(ConfigDrift(s.name, key, actual, value))
    return out


def align_topic_configs(settings: CommonSettings, drift: Iterable[ConfigDrift]) -> None:
    """Set the drifted configs to the project's values (incremental: other configs stay)."""
    by_topic: dict[str, dict[str, str]] = {}
    for d in drift:
        by_topic.setdefault(d.topic, {})[d.key] = d.wanted
    if not by_topic:
        return
    client = admin(settings)
    try:
        result = client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, c) for t, c in by_topic.items()],
            incremental=True,
        )
    except KafkaError as exc:
        raise BusError(f"cannot alter topic configs on {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        client.close()
    # kafka-python answers "OK" or the broker's error text per topic
    failed = {name: res for name, res in result.get("topic", {}).items() if res != "OK"}
    if failed:
        raise BusError(f"could not alter topic configs: {failed}")


def _single_broker(client: KafkaAdminClient) -> bool:
    return len(client.describe_cluster().get("brokers", [])) < 3


def commit_transaction(producer: KafkaProducer, timeout_s: float) -> None:
    """Commit the producer's open transaction, waiting at most ``timeout_s``.

    kafka-python's ``commit_transaction()`` waits without a limit; a producer whose
    commit never completes would hang its caller. Raises :class:`KafkaTimeoutError`
    (the transaction's outcome is then decided by the broker), or the commit's error.
    """
    result = producer._transaction_manager.begin_commit()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        raise KafkaTimeoutError(f"transaction commit did not complete within {timeout_s}s")


def send_offsets(
    producer: KafkaProducer, offsets: Any, group_metadata: Any, timeout_s: float
) -> None:
    """``send_offsets_to_transaction`` waiting at most ``timeout_s`` (kafka-python waits
    without a limit). Pass the consumer's ``group_metadata()`` so a consumer of a stale
    generation cannot commit (KIP-447)."""
    if not producer._transaction_manager:
        raise IllegalStateError("send_offsets needs a transactional producer")
    result = producer._transaction_manager.send_offsets_to_transaction(offsets, group_metadata)
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        raise KafkaTimeoutError(f"sending offsets to the transaction took over {timeout_s}s")


def committed_offsets(
    consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int | None]:
    """The group's committed offsets of ``partitions`` (``None``: never committed).

    A ``read_committed`` consumer asks with ``require_stable`` (KIP-447): while a
    transaction that holds offsets of these partitions is open, the broker answers
    UNSTABLE_OFFSET_COMMIT and this keeps asking until the transaction is decided, so
    the offsets returned and the outputs of every transaction that committed them are
    final. Raises :class:`KafkaTimeoutError` after ``timeout_s``.
    """
    if not partitions:
        return {}
    found = consumer._coordinator.fetch_committed_offsets(
        list(partitions), timeout_ms=int(timeout_s * 1000)
    )
    return {tp: (found[tp].offset if tp in found else None) for tp in partitions}


def abort_transaction(producer: KafkaProducer, timeout_s: float) -> None:
    """Abort the producer's open transaction, waiting at most ``timeout_s``."""
    result = producer._transaction_manager.begin_abort()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        raise KafkaTimeoutError(f"transaction abort did not complete within {timeout_s}s")


def key_partition(key: bytes, partitions: int) -> int:
    """The partition kafka-python's default partitioner (and Java's) picks for ``key``.

    murmur2 in pure Python costs ~15 microseconds per key; callers that write the same
    keys again and again (compacted topics) memoise this and pass the partition.
    """
    h: int = murmur2(key)
    return (h & 0x7FFFFFFF) % partitions


def nudge(client: Any) -> None:
    """Wake the IO thread of a kafka-python 3 client (consumer or admin).

    A guard against lost wake-ups in kafka-python 3.0.x, whose caller threads wait on
    the client's IO thread (``poll`` -> ``send_fetches`` was seen waiting forever).
    Calling this periodically from a watchdog thread is harmless when nothing is stuck.
    """
    net = getattr(client, "_net", None)
    wakeup = getattr(net, "wakeup", None)
    if wakeup is not None:
        wakeup()


def await_group_metadata(consumer: KafkaConsumer, timeout_s: float) -> bool:
    """After ``subscribe()``, wait until the consumer's group coordinator has metadata of
    every subscribed topic; ``False`` if it has not within ``timeout_s``.

    kafka-python 3.0.x records the partitions a leader assigned from a snapshot it only
    builds on the next metadata update after ``subscribe()``. A join before that update
    records an empty snapshot, and the update that follows makes the member rejoin: a
    second rebalance, and a second state restore, on every start. Call this between
    ``subscribe()`` and the first ``poll()``.
    """
    topics = set(consumer.subscription() or ())
    deadline = time.monotonic() + timeout_s
    future = consumer._cluster.request_update()
    while True:
        snapshot = consumer._coordinator._metadata_snapshot
        if future.is_done and all(snapshot.get(t) for t in topics):
            return True
        if time.monotonic() > deadline:
            return False
        if future.is_done:  # updated, and the topic still unknown: ask again shortly
            time.sleep(0.2)
            future = consumer._cluster.request_update()
        nudge(consumer)
        time.sleep(0.02)


def position_now(consumer: KafkaConsumer, partition: TopicPartition) -> int | None:
    """The consumer's fetch position of an assigned partition as it stands (``None``
    while unresolved); unlike ``position()`` this never asks the broker."""
    state = consumer._subscription.assignment.get(partition)
    pos = state.position if state is not None else None
    return None if pos is None else int(pos.offset)


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
