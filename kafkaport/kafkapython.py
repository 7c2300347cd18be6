"""The port over kafka-python: pure Python, what the agencies' producer library runs on
by default (no native library to install next to an agency's application).

Only the non-transactional parts of the port are offered here; the processor's
transactions and cooperative rebalancing run on :mod:`kafkaport.confluent`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.errors import KafkaError as KError
from kafka.errors import KafkaTimeoutError as KTimeout
from kafka.errors import UnknownTopicOrPartitionError
from kafka.partitioner.default import murmur2

from contract.settings import CommonSettings
from kafkaport.ports import DeliveryCallback, GroupMetadata, Isolation, RebalanceListener
from kafkaport.types import (
    BEGINNING,
    END,
    KafkaError,
    KafkaTimeoutError,
    Record,
    TopicPartition,
    UnknownTopicError,
)

logger = logging.getLogger(__name__)


class RepeatFilter(logging.Filter):
    """Lets one warning or error through once per ``every_s``, then says how many repeats
    it held back.

    A kafka-python client whose topic is missing (not created yet, or deleted under it)
    refreshes its metadata every ``retry_backoff_ms`` and logs ``Topic ... not found in
    cluster metadata`` each time: ten lines a second for as long as it lives. The first
    line of each kind still shows at once, and the count of the held-back ones comes with
    the next, so no error is hidden, only its repeats.
    """

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        #: (message, arguments) -> (when it was last let through, repeats held back since)
        self._seen: dict[tuple[object, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within ``every_s``; adds the held-back count otherwise."""
        if record.levelno < logging.WARNING or not isinstance(record.args, tuple):
            return True
        key = (record.msg, record.args)
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= _MAX_KINDS:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} (%d more like it in the last %g s)"
            record.args = (*record.args, last[1], self.every_s)
        return True


#: distinct messages a :class:`RepeatFilter` remembers (a topic name is part of each)
_MAX_KINDS = 10_000
#: kafka-python's loggers that repeat themselves while a topic or a broker is missing
_REPEATING_LOGGERS = ("kafka.cluster", "kafka.client", "kafka.conn", "kafka.producer.sender")
for _name in _REPEATING_LOGGERS:
    logging.getLogger(_name).addFilter(RepeatFilter())


def error(exc: BaseException, doing: str) -> KafkaError:
    """Our error for a kafka-python exception (raise it ``from exc``)."""
    kind: type[KafkaError] = KafkaError
    if isinstance(exc, KTimeout):
        kind = KafkaTimeoutError
    elif isinstance(exc, UnknownTopicOrPartitionError):
        kind = UnknownTopicError
    retriable = bool(getattr(exc, "retriable", False))
    return kind(f"{doing}: {type(exc).__name__}: {exc}", retriable=retriable)


class KafkaPython:
    """Opens kafka-python clients of the cluster in ``settings``."""

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings

    def consumer(
        self,
        *,
        client_id: str,
        group_id: str | None = None,
        isolation: Isolation = "read_committed",
        session_timeout_ms: int | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> Consumer:
        cfg: dict[str, Any] = {
            **self._settings.kafka_config(),
            "client_id": client_id,
            "group_id": group_id,
            "isolation_level": isolation,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
        }
        if session_timeout_ms is not None:
            cfg["session_timeout_ms"] = session_timeout_ms
            cfg["heartbeat_interval_ms"] = max(1000, session_timeout_ms // 4)
        if fetch_max_wait_ms is not None:
            cfg["fetch_max_wait_ms"] = fetch_max_wait_ms
        try:
            return Consumer(KafkaConsumer(**cfg))
        except KError as exc:
            raise error(exc, "cannot connect a consumer") from exc

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
        cfg: dict[str, Any] = {
            **self._settings.kafka_config(),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_in_flight_requests_per_connection": 5,
            "max_block_ms": int(max_block_s * 1000),
        }
        if batch_bytes is not None:
            cfg["batch_size"] = batch_bytes
        if request_timeout_ms is not None:
            cfg["request_timeout_ms"] = request_timeout_ms
        if delivery_timeout_ms is not None:
            # kafka-python requires delivery >= request timeout + linger
            floor = cfg.get("request_timeout_ms", 30_000) + linger_ms
            cfg["delivery_timeout_ms"] = max(delivery_timeout_ms, floor)
        try:
            return Producer(KafkaProducer(**cfg))
        except KError as exc:
            raise error(exc, "cannot connect a producer") from exc

    def transactional_producer(self, **_: Any) -> Any:
        """Not offered over kafka-python (see the module)."""
        raise NotImplementedError("transactions run on kafkaport.confluent")

    def admin(self) -> Any:
        """Not offered over kafka-python (see the module)."""
        raise NotImplementedError("administration runs on kafkaport.confluent")


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Java's (and both clients') default partitioner picks for ``key``."""
    h: int = murmur2(key)
    return (h & 0x7FFFFFFF) % partitions


def _ktp(tp: TopicPartition) -> KTopicPartition:
    return KTopicPartition(tp.topic, tp.partition)


class Consumer:
    """:class:`kafkaport.ports.Consumer` over ``kafka.KafkaConsumer`` (assign only)."""

    def __init__(self, client: KafkaConsumer) -> None:
        self._c = client

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        raise NotImplementedError("group membership runs on kafkaport.confluent")

    def assign(self, starts: Mapping[TopicPartition, int]) -> None:
        self._c.assign([_ktp(tp) for tp in starts])
        for tp, off in starts.items():
            if off == BEGINNING:
                self._c.seek_to_beginning(_ktp(tp))
            elif off == END:
                self._c.seek_to_end(_ktp(tp))
            else:
                self._c.seek(_ktp(tp), off)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition) for tp in self._c.assignment()]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._c.seek(_ktp(partition), offset)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.pause(*[_ktp(tp) for tp in partitions])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.resume(*[_ktp(tp) for tp in partitions])

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        try:
            got = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KError as exc:
            raise error(exc, "poll failed") from exc
        return [
            Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers)
            for recs in got.values()
            for r in recs
        ]

    def position(self, partition: TopicPartition) -> int | None:
        try:
            pos = self._c.position(_ktp(partition))
        except KError as exc:
            raise error(exc, f"no position of {partition}") from exc
        return None if pos is None else int(pos)

    def last_end(self, partition: TopicPartition) -> int | None:
        hw = self._c.highwater(_ktp(partition))
        return None if hw is None else int(hw)

    def committed(
        self, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, int | None]:
        try:
            return {tp: self._c.committed(_ktp(tp)) for tp in partitions}
        except KError as exc:
            raise error(exc, "cannot read committed offsets") from exc

    def watermarks(
        self, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, tuple[int, int]]:
        ktps = [_ktp(tp) for tp in partitions]
        try:
            lows = self._c.beginning_offsets(ktps)
            ends = self._c.end_offsets(ktps)
        except KError as exc:
            raise error(exc, "cannot read offsets") from exc
        return {tp: (int(lows[k]), int(ends[k])) for tp, k in zip(partitions, ktps, strict=True)}

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        return set(self._c.partitions_for_topic(topic) or ())

    def group_metadata(self) -> GroupMetadata:
        md: GroupMetadata = self._c.group_metadata()
        return md

    def member_id(self) -> str:
        return str(self._c.group_metadata().member_id or "")

    def close(self) -> None:
        self._c.close()


class Producer:
    """:class:`kafkaport.ports.Producer` over ``kafka.KafkaProducer``."""

    def __init__(self, client: KafkaProducer) -> None:
        self._p = client

    @property
    def config(self) -> dict[str, Any]:
        """The client's effective configuration."""
        cfg: dict[str, Any] = self._p.config
        return cfg

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
        try:
            future = self._p.send(
                topic,
                value=value,
                key=key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=list(headers) if headers else None,
            )
        except KError as exc:
            raise error(exc, f"cannot send to {topic}") from exc
        if on_delivery is not None:
            done = on_delivery
            future.add_callback(lambda md: done(None, md.partition, md.offset))
            future.add_errback(lambda exc: done(error(exc, "not delivered"), -1, -1))

    def flush(self, timeout_s: float) -> int:
        try:
            self._p.flush(timeout=timeout_s)
        except KTimeout:
            return 1
        except KError as exc:
            raise error(exc, "flush failed") from exc
        return 0

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        try:
            return set(self._p.partitions_for(topic) or ())
        except KError as exc:
            raise error(exc, f"no metadata of topic {topic}") from exc

    def close(self, timeout_s: float) -> None:
        self._p.close(timeout=timeout_s)


__all__ = ["Consumer", "KafkaPython", "Producer", "error", "murmur2_partition"]
