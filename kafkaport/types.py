"""The data the Kafka port hands across: topic-partitions, records and errors.

Nothing here imports a Kafka client; the adapters translate the client's own types and
exceptions into these (``raise ... from`` keeps the client's error as the cause).
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.errors import BusError

#: An offset meaning "the partition's first record" where an offset is accepted.
BEGINNING = -2
#: An offset meaning "after the partition's last record".
END = -1


@dataclass(frozen=True, slots=True)
class Held:
    """A start a rebalance listener may give a newly assigned partition: assigned at the
    group's committed offset and paused before its first fetch, until the listener
    seeks it and resumes it (e.g. once its state is restored)."""


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """One partition of one topic (hashable; ordered by topic, then partition)."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class Record:
    """One consumed record: what every consumer of the port returns.

    A plain slotted class rather than a dataclass: one is built per consumed record,
    and this is the cheapest way to have named fields.
    """

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        #: milliseconds since the epoch (create or log-append time, as the topic says)
        self.timestamp = timestamp
        self.key = key
        self.value = value
        #: the record's headers in their order (empty: none)
        self.headers = headers or []

    def __repr__(self) -> str:  # never the key or value: they may hold personal data
        return f"Record({self.topic}[{self.partition}]@{self.offset})"


class KafkaError(BusError):
    """Kafka refused or failed an operation; the client's error is the ``__cause__``.

    Attributes:
        retriable: the same call may succeed if repeated.
        fatal: the client instance is unusable; close it and open a new one.
        requires_abort: (transactions) the open transaction must be aborted.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool = False,
        fatal: bool = False,
        requires_abort: bool = False,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.fatal = fatal
        self.requires_abort = requires_abort


class KafkaTimeoutError(KafkaError):
    """A call did not complete within its timeout (its outcome may still be decided)."""


class FencedError(KafkaError):
    """A newer producer with the same transactional id, or a newer group generation,
    took over: this instance must not commit anything any more."""


class UnknownTopicError(KafkaError):
    """The topic or partition does not exist on the broker."""


class TopicExistsError(KafkaError):
    """The topic to create exists already."""
