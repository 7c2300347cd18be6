"""Session: one consumer-group member, one transactional producer, the engines it owns.

A session moves through :class:`State` only by :meth:`Session._to`; what a rebalance
callback may do depends on that state, never on flags. Rebalance callbacks run inside
``poll`` on the loop's thread (librdkafka calls them there), so no state is shared with
other threads. With cooperative rebalancing a callback carries only the partitions that
move: an assignment restores just those (:mod:`processors.recovery`) while the others
keep their state. A member with no partitions (a start, a joiner) restores at once, in
the callback; one that keeps partitions *holds* the new ones (assigned, paused) and
runs their restore a slice at a time between its polls (:class:`_Pending`), so the
partitions it kept go on committing; a finished restore's engines are installed, and
each partition sought to its start offset and resumed. A revocation first commits the
open transaction (the partitions are still owned) and then drops just those engines
(or the restore of those still held). Partitions *lost* (evicted from the
group) may be owned elsewhere already: the open transaction must not commit, so the
session fails and a new one restores from Kafka.

Constructing a session does no I/O; :meth:`Session.open` connects.
"""

from __future__ import annotations

import enum
import gc
import logging
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.settings import millis
from contract.topics import DAYS_MAX_BYTES
from kafkaport.ports import Consumer, Kafka, TransactionalProducer
from kafkaport.types import Held, KafkaError, Record, TopicPartition
from processors import recovery
from processors.checkpoint import Checkpoint, OffsetsRefused
from processors.engine import PartitionEngine
from processors.errors import SessionError

if TYPE_CHECKING:
    from processors.runner import Processor

logger = logging.getLogger(__name__)

#: How much longer than the commit interval a transaction may run while catching up.
CATCH_UP_EXTRA_S = 4.5
#: Timeout of metadata and offset requests.
REQUEST_S = 30.0
#: A restore run between polls gets this long per turn of the loop ...
RESTORE_SLICE_S = 0.05
#: ... in polls of at most this many records, each waiting at most this long.
RESTORE_SLICE_RECORDS = 1_000
RESTORE_SLICE_WAIT_S = 0.02


class State(enum.Enum):
    """Where a session is."""

    NEW = "new"  #: constructed, no clients
    OPENING = "opening"  #: clients connecting, transactions initialising
    RUNNING = "running"  #: a group member processing its partitions
    CLOSING = "closing"  #: leaving the group: the revocation commits what is pending
    FAILED = "failed"  #: state is not to be trusted: nothing more is committed
    CLOSED = "closed"  #: clients closed


_NEXT: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.OPENING, State.CLOSED}),
    State.OPENING: frozenset({State.RUNNING, State.FAILED}),
    State.RUNNING: frozenset({State.CLOSING, State.FAILED}),
    State.CLOSING: frozenset({State.FAILED, State.CLOSED}),
    State.FAILED: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


@dataclass
class _Pending:
    """A restore run between polls; its partitions are held until it is done."""

    partitions: list[int]
    steps: Generator[None, None, recovery.Restored]


class Session:
    """A Kafka session of :class:`processors.runner.Processor` (see the module)."""

    def __init__(self, proc: Processor, kafka: Kafka) -> None:
        self.p = proc
        self.kafka = kafka
        self.state = State.NEW
        self.topics = proc.topics
        self.engines: dict[int, PartitionEngine] = {}
        #: per owned partition, the next input offset to process
        self.next_offset: dict[int, int] = {}
        self.consumer: Consumer | None = None
        self.producer: TransactionalProducer | None = None
        self.checkpoint: Checkpoint | None = None
        self._gap: Consumer | None = None
        #: the partitions being restored now (for observers; empty between restores)
        self.restoring: list[int] = []
        #: restores run between polls (their partitions held), oldest first
        self._pending: list[_Pending] = []
        self.last_tick = 0.0
        self.last_sizes = 0.0

    def _to(self, state: State) -> None:
        if state not in _NEXT[self.state]:
            raise SessionError(f"session cannot go from {self.state.value} to {state.value}")
        logger.debug("session %s -> %s", self.state.value, state.value)
        self.state = state

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Connect: fence earlier incarnations, join the group. Raises
        :class:`KafkaError` (the session is then closed)."""
        self._to(State.OPENING)
        s = self.p.settings
        try:
            self.producer = self.kafka.transactional_producer(
                client_id=f"servicepulse-processor-{s.instance_id}",
                transactional_id=s.transactional_id,
                transaction_timeout_ms=millis(s.transaction_timeout),
                linger_ms=20,
                batch_bytes=256 * 1024,
                # a closed day (one record of <prefix>.days) may be that large
                max_message_bytes=DAYS_MAX_BYTES,
            )
            # fences an earlier incarnation with this id and aborts its open transaction
            self.producer.init_transactions(REQUEST_S)
            self.checkpoint = Checkpoint(
                self.producer, self.topics, self.p.metrics, s.transaction_timeout.total_seconds()
            )
            self.consumer = self.kafka.consumer(
                client_id=f"servicepulse-processor-{s.instance_id}",
                group_id=s.group_id,
                session_timeout_ms=millis(s.session_timeout),
            )
            self._to(State.RUNNING)
            self.consumer.subscribe([self.topics.events], self)
        except BaseException:
            self.close(error=True)
            raise

    def close(self, *, error: bool = False) -> None:
        """Leave the group and close the clients; on error drop the state first.

        On error the open transaction is aborted before the group learns this member
        has gone; otherwise the consumer's close revokes its partitions, which commits
        what is pending (a commit that fails is aborted after). Left open, a
        transaction would hold up the next owner's restore until it times out.
        """
        if self.state is State.CLOSED:
            return
        if error and self.state is not State.NEW:
            if self.state is not State.FAILED:
                self._to(State.FAILED)
            self.engines.clear()
            if self.checkpoint is not None:
                self.checkpoint.abort()
        elif self.state is State.RUNNING:
            self._to(State.CLOSING)
        self._forget_restores(None)
        for c in (self.consumer, self._gap):
            if c is not None:
                try:
                    c.close()
                except Exception:  # closing anyway
                    logger.warning("closing a consumer failed", exc_info=True)
        if self.checkpoint is not None:
            self.checkpoint.abort()
        if self.producer is not None:
            try:
                self.producer.close(5.0)
            except Exception:  # closing anyway
                logger.warning("closing the producer failed", exc_info=True)
        self._to(State.CLOSED)

    # -- rebalance (called inside poll, on this thread) --------------------------------

    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int | Held]:
        new = sorted(tp.partition for tp in partitions if tp.topic == self.topics.events)
        if self.state is not State.RUNNING or not new or self.consumer is None:
            return {}
        logger.info("assigned partitions %s (keeping %s)", new, sorted(self.engines))
        if self.engines or self._pending:
            # partitions to keep processing: restore the new ones between polls
            self._start_restore(new)
            return {TopicPartition(self.topics.events, p): Held() for p in new}
        self._commit()  # an open transaction, if any, before the restore holds the loop
        self.restoring = new
        try:
            got = recovery.restore(
                self.kafka,
                self.consumer,
                self.topics,
                new,
                self.p.ctx,
                self.p.settings.restore_timeout.total_seconds(),
            )
        finally:
            self.restoring = []
        for tp, off in got.starts.items():
            self.next_offset[tp.partition] = off
        self.engines.update(got.engines)
        # restored state lives until revocation: keep the cyclic collector off it
        gc.freeze()
        self._count_restore(got)
        self.p.metrics.assigned_partitions.set(len(self.engines))
        return got.starts

    def _start_restore(self, partitions: list[int]) -> None:
        consumer = self.consumer
        if consumer is None:
            raise SessionError("no consumer to restore with")
        steps = recovery.restore_steps(
            self.kafka,
            consumer,
            self.topics,
            partitions,
            self.p.ctx,
            self.p.settings.restore_timeout.total_seconds(),
            poll_records=RESTORE_SLICE_RECORDS,
            committed_slice_s=RESTORE_SLICE_S * 4,
            poll_wait_s=RESTORE_SLICE_WAIT_S,
        )
        self._pending.append(_Pending(sorted(partitions), steps))
        self.restoring = sorted(p for job in self._pending for p in job.partitions)

    def _forget_restores(self, partitions: list[int] | None) -> None:
        """Stop the restores holding any of ``partitions`` (all with ``None``); the
        partitions of theirs that stay assigned are restored again from the start."""
        for job in list(self._pending):
            if partitions is not None and not set(job.partitions) & set(partitions):
                continue
            job.steps.close()  # closes its consumers
            self._pending.remove(job)
            if partitions is not None:
                rest = [p for p in job.partitions if p not in partitions]
                if rest:
                    self._start_restore(rest)
        self.restoring = sorted(p for job in self._pending for p in job.partitions)

    def advance_restores(self, budget_s: float) -> None:
        """Run the pending restores for about ``budget_s``; install what finishes.
        Raises what a restore raises (:class:`RestoreError`: the session fails)."""
        end = time.monotonic() + budget_s
        while self._pending and time.monotonic() < end:
            job = self._pending[0]
            try:
                next(job.steps)
            except StopIteration as done:
                self._pending.pop(0)
                self._install(job.partitions, done.value)

    def _install(self, partitions: list[int], got: recovery.Restored) -> None:
        consumer = self.consumer
        if consumer is None:
            raise SessionError("no consumer to resume the restored partitions on")
        tps = []
        for p in partitions:
            tp = TopicPartition(self.topics.events, p)
            self.engines[p] = got.engines[p]
            self.next_offset[p] = got.starts[tp]
            # from exactly the offset the restore read; records fetched before the
            # pause took hold were skipped, so they come again
            consumer.seek(tp, got.starts[tp])
            tps.append(tp)
        consumer.resume(tps)
        gc.freeze()
        self._count_restore(got)
        self.restoring = sorted(p for job in self._pending for p in job.partitions)
        self.p.metrics.assigned_partitions.set(len(self.engines))
        logger.info(
            "partitions %s restored while processing %s",
            partitions,
            sorted(set(self.engines) - set(partitions)),
        )

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        gone = sorted(tp.partition for tp in partitions if tp.topic == self.topics.events)
        logger.info("revoked partitions %s", gone)
        self._forget_restores(gone)
        try:
            if self.state in (State.RUNNING, State.CLOSING):
                self._commit(leaving=tuple(gone))
        finally:
            self._drop(gone)

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        lost = sorted(tp.partition for tp in partitions if tp.topic == self.topics.events)
        logger.warning("partitions %s lost (evicted from the group)", lost)
        self._forget_restores(lost)
        self._drop(lost)
        if self.state in (State.RUNNING, State.CLOSING):
            self._to(State.FAILED)
            raise SessionError("evicted from the consumer group; partitions lost")

    def _drop(self, partitions: list[int]) -> None:
        if self.checkpoint is not None:
            self.checkpoint.forget(partitions)
        for p in partitions:
            self.engines.pop(p, None)
            self.next_offset.pop(p, None)
        self.p.metrics.lag.clear()
        self.p.metrics.watermark_delay.clear()
        self.p.metrics.assigned_partitions.set(len(self.engines))

    # -- processing --------------------------------------------------------------------

    def step(self) -> int:
        """One transaction: poll until the commit interval or batch limit; commit."""
        consumer, checkpoint = self.consumer, self.checkpoint
        if self.state is not State.RUNNING or consumer is None or checkpoint is None:
            raise SessionError(f"cannot process in state {self.state.value}")
        s = self.p.settings
        deadline = time.monotonic() + s.commit_interval.total_seconds()
        n = 0
        touched: set[int] = set()
        busy = 0.0
        metrics = self.p.metrics
        stats = self.p.stats
        events = self.topics.events
        debug = logger.isEnabledFor(logging.DEBUG)
        while True:
            if self._pending:
                self.advance_restores(RESTORE_SLICE_S)
            restoring = bool(self._pending)
            # past the deadline only while catching up: wait briefly for the next fetch
            # (not at all while a restore waits for its next slice)
            remaining = 0.0 if restoring else max(0.05, deadline - time.monotonic())
            want = min(s.poll_records, s.max_batch - n)
            recs = consumer.poll(remaining, want)
            if self.state is not State.RUNNING:
                raise SessionError(f"session {self.state.value} during a poll")
            if recs:
                t0 = time.monotonic()
                if stats.first_event_at is None:
                    stats.first_event_at = t0
                by_part: dict[int, list[Record]] = {}
                for r in recs:
                    by_part.setdefault(r.partition, []).append(r)
                checkpoint.begin()
                for p, part in by_part.items():
                    eng = self.engines.get(p)
                    if eng is None:
                        if p in self.restoring:
                            continue  # fetched before its pause took: read after the seek
                        raise SessionError(f"records for partition {p} with no state")
                    expected = self.next_offset.get(p)
                    if expected is not None and part[0].offset < expected:
                        # delivered again (a fetch restarted by a rebalance): those
                        # records are applied already and must not count twice
                        part = [r for r in part if r.offset >= expected]
                        if not part:
                            continue
                    first, nxt = part[0].offset, part[-1].offset + 1
                    if expected is not None and first > expected:
                        tp = TopicPartition(events, p)
                        if not self.check_gap(tp, expected, first):
                            consumer.seek(tp, expected)  # read the skipped records
                            continue
                    if debug:
                        logger.debug("p%d: offsets %d-%d", p, first, nxt - 1)
                    dead = eng.process(part)
                    eng.mark_live(int(self.p.clock() * 1000))
                    if dead:
                        checkpoint.dead_letters(p, dead)
                        stats.deadletters += len(dead)
                    checkpoint.processed(TopicPartition(events, p), nxt)
                    self.next_offset[p] = nxt
                    touched.add(p)
                    n += len(part)
                busy += time.monotonic() - t0
            if n >= s.max_batch or self.p.stopping or (not recs and not restoring):
                break
            now_m = time.monotonic()
            # Catching up (the poll came back full: more is waiting): a bigger transaction
            # writes fewer records per event, as every changed key is written once per
            # transaction. Live traffic keeps the commit interval.
            if now_m >= deadline and (len(recs) < want or now_m >= deadline + CATCH_UP_EXTRA_S):
                break
        now = self.p.clock()
        if now - self.last_tick >= s.idle_tick.total_seconds():
            self.last_tick = now
            now_ms = int(now * 1000)
            for p, eng in self.engines.items():
                if p not in touched and eng.wm.live and self._caught_up(p):
                    eng.tick(now_ms)
        if n:
            metrics.batch_seconds.observe(busy)
            metrics.events.inc(n)
            stats.events += n
        self._commit()
        self._gauges(now)
        return n

    def _commit(self, leaving: tuple[int, ...] = ()) -> None:
        """Commit what is pending; ``leaving``: partitions about to be revoked (not worth
        restoring if the commit is refused)."""
        checkpoint, consumer = self.checkpoint, self.consumer
        if checkpoint is None or consumer is None or not checkpoint.pending(self.engines):
            return
        try:
            out = checkpoint.commit(self.engines, consumer.group_metadata)
        except OffsetsRefused as refused:
            # a rebalance moved the generation on: the state is right, the records are
            # written again with the next transaction (processors/checkpoint.py)
            self.p.stats.refused += 1
            logger.warning(
                "offsets refused by the group (%s); the transaction's records are kept "
                "for the next one",
                refused.cause,
            )
            return
        except KafkaError as exc:
            if not exc.requires_abort or exc.fatal or self.state is not State.RUNNING:
                raise
            # e.g. offsets of a generation the group has just left behind (a commit
            # during a rebalance, KIP-447 fencing): the transaction is lost, the
            # membership is not
            self._recover_in_place(exc, leaving)
            return
        stats = self.p.stats
        stats.transactions += 1
        stats.records_out += out
        stats.last_commit_at = time.monotonic()

    def _recover_in_place(self, exc: KafkaError, leaving: tuple[int, ...]) -> None:
        """Abort the open transaction and rebuild the owned partitions from Kafka, staying
        in the group (leaving it would move every partition of every instance again)."""
        checkpoint, consumer, producer = self.checkpoint, self.consumer, self.producer
        if checkpoint is None or consumer is None or producer is None:
            raise SessionError("no clients to recover with") from exc
        owned = sorted(set(self.engines) - set(leaving))
        logger.warning(
            "transaction refused (%s); restoring partitions %s from the last commit", exc, owned
        )
        checkpoint.open = False
        checkpoint.offsets = {}
        checkpoint.forget_all()
        producer.abort_transaction(REQUEST_S)
        self.p.metrics.transactions.labels("aborted").inc()
        self.engines.clear()
        self.next_offset.clear()
        if not owned:
            return
        got = recovery.restore(
            self.kafka,
            consumer,
            self.topics,
            owned,
            self.p.ctx,
            self.p.settings.restore_timeout.total_seconds(),
        )
        self.engines.update(got.engines)
        for tp, off in got.starts.items():
            self.next_offset[tp.partition] = off
            consumer.seek(tp, off)
        self._count_restore(got)

    def _count_restore(self, got: recovery.Restored) -> None:
        stats, metrics = self.p.stats, self.p.metrics
        stats.restore_seconds += got.seconds
        stats.restored_records += got.records
        metrics.restore_seconds.observe(got.seconds)
        metrics.restored_records.labels("changelog").inc(got.changelog_records)
        metrics.restored_records.labels("aggregates").inc(got.records - got.changelog_records)
        metrics.restored_partitions.inc(len(got.engines))

    def check_gap(self, tp: TopicPartition, expected: int, first: int) -> bool:
        """Records of ``tp`` came from offset ``first`` although ``expected`` was next.

        Offsets below the partition's log start were deleted by the events topic's
        retention before they were processed (the consumer, positioned out of range,
        was reset to the log start): nothing brings them back, so they are counted
        (``servicepulse_processor_retention_lost_total``, once per process) and logged
        as an error, and processing goes on. Above the log start, offsets may rightly
        hold nothing for a ``read_committed`` reader (transaction markers, aborted
        records); if they hold records, the client skipped them: ``False`` (the caller
        moves the consumer back to ``expected`` and drops the records it got).
        Returns whether the records from ``first`` may be processed.
        """
        c = self._gap
        if c is None:
            c = self._gap = self.kafka.consumer(client_id="servicepulse-gap-check")
        start = c.watermarks([tp], REQUEST_S)[tp][0]
        if start > expected:
            end = min(start, first)
            reported = self.p.retention_reported
            since = max(expected, reported.get(tp.partition, expected))
            if end > since:
                gone = end - since
                reported[tp.partition] = end
                self.p.metrics.retention_lost.inc(gone)
                self.p.stats.retention_lost += gone
                logger.error(
                    "partition %d: offsets %d-%d were deleted by the retention of %s "
                    "before they were processed (%d events lost); raise the topic's "
                    "retention.ms or keep the processors' lag below it",
                    tp.partition,
                    end - gone,
                    end - 1,
                    tp.topic,
                    gone,
                )
            expected = start
            if expected >= first:
                return True
        c.assign({tp: expected})
        deadline = time.monotonic() + REQUEST_S
        while True:
            held = [r.offset for r in c.poll(0.2, 500) if expected <= r.offset < first]
            if held:
                self.p.metrics.skips.inc()
                logger.warning(
                    "partition %d: the Kafka client skipped offsets %d-%d (records at %d...); "
                    "reading them again",
                    tp.partition,
                    expected,
                    first - 1,
                    held[0],
                )
                return False
            pos = c.position(tp)
            if pos is not None and pos >= first:
                return True
            if time.monotonic() > deadline:
                raise SessionError(
                    f"partition {tp.partition}: could not check offsets {expected}-{first - 1}"
                )

    def _caught_up(self, p: int) -> bool:
        if self.consumer is None:
            return False
        end = self.consumer.last_end(TopicPartition(self.topics.events, p))
        nxt = self.next_offset.get(p)
        return end is not None and nxt is not None and nxt >= end

    def _gauges(self, now: float) -> None:
        metrics = self.p.metrics
        consumer = self.consumer
        if consumer is None:
            return
        for p, eng in self.engines.items():
            if eng.wm.watermark_ms is not None:
                metrics.watermark_delay.labels(str(p)).set(now - eng.wm.watermark_ms / 1000)
            end = consumer.last_end(TopicPartition(self.topics.events, p))
            nxt = self.next_offset.get(p)
            if end is not None and nxt is not None:
                metrics.lag.labels(str(p)).set(max(0, end - nxt))
        if now - self.last_sizes >= 10:
            self.last_sizes = now
            totals: dict[str, int] = {}
            for eng in self.engines.values():
                for k, v in eng.state_sizes().items():
                    totals[k] = totals.get(k, 0) + v
            for k, v in totals.items():
                metrics.state_entries.labels(k).set(v)

    def caught_up_with(self, ends: dict[int, int]) -> bool:
        """Whether every partition in ``ends`` is owned and processed to its end offset."""
        if set(self.engines) != set(ends) or (self.checkpoint and self.checkpoint.open):
            return False
        return all(end == 0 or self.next_offset.get(p, -1) >= end for p, end in ends.items())

    def end_offsets(self) -> dict[int, int]:
        """The events topic's end offsets (``read_committed``: the last stable offsets)."""
        if self.consumer is None:
            return {}
        parts = self.consumer.partitions_for(self.topics.events, REQUEST_S)
        tps = [TopicPartition(self.topics.events, p) for p in sorted(parts)]
        marks = self.consumer.watermarks(tps, REQUEST_S)
        return {tp.partition: end for tp, (_, end) in marks.items()}
