"""The Kafka port: what the project's components need of a Kafka client, typed.

Components hold these Protocols; an adapter (:mod:`kafkaport.confluent`,
:mod:`kafkaport.kafkapython`) implements them over one client library. Every method that
talks to a broker takes or has a timeout, and raises :class:`kafkaport.types.KafkaError`
(or a subclass), never the client's own exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, Protocol

from kafkaport.types import Held, KafkaError, Record, TopicPartition

Isolation = Literal["read_committed", "read_uncommitted"]
#: Called once per record sent: ``(None, partition, offset)`` when the broker
#: acknowledged it, ``(error, -1, -1)`` when it was not delivered.
DeliveryCallback = Callable[[KafkaError | None, int, int], None]


class GroupMetadata(Protocol):
    """A consumer's group generation, opaque; it proves the generation to a transaction."""


class RebalanceListener(Protocol):
    """What a group member is told when partitions move (cooperative: only those that
    move). Called from inside :meth:`Consumer.poll` on the polling thread; an exception
    raised here is raised by that ``poll``."""

    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int | Held]:
        """Newly assigned partitions; returns the offset each starts at (a partition
        left out starts at the group's committed offset), or :class:`Held`. A record
        of a held partition fetched before its pause took hold may still come from
        :meth:`Consumer.poll`: the listener's seek before the resume reads it again."""
        ...

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions about to move to another member (still owned during the call)."""
        ...

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        """Partitions already owned by another member (this one was evicted)."""
        ...


class Consumer(Protocol):
    """A consumer that never commits by itself (offsets commit in transactions)."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        """Join the group for ``topics``."""
        ...

    def assign(self, starts: Mapping[TopicPartition, int]) -> None:
        """Read exactly these partitions from these offsets (no group management);
        offsets may be :data:`~kafkaport.types.BEGINNING` or :data:`~kafkaport.types.END`."""
        ...

    def assignment(self) -> list[TopicPartition]:
        """The partitions assigned now."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Move an assigned partition's position."""
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop fetching these assigned partitions."""
        ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch these paused partitions again, from their positions."""
        ...

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        """Up to ``max_records`` records (each partition's in offset order); waits at
        most ``timeout_s`` for the first. Runs rebalance callbacks."""
        ...

    def position(self, partition: TopicPartition) -> int | None:
        """The next offset this consumer returns of an assigned partition, as it stands
        (``None`` while unknown); past transaction markers once read."""
        ...

    def last_end(self, partition: TopicPartition) -> int | None:
        """The end offset of an assigned partition as the last fetch saw it (no request;
        ``None`` before the first fetch)."""
        ...

    def committed(
        self, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (``None``: never committed). A
        ``read_committed`` consumer waits while a transaction holding offsets of these
        partitions is open (KIP-447 stable offsets); raises
        :class:`~kafkaport.types.KafkaTimeoutError` if it stays open."""
        ...

    def watermarks(
        self, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Each partition's (log start, end); the end of a ``read_committed`` consumer is
        the last stable offset, of a ``read_uncommitted`` one the high watermark."""
        ...

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        """The topic's partitions (empty if the topic does not exist)."""
        ...

    def group_metadata(self) -> GroupMetadata:
        """This member's group metadata, for :meth:`TransactionalProducer.send_offsets`."""
        ...

    def member_id(self) -> str:
        """This member's id in its group (empty before the first join)."""
        ...

    def close(self) -> None:
        """Leave the group (revoking its partitions) and close."""
        ...


class Producer(Protocol):
    """An idempotent producer with ``acks=all``."""

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one record (partition by the key's murmur2 hash unless given), with
        ``headers`` if any."""
        ...

    def flush(self, timeout_s: float) -> int:
        """Wait for every queued record's answer; returns how many are still queued."""
        ...

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        """The topic's partitions (empty if the topic does not exist)."""
        ...

    def close(self, timeout_s: float) -> None:
        """Flush for at most ``timeout_s``, then close."""
        ...


class TransactionalProducer(Producer, Protocol):
    """A producer with a transactional id: outputs and input offsets commit together."""

    def init_transactions(self, timeout_s: float) -> None:
        """Fence earlier producers with this id and abort their open transaction."""
        ...

    def begin_transaction(self) -> None:
        """Start a transaction (local; nothing is sent until the first record)."""
        ...

    def send_offsets(
        self,
        offsets: Mapping[TopicPartition, int],
        group: GroupMetadata,
        timeout_s: float,
    ) -> None:
        """Add the consumer's next offsets to the transaction; a member of a stale
        generation is refused (:class:`~kafkaport.types.FencedError`)."""
        ...

    def commit_transaction(self, timeout_s: float) -> None:
        """Flush and commit the open transaction."""
        ...

    def abort_transaction(self, timeout_s: float) -> None:
        """Abort the open transaction."""
        ...


class Admin(Protocol):
    """Topic and group administration."""

    def list_topics(self, timeout_s: float) -> set[str]:
        """The names of the cluster's topics."""
        ...

    def broker_count(self, timeout_s: float) -> int:
        """How many brokers the cluster has."""
        ...

    def create_topics(
        self,
        topics: Sequence[tuple[str, int, Mapping[str, str]]],
        replication: int,
        timeout_s: float,
    ) -> None:
        """Create topics (name, partitions, configs); one that exists already is skipped."""
        ...

    def topic_configs(
        self, topics: Sequence[str], timeout_s: float
    ) -> dict[str, dict[str, str | None]]:
        """Every config of each topic (its value, ``None`` if unset)."""
        ...

    def alter_topic_configs(
        self, configs: Mapping[str, Mapping[str, str]], timeout_s: float
    ) -> None:
        """Set these configs (incrementally: others stay as they are)."""
        ...

    def delete_topics(self, topics: Sequence[str], timeout_s: float) -> None:
        """Delete topics; ones that do not exist are ignored."""
        ...

    def delete_records(self, before: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Move each partition's log start to the offset (what retention does)."""
        ...

    def partition_leaders(
        self, topics: Sequence[str], timeout_s: float
    ) -> dict[TopicPartition, int]:
        """The leader broker of every partition of ``topics`` (-1: none yet)."""
        ...

    def list_groups(self, timeout_s: float) -> list[str]:
        """The ids of the cluster's consumer groups."""
        ...

    def delete_groups(self, groups: Sequence[str], timeout_s: float) -> None:
        """Delete consumer groups (empty ones; others fail)."""
        ...

    def group_offsets(
        self, group: str, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, int | None]:
        """A group's committed offsets of ``partitions`` (``None``: none committed);
        stable: waits out open transactions."""
        ...

    def close(self) -> None:
        """Close the client."""
        ...


class Kafka(Protocol):
    """Opens clients of one cluster (one adapter, one client library)."""

    def consumer(
        self,
        *,
        client_id: str,
        group_id: str | None = None,
        isolation: Isolation = "read_committed",
        session_timeout_ms: int | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> Consumer:
        """A consumer that reads ``isolation`` and never auto-commits; in a group,
        with cooperative incremental rebalancing."""
        ...

    def producer(
        self,
        *,
        client_id: str,
        linger_ms: int = 5,
        batch_bytes: int | None = None,
        delivery_timeout_ms: int | None = None,
        request_timeout_ms: int | None = None,
        max_block_s: float = 30.0,
    ) -> Producer:
        """An idempotent producer with ``acks=all``; ``send`` waits at most
        ``max_block_s`` for room in a full buffer (then raises a timeout)."""
        ...

    def transactional_producer(
        self,
        *,
        client_id: str,
        transactional_id: str,
        transaction_timeout_ms: int,
        linger_ms: int = 5,
        batch_bytes: int | None = None,
        report_deliveries: bool = False,
        max_message_bytes: int | None = None,
    ) -> TransactionalProducer:
        """A transactional producer (call :meth:`TransactionalProducer.init_transactions`).

        ``on_delivery`` of its ``send`` is called for failures only, unless
        ``report_deliveries`` (then also with the offset of each record written).
        ``max_message_bytes``: the largest record it may send (the client's default,
        about 1 MB, otherwise); the topic's ``max.message.bytes`` must allow it too."""
        ...

    def admin(self) -> Admin:
        """An admin client."""
        ...
