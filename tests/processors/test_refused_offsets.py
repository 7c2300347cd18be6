"""A transaction whose offsets the group refuses keeps its records for the next one.

Pure logic of :class:`processors.checkpoint.Checkpoint` over a recording producer (no
broker; the same path on a real broker runs in test_exactly_once's joins and leaves,
where rebalances refuse commits now and then).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from contract.topics import Topics
from kafkaport.ports import TransactionalProducer
from kafkaport.types import KafkaError, TopicPartition
from processors.checkpoint import MAX_REFUSALS, Checkpoint, OffsetsRefused
from processors.engine import DeadLetterRecord, Output, PartitionEngine
from processors.metrics import build_metrics

TOPICS = Topics("t")


class _Producer:
    """Records what each transaction wrote; refuses the next ``refuse`` offset sends."""

    def __init__(self) -> None:
        self.refuse = 0
        self.open: list[tuple[str, bytes | None, int | None]] = []
        self.open_offsets: dict[TopicPartition, int] = {}
        self.committed: list[tuple[list[tuple[str, bytes | None, int | None]], dict[Any, int]]] = []
        self.aborted = 0

    def begin_transaction(self) -> None:
        self.open, self.open_offsets = [], {}

    def send(self, topic: str, value: bytes | None, key: bytes | None, **kw: Any) -> None:
        self.open.append((topic, key, kw.get("partition")))

    def send_offsets(self, offsets: Mapping[TopicPartition, int], group: Any, t: float) -> None:
        if self.refuse:
            self.refuse -= 1
            raise KafkaError("ILLEGAL_GENERATION", requires_abort=True)
        self.open_offsets = dict(offsets)

    def commit_transaction(self, t: float) -> None:
        self.committed.append((self.open, self.open_offsets))

    def abort_transaction(self, t: float) -> None:
        self.aborted += 1


class _Engine:
    """Hands out the outputs queued for it, one list per flush."""

    def __init__(self, *flushes: Output) -> None:
        self.flushes = list(flushes)

    @property
    def dirty(self) -> bool:
        return bool(self.flushes)

    def flush(self) -> Output:
        return self.flushes.pop(0) if self.flushes else Output()


def _out(p: int, n: int) -> Output:
    return Output(
        changelog=[(f"c{p}.{n}".encode(), b"v")], aggregates=[(f"a{p}.{n}".encode(), b"v")]
    )


def _setup() -> tuple[_Producer, Checkpoint]:
    prod = _Producer()
    cp = Checkpoint(
        cast(TransactionalProducer, prod), TOPICS, build_metrics(CollectorRegistry()), 5.0
    )
    return prod, cp


def _tp(p: int) -> TopicPartition:
    return TopicPartition(TOPICS.events, p)


def _commit(cp: Checkpoint, engines: dict[int, _Engine]) -> int:
    return cp.commit(cast(dict[int, PartitionEngine], engines), lambda: cast(Any, "group"))


def test_refused_records_and_offsets_go_first_in_the_next_transaction() -> None:
    prod, cp = _setup()
    engines = {0: _Engine(_out(0, 1), _out(0, 2)), 1: _Engine(_out(1, 1))}
    cp.begin()
    cp.dead_letters(0, [DeadLetterRecord(b"d0", b"bad", "bad_format")])
    cp.processed(_tp(0), 10)
    cp.processed(_tp(1), 7)
    prod.refuse = 1
    with pytest.raises(OffsetsRefused):
        _commit(cp, engines)
    assert prod.aborted == 1 and not prod.committed
    assert cp.pending(cast(dict[int, PartitionEngine], {}))  # the kept records are pending

    cp.begin()
    cp.processed(_tp(0), 12)
    _commit(cp, engines)
    written, offsets = prod.committed[0]
    assert offsets == {_tp(0): 12, _tp(1): 7}
    keys = [k for _, k, _ in written]
    # the refused transaction's dead letter and outputs, then the newer flush
    assert keys == [b"d0", b"c0.1", b"a0.1", b"c1.1", b"a1.1", b"c0.2", b"a0.2"]
    assert all(k is not None and p == int(k[1:2]) for t, k, p in written if t != TOPICS.deadletter)


def test_a_partition_revoked_after_a_refusal_takes_its_records_and_offsets_along() -> None:
    prod, cp = _setup()
    engines = {0: _Engine(_out(0, 1)), 1: _Engine(_out(1, 1))}
    cp.begin()
    cp.processed(_tp(0), 10)
    cp.processed(_tp(1), 7)
    prod.refuse = 1
    with pytest.raises(OffsetsRefused):
        _commit(cp, engines)
    cp.forget([1])
    del engines[1]
    _commit(cp, engines)
    written, offsets = prod.committed[0]
    assert offsets == {_tp(0): 10}
    assert [k for _, k, _ in written] == [b"c0.1", b"a0.1"]


def test_refusals_past_the_limit_are_errors() -> None:
    prod, cp = _setup()
    engines = {0: _Engine(*(_out(0, i) for i in range(MAX_REFUSALS + 1)))}
    prod.refuse = MAX_REFUSALS + 1
    for i in range(MAX_REFUSALS):
        cp.begin()
        cp.processed(_tp(0), i + 1)
        with pytest.raises(OffsetsRefused):
            _commit(cp, engines)
    cp.begin()
    cp.processed(_tp(0), 99)
    with pytest.raises(KafkaError) as err:
        _commit(cp, engines)
    assert not isinstance(err.value, OffsetsRefused)
    cp.abort()
    assert not cp.pending(cast(dict[int, PartitionEngine], {}))
