"""Moving the aggregates topic of older versions to one partition per input partition.

Up to 2026-12 the processor wrote ``<prefix>.aggregates`` (3 partitions, each key in
the partition of its murmur2 hash). A restore of one input partition then read the whole
topic to find that partition's keys, so a group member that joined or stayed through a
leave read most of the state there is. The processor now writes
``<prefix>.aggregates.v2``, co-partitioned with the events topic like the changelog:
the records of input partition *p* in partition *p* (docs/AGGREGATES.md, "Topics").

:func:`migrate_aggregates` copies the old topic into the new one record by record, in
offset order per old partition (so every key keeps the order of its values, tombstones
included: compaction of the new topic ends with the same latest value per key) and in
transactions, then deletes the old topic. It is what ``servicepulse kafka topics`` (the
compose file's one-shot ``topics`` service) and ``servicepulse up`` do before any
processor starts; a processor refuses to start while the old topic exists
(:func:`layout_problem`), so nothing writes the new topic before the copy is whole.

A copy cut short (a crash, a broker restart) leaves the old topic in place: running it
again copies everything again, which ends in the same latest values. Processors of the
older version must be stopped first: when the old topic grows during the copy, the copy
reads the new part too, and after :data:`ROUNDS` rounds that each found more it stops
with an error and deletes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from contract import aggregates as agg
from contract.errors import ServicePulseError
from contract.topics import Topics
from kafkaport.ports import Consumer, Kafka, TransactionalProducer
from kafkaport.types import KafkaError, TopicPartition

logger = logging.getLogger(__name__)

#: records per transaction of the copy
TRANSACTION_RECORDS = 50_000
#: rounds of reading what the old topic gained since the last one, at most
ROUNDS = 3
#: admin and metadata calls wait at most this long
TIMEOUT_S = 30.0
#: the copy fails when it reads nothing new for this long while behind the end
IDLE_S = 60.0


class MigrationError(ServicePulseError):
    """The old aggregates topic could not be moved; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Migrated:
    """What one migration did."""

    #: records copied (tombstones included)
    records: int
    #: records of the old topic whose key names no input partition (not copied)
    skipped: int
    seconds: float


def layout_problem(kafka: Kafka, topics: Topics) -> str | None:
    """Why a processor must not start on these topics, or None.

    Two cases: the old aggregates topic still exists (its state would be lost: the
    processor restores from the new one), and the new one has other partitions than the
    events topic (the records of input partition *p* go to partition *p*)."""
    admin = kafka.admin()
    try:
        existing = admin.list_topics(TIMEOUT_S)
    finally:
        admin.close()
    if topics.legacy_aggregates in existing:
        return (
            f"the topic {topics.legacy_aggregates} of an older version exists: stop any "
            "processor of that version, then run `servicepulse kafka topics`, which moves "
            f"its records to {topics.aggregates} and deletes it"
        )
    if topics.aggregates not in existing or topics.events not in existing:
        return None  # created by ensure_topics with the right partitions
    c = kafka.consumer(client_id="servicepulse-layout", isolation="read_uncommitted")
    try:
        n_events = len(c.partitions_for(topics.events, TIMEOUT_S))
        n_agg = len(c.partitions_for(topics.aggregates, TIMEOUT_S))
    finally:
        c.close()
    if n_agg != n_events:
        return (
            f"{topics.aggregates} has {n_agg} partitions and {topics.events} {n_events}: "
            "the processor writes the aggregates of input partition p to partition p. "
            f"It must have {n_events}: with processors stopped, delete it and the "
            "changelog, reset the processor group's offsets, and start again to rebuild "
            "them from the events"
        )
    return None


def migrate_aggregates(
    kafka: Kafka, topics: Topics, progress: Callable[[int, int], None] | None = None
) -> Migrated | None:
    """Copy ``topics.legacy_aggregates`` into ``topics.aggregates`` (which must exist)
    and delete it; None when there is no old topic. ``progress(copied, total)`` is
    called once with ``copied`` 0 before the copy starts and after every transaction
    (``total``: the old topic's records at the start of the current round, an upper
    bound as compaction may have removed some)."""
    started = time.monotonic()
    old, new = topics.legacy_aggregates, topics.aggregates
    admin = kafka.admin()
    try:
        existing = admin.list_topics(TIMEOUT_S)
    finally:
        admin.close()
    if old not in existing:
        return None
    if new not in existing:
        raise MigrationError(f"{new} does not exist: create the topics first")
    reader = kafka.consumer(client_id="servicepulse-migrate", isolation="read_committed")
    producer = kafka.transactional_producer(
        client_id="servicepulse-migrate",
        transactional_id=f"servicepulse-migrate-{topics.prefix}",
        transaction_timeout_ms=120_000,
        linger_ms=20,
    )
    copy = _Copy(reader, producer, new, progress)
    try:
        producer.init_transactions(TIMEOUT_S)
        n_new = len(reader.partitions_for(new, TIMEOUT_S))
        olds = [TopicPartition(old, q) for q in sorted(reader.partitions_for(old, TIMEOUT_S))]
        marks = reader.watermarks(olds, TIMEOUT_S)
        done = {tp: low for tp, (low, _) in marks.items()}
        reader.assign(done)
        if progress is not None:
            progress(0, sum(end - low for low, end in marks.values()))
        for round_no in range(1, ROUNDS + 2):
            ends = {tp: end for tp, (_, end) in marks.items()}
            if all(done[tp] >= end for tp, end in ends.items()):
                break
            if round_no > ROUNDS:
                raise MigrationError(
                    f"{old} kept growing while it was copied ({ROUNDS} rounds): a processor "
                    "of an older version still writes it. Stop it and run "
                    "`servicepulse kafka topics` again (nothing was deleted)"
                )
            for tp, off in done.items():
                reader.seek(tp, off)
            copy.until(ends, done, n_new, sum(end - low for low, end in marks.values()))
            marks = reader.watermarks(olds, TIMEOUT_S)
    except KafkaError as exc:
        raise MigrationError(
            f"moving {old} to {new} failed ({exc}); nothing was deleted: run "
            "`servicepulse kafka topics` again once the broker is reachable"
        ) from exc
    finally:
        reader.close()
        producer.close(10.0)
    admin = kafka.admin()
    try:
        admin.delete_topics([old], TIMEOUT_S)
    finally:
        admin.close()
    took = time.monotonic() - started
    logger.info(
        "moved %d records of %s to %s in %.1fs; deleted %s", copy.copied, old, new, took, old
    )
    if copy.skipped:
        logger.warning(
            "%d records of %s had a key of no known kind (not copied)", copy.skipped, old
        )
    return Migrated(copy.copied, copy.skipped, took)


class _Copy:
    """The copy's reader, its transactions and its counts."""

    def __init__(
        self,
        reader: Consumer,
        producer: TransactionalProducer,
        topic: str,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self._reader = reader
        self._producer = producer
        self._topic = topic
        self._progress = progress
        self._failures: list[str] = []
        self.copied = 0
        self.skipped = 0

    def _failed(self, err: KafkaError | None, _partition: int, _offset: int) -> None:
        if err is not None:
            self._failures.append(str(err))

    def until(
        self, ends: dict[TopicPartition, int], done: dict[TopicPartition, int], n: int, total: int
    ) -> None:
        """Copy from the reader's positions up to ``ends`` (records at or past an end
        wait for the next round); ``done`` follows the positions reached."""
        r, p = self._reader, self._producer
        in_tx = 0
        progressed = time.monotonic()
        while any(done[tp] < end for tp, end in ends.items()):
            if time.monotonic() - progressed > IDLE_S:
                behind = {str(tp): (done[tp], end) for tp, end in ends.items() if done[tp] < end}
                raise KafkaError(f"read nothing for {IDLE_S:.0f}s; behind (at, end): {behind}")
            recs = r.poll(0.5, 5_000)
            if recs:
                progressed = time.monotonic()
            for rec in recs:
                tp = TopicPartition(rec.topic, rec.partition)
                if rec.offset >= ends[tp]:
                    continue
                target = agg.input_partition(rec.key)
                if target is None or target >= n:
                    self.skipped += 1
                    continue
                if not in_tx:
                    p.begin_transaction()
                p.send(self._topic, rec.value, rec.key, partition=target, on_delivery=self._failed)
                in_tx += 1
                self.copied += 1
                if in_tx >= TRANSACTION_RECORDS:
                    self._commit(total)
                    in_tx = 0
            for tp, end in ends.items():
                pos = r.position(tp)
                if pos is not None:
                    done[tp] = max(done[tp], min(pos, end))
        if in_tx:
            self._commit(total)

    def _commit(self, total: int) -> None:
        self._producer.commit_transaction(TIMEOUT_S)
        if self._failures:
            raise KafkaError(f"{len(self._failures)} records not written: {self._failures[0]}")
        if self._progress is not None:
            self._progress(self.copied, total)


def migrate_with_progress(kafka: Kafka, topics: Topics, console: Console) -> Migrated | None:
    """:func:`migrate_aggregates`, saying what it does on ``console`` (stderr of the
    command): a line when it starts, the count every transaction, a summary."""
    old, new = topics.legacy_aggregates, topics.aggregates

    def progress(copied: int, total: int) -> None:
        if copied == 0:
            console.print(
                f"moving {old} (the layout of older versions, about {total:,} records) to "
                f"{new}, one partition per input partition ...",
                highlight=False,
            )
        else:
            console.print(f"  {copied:,} of about {total:,} records copied", highlight=False)

    done = migrate_aggregates(kafka, topics, progress)
    if done is not None:
        console.print(
            f"moved {done.records:,} records in {done.seconds:.1f} s; deleted {old}"
            + (
                f" (not copied: {done.skipped:,} records with a key of no known kind)"
                if done.skipped
                else ""
            ),
            highlight=False,
        )
    return done
