"""Recovery: the state of newly assigned input partitions, rebuilt from Kafka (KIP-447).

The order matters. First the group's committed input offsets are read with
``require_stable`` (a ``read_committed`` consumer asks that way): while a transaction of
the previous owner that holds offsets of these partitions is open, the broker answers
UNSTABLE_OFFSET_COMMIT and the client keeps asking, so the offsets returned, and the
outputs of every transaction that moved them, are final. Only then is the state read:
each partition's changelog partition and its partition of the aggregates topic (the
cumulative rollups, gauges and restatement logs of the live window: state too, so not
written twice; days past the restatement horizon are tombstoned there and never read
back from ``<prefix>.days``; both topics are co-partitioned with the events topic, so
a restore of some partitions reads only their state), up to
the high watermark taken at the start, ``read_committed`` (which waits out transactions
still open). Processing starts at exactly the offsets read first. Reading state first
lost such a transaction's events (tests/processors/test_handover.py).

The changelog partitions are read before the aggregates: their ``m`` record gives each
partition's watermark and final day, so the aggregates' ``r|`` records of closed days
are staged as their bytes and packed in bulk (:class:`processors.rollups.Stage`, at
most :data:`processors.rollups.STAGE_LIMIT` bytes staged at once) and those of final
days skipped; only the open day's cells are held loose. So a restore's memory is the
live window packed plus a bounded stage, however many records it reads.

:func:`load` is the one routine that turns changelog and aggregate records into engines;
the Kafka restore and the test harness both use it.

:func:`restore_steps` is the restore as a generator that yields after every request and
every poll of at most ``poll_records`` records: a session that keeps other partitions
runs it a slice at a time between its own polls, so those partitions go on committing
while the moved ones are restored (no thread: the group's consumer is used only on the
thread that polls it). :func:`restore` runs it to the end at once.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field

from contract import aggregates as agg
from contract.topics import Topics
from kafkaport.ports import Consumer, Kafka
from kafkaport.types import KafkaTimeoutError, Record, TopicPartition
from processors.context import Context
from processors.engine import PartitionEngine
from processors.errors import RestoreError
from processors.rollups import Stage

logger = logging.getLogger(__name__)

#: records per poll of the restore consumer
RESTORE_POLL = 20_000
#: one committed-offsets request waits at most this long (then it is asked again)
COMMITTED_SLICE_S = 10.0


@dataclass
class Restored:
    """Engines of restored partitions and the input offset each starts at."""

    engines: dict[int, PartitionEngine]
    starts: dict[TopicPartition, int]
    records: int = 0
    seconds: float = 0.0
    #: of ``records``, those read from the changelog (the rest: the aggregates topic)
    changelog_records: int = 0
    read: dict[str, tuple[int, int]] = field(default_factory=dict)


def load(
    engines: dict[int, PartitionEngine],
    changelog: Iterable[tuple[int, bytes | None, bytes | None]],
    aggregates: Iterable[tuple[bytes | None, bytes | None]],
    stage: Stage | None = None,
) -> int:
    """Feed changelog records ``(partition, key, value)`` and aggregate records
    ``(key, value)`` (in offset order) to the engines they belong to; returns how many
    records were read. Aggregate records of partitions not in ``engines`` are skipped;
    a tombstone deletes its key (the rollups of a day made final).

    The changelog goes first: its ``m`` record tells each engine its open and final
    day, so the ``r|`` records of closed days are staged in ``stage`` as their bytes
    (packed whenever it is full) and those of final days skipped. Without a ``stage``
    one is made for this call and packed at its end. Call :func:`finish` (with the same
    ``stage``) once everything is loaded."""
    own = stage is None
    if stage is None:
        stage = Stage()
    n = 0
    for p, key, value in changelog:
        n += 1
        if key is not None:
            engines[p].restore_changelog(key, value)
    for key, value in aggregates:
        n += 1
        if key is None:
            continue
        parts = agg.split_rollup_key(key)
        if parts is not None:
            e = engines.get(parts[0])
            if e is not None:
                e.restore_rollup(parts[1], parts[2], parts[3], value, stage)
            continue
        try:
            k = agg.decode_key(key)
        except ValueError:
            continue  # not a key of this version: nothing of the state to restore
        e = engines.get(k.partition)
        if e is not None:
            e.restore_aggregate(k, value)
    if own:
        stage.pack()
    return n


def finish(engines: dict[int, PartitionEngine], stage: Stage | None = None) -> None:
    """Pack what ``stage`` holds, then build every engine's state from what
    :func:`load` gave it."""
    if stage is not None:
        stage.pack()
    for e in engines.values():
        e.finish_restore()
    _release_freed_heap()


def _release_freed_heap() -> None:
    """Return the heap pages freed during a restore to the system.

    A restore stages the records of closed days and frees them as it packs them
    (:class:`processors.rollups.Stage`): glibc's ``malloc`` keeps the freed pages of
    millions of small records unless told (``malloc_trim``), and the process's RSS
    would stay at the restore's peak. A no-op where the C library has no
    ``malloc_trim``.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def committed_offsets(
    consumer: Consumer,
    inputs: list[TopicPartition],
    deadline: float,
    timeout_s: float,
    slice_s: float = COMMITTED_SLICE_S,
) -> Generator[None, None, dict[TopicPartition, int | None]]:
    """The group's stable committed offsets of ``inputs``; waits for an open
    transaction of their previous owner until ``deadline``, yielding after every
    request of at most ``slice_s`` seconds that timed out."""
    while True:
        left = deadline - time.monotonic()
        try:
            return consumer.committed(inputs, max(0.1, min(slice_s, left)))
        except KafkaTimeoutError as exc:
            if time.monotonic() >= deadline:
                raise RestoreError(
                    f"the committed offsets of partitions {[tp.partition for tp in inputs]} "
                    f"stayed unstable for {timeout_s}s (a transaction of their previous "
                    "owner is still open)"
                ) from exc
            logger.info(
                "waiting for an open transaction of the previous owner of partitions %s",
                [tp.partition for tp in inputs],
            )
        yield


def _read(
    kafka: Kafka,
    todo: dict[TopicPartition, int],
    marks: dict[TopicPartition, tuple[int, int]],
    parts: list[int],
    timeout_s: float,
    feed: Callable[[list[Record]], int],
    poll_records: int,
    poll_wait_s: float,
) -> Generator[None, None, int]:
    """Read ``todo`` (partition -> end offset) from their low watermarks to their ends,
    ``read_committed``, handing each poll's records to ``feed`` (yielding after each);
    returns its sum."""
    if not todo:
        return 0
    todo = dict(todo)
    n = 0
    rc = kafka.consumer(client_id="servicepulse-restore")
    try:
        rc.assign({tp: marks[tp][0] for tp in todo})
        # the limit is on a lack of progress, never on the total time: a restore that
        # keeps reading (a long history) always finishes
        progressed = time.monotonic()
        while todo:
            if time.monotonic() - progressed > timeout_s:
                behind = {str(tp): (rc.position(tp), e) for tp, e in todo.items()}
                raise RestoreError(
                    f"restoring partitions {parts} read no record for {timeout_s:g}s; "
                    f"still behind (position, end): {behind}"
                )
            recs = rc.poll(poll_wait_s, poll_records)
            if recs:
                progressed = time.monotonic()
                n += feed(recs)
            for tp in [tp for tp, end in todo.items() if (rc.position(tp) or -1) >= end]:
                del todo[tp]
            if todo:
                yield
    finally:
        rc.close()
    return n


def restore(
    kafka: Kafka,
    group: Consumer,
    topics: Topics,
    partitions: list[int],
    ctx: Context,
    timeout_s: float,
) -> Restored:
    """Restore the state of input ``partitions`` at once; see the module's description.

    ``group`` is the group member the partitions were assigned to (its committed
    offsets are the group's). Raises :class:`RestoreError` when reading makes no progress
    for ``timeout_s`` (and when committed offsets stay unstable that long).
    """
    steps = restore_steps(kafka, group, topics, partitions, ctx, timeout_s)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            got: Restored = done.value
            return got


def restore_steps(
    kafka: Kafka,
    group: Consumer,
    topics: Topics,
    partitions: list[int],
    ctx: Context,
    timeout_s: float,
    poll_records: int = RESTORE_POLL,
    committed_slice_s: float = COMMITTED_SLICE_S,
    poll_wait_s: float = 0.2,
) -> Generator[None, None, Restored]:
    """:func:`restore` a step at a time: yields after each request and each poll (of at
    most ``poll_records``, waiting at most ``poll_wait_s`` for the first); the
    generator's value is the :class:`Restored`. Closing it early closes its consumers.
    ``group`` is used only inside ``next()``, so on the thread that calls it."""
    started = time.monotonic()
    deadline = started + timeout_s
    parts = sorted(partitions)
    engines = {p: PartitionEngine(p, ctx) for p in parts}
    inputs = [TopicPartition(topics.events, p) for p in parts]
    committed = yield from committed_offsets(group, inputs, deadline, timeout_s, committed_slice_s)
    # ends from a read_uncommitted client: the high watermark, open transactions included
    hw = kafka.consumer(client_id="servicepulse-restore-hw", isolation="read_uncommitted")
    try:
        n_agg = len(hw.partitions_for(topics.aggregates, timeout_s))
        if parts and parts[-1] >= n_agg:
            raise RestoreError(
                f"{topics.aggregates} has {n_agg} partitions, fewer than {topics.events}: "
                f"the aggregates of input partition p live in its partition p "
                "(`servicepulse kafka topics` says what to do)"
            )
        state = [TopicPartition(t, p) for t in (topics.changelog, topics.aggregates) for p in parts]
        marks = hw.watermarks(state, max(1.0, deadline - time.monotonic()))
        fresh = [tp for tp, off in committed.items() if off is None]
        lows = hw.watermarks(fresh, max(1.0, deadline - time.monotonic())) if fresh else {}
    finally:
        hw.close()
    todo = {tp: end for tp, (low, end) in marks.items() if end > low}
    cl = topics.changelog
    stage = Stage()
    # the changelog first: its m records give the open and final days, so the
    # aggregates' records of closed days are staged packed as they come, never loose
    yield
    n_cl = yield from _read(
        kafka,
        {tp: end for tp, end in todo.items() if tp.topic == cl},
        marks,
        parts,
        timeout_s,
        lambda recs: load(engines, ((r.partition, r.key, r.value) for r in recs), (), stage),
        poll_records,
        poll_wait_s,
    )
    n = n_cl
    n += yield from _read(
        kafka,
        {tp: end for tp, end in todo.items() if tp.topic != cl},
        marks,
        parts,
        timeout_s,
        lambda recs: load(engines, (), ((r.key, r.value) for r in recs), stage),
        poll_records,
        poll_wait_s,
    )
    yield
    finish(engines, stage)
    starts = {tp: off for tp, off in committed.items() if off is not None}
    # never committed: from the log start (an explicit offset, not a reset)
    starts.update({tp: lows[tp][0] for tp in fresh})
    took = time.monotonic() - started
    logger.info(
        "restored partitions %s from %d records (%d changelog) in %.2fs", parts, n, n_cl, took
    )
    logger.info("partitions %s start at offsets %s", parts, [starts[tp] for tp in inputs])
    return Restored(
        engines,
        starts,
        records=n,
        seconds=took,
        changelog_records=n_cl,
        read={str(tp): marks[tp] for tp in state},
    )
