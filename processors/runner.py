"""The Kafka loop: consume events, apply them, commit outputs and offsets atomically.

One transaction per batch (at most ``commit_interval_ms`` or ``max_batch`` events):
dead letters, changelog records, aggregate records and the input offsets
(``send_offsets_to_transaction`` with the consumer's group metadata, so a fenced
generation cannot commit) are committed together, so after a crash, a rebalance or a
broker restart every output equals one clean pass over the same events.

On assignment the state of each new partition is restored before any of its records is
processed: its changelog partition, and this partition's records of the aggregates topic
(the cumulative rollups, gauges and restatement logs it last wrote: they are state too,
so they are not written twice). Both are read ``read_committed`` up to their high
watermark taken at the start, which waits out any transaction still open. Any failure
ends the session: state is dropped, clients are closed and a new session restores.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from contract import bus
from contract.catalog import Catalog
from contract.errors import BusError
from contract.methodology import Standards
from contract.topics import Topics
from processors.context import Context
from processors.engine import PartitionEngine
from processors.errors import PollStuckError, ProcessorError, RestoreError, SessionError
from processors.metrics import ProcessorMetrics
from processors.settings import ProcessorSettings

logger = logging.getLogger(__name__)

#: A session that gets no records for this long while behind is restarted.
STALL_S = 30.0
#: How much longer than the commit interval a transaction may run while catching up.
CATCH_UP_EXTRA_S = 4.5
#: A consumer call (poll is bounded by ~0.5 s) still running this long is interrupted.
POLL_STUCK_S = 15.0
#: A loop stuck inside one step this long ends the process (restore, commit and poll
#: all have shorter limits of their own).
STUCK_S = 300.0


@dataclass
class RunStats:
    """What a run processed, for benchmarks and logs."""

    events: int = 0
    transactions: int = 0
    records_out: int = 0
    deadletters: int = 0
    #: input offsets deleted by retention before they were processed (events lost)
    retention_lost: int = 0
    restore_seconds: float = 0.0
    first_event_at: float | None = None
    last_commit_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def processing_seconds(self) -> float:
        """From the first record polled to the last commit."""
        if self.first_event_at is None or self.last_commit_at is None:
            return 0.0
        return self.last_commit_at - self.first_event_at

    @property
    def events_per_second(self) -> float:
        """Events processed per second of processing time (transactions included)."""
        s = self.processing_seconds
        return self.events / s if s > 0 else 0.0


class _Listener(bus.ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards rebalance callbacks to the session (kafka-python swallows their errors)."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._session.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._session.on_assigned(assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self._session.on_lost(lost)


class _Session:
    """One consumer, one transactional producer and the engines of assigned partitions."""

    def __init__(self, proc: Processor) -> None:
        self.p = proc
        self._closed = threading.Event()
        s = proc.settings
        self.topics = proc.topics
        self.engines: dict[int, PartitionEngine] = {}
        self.to_restore: set[int] = set()
        self.in_txn = False
        self.offsets: dict[Any, Any] = {}
        self.next_offset: dict[int, int] = {}
        self.fatal: BaseException | None = None
        self.discard = False
        self.last_tick = 0.0
        self.last_sizes = 0.0
        self.last_progress = time.monotonic()
        self.agg_count = 0
        self.call_started: float | None = None
        self.abandon_consumer = False
        self.producer = bus.producer(
            s,
            transactional_id=s.transactional_id,
            transaction_timeout_ms=s.transaction_timeout_ms,
            linger_ms=20,
            batch_size=256 * 1024,
            client_id=f"servicepulse-processor-{s.instance_id}",
        )
        self.consumer: Any = None
        self.restore_consumer: Any = None
        self.hw_consumer: Any = None
        self.gap_consumer: Any = None
        try:
            # fences an earlier incarnation with this id and aborts its open transaction
            self.producer.init_transactions()
            self.hw_consumer = bus.consumer(
                s, isolation_level="read_uncommitted", client_id="servicepulse-restore-hw"
            )
            self.consumer = bus.consumer(
                s,
                group_id=s.group_id,
                max_poll_records=s.poll_records,
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=max(1000, s.session_timeout_ms // 4),
                client_id=f"servicepulse-processor-{s.instance_id}",
            )
            # Join only once this consumer's group coordinator knows the topic's
            # partitions: the assignor runs on the leader with the leader's metadata, and
            # a leader that does not know them yet assigns nothing ("assigned []";
            # kafka-python 3.0.x then stalled instead of rejoining), or rejoins as soon
            # as it learns them (a second rebalance and restore on every start).
            self.consumer.subscribe([self.topics.events], listener=_Listener(self))
            if not bus.await_group_metadata(self.consumer, 30):
                raise SessionError(f"topic {self.topics.events} has no partitions")
        except Exception:
            self.close(error=True)
            raise
        self.alive = time.monotonic()
        threading.Thread(target=self._watchdog, name="processor-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        """Nudge the clients' IO threads (kafka-python lost wake-up) and, as a last
        resort, end a process whose loop has been stuck for :data:`STUCK_S`: a restart
        recovers from the last commit exactly like after a crash."""
        main = threading.main_thread().ident
        while not self._closed.wait(0.5):
            for c in (self.consumer, self.restore_consumer, self.hw_consumer):
                if c is not None:
                    bus.nudge(c)
            started = self.call_started
            # kafka-python 3.0.x: poll() can wait forever on its IO thread; a signal to
            # the waiting thread releases it (the command installs a SIGUSR2 handler;
            # without one the default action would end the process)
            if (
                started is not None
                and time.monotonic() - started > POLL_STUCK_S
                and callable(signal.getsignal(signal.SIGUSR2))
                and main is not None
            ):
                if not self.p.abort_call:
                    logger.warning("Kafka call stuck for %.0fs; interrupting it", POLL_STUCK_S)
                self.p.abort_call = True
                signal.pthread_kill(main, signal.SIGUSR2)
            if time.monotonic() - self.alive > STUCK_S:
                logger.critical("processing loop stuck for %.0fs; exiting", STUCK_S)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(70)

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        """Marks a blocking Kafka client call of the main thread for the watchdog."""
        self.call_started = time.monotonic()
        try:
            yield
        finally:
            self.call_started = None

    # -- rebalance -------------------------------------------------------------------

    def _set_agg_count(self, n: int) -> None:
        """Partitions of the aggregates topic; the key -> partition memo is per count."""
        if n and n != self.agg_count:
            self.agg_count = n
            self.p.agg_partitions.clear()

    def on_revoked(self, revoked: Any) -> None:
        try:
            if not self.discard and (self.in_txn or any(e.dirty for e in self.engines.values())):
                self.commit()
        except Exception as exc:  # kafka-python would swallow it
            logger.exception("commit on revocation failed; the session restarts")
            self.fatal = exc
        finally:
            for tp in revoked:
                if tp.topic == self.topics.events:
                    self.engines.pop(tp.partition, None)
                    self.next_offset.pop(tp.partition, None)
                    self.to_restore.discard(tp.partition)
            self.p.metrics.lag.clear()
            self.p.metrics.watermark_delay.clear()
            self.p.metrics.assigned_partitions.set(len(self.engines))

    def on_lost(self, lost: Any) -> None:
        """Evicted from the group: another instance may own these partitions already,
        so the open transaction must not commit; the session restarts from Kafka."""
        logger.warning(
            "partitions %s lost (evicted from the group)", sorted(tp.partition for tp in lost)
        )
        self.fatal = SessionError("evicted from the consumer group; partitions lost")
        self.discard = True
        self.engines.clear()

    def on_assigned(self, assigned: Any) -> None:
        new = {tp.partition for tp in assigned if tp.topic == self.topics.events}
        if self.engines:
            # Eager rebalancing revokes everything first, so state held now was never
            # revoked: another instance may have owned these partitions meanwhile.
            # Never reuse it, nor commit what it holds: start over from Kafka.
            logger.warning(
                "assigned %s while still holding %s without a revocation; restarting",
                sorted(new),
                sorted(self.engines),
            )
            self.fatal = SessionError("assignment without revocation")
            self.discard = True
            self.engines.clear()
        self.to_restore = set(new)
        self.last_progress = time.monotonic()
        logger.info("assigned partitions %s", sorted(new))

    # -- restore -----------------------------------------------------------------------

    def restore(self) -> dict[Any, int]:
        """Restore the state of newly assigned partitions; returns their start offsets.

        KIP-447's order: first the committed input offsets, read with
        ``require_stable``, which waits until a transaction of the previous owner that
        holds offsets of these partitions is decided (an owner that dropped out of the
        group may still commit one its generation had started). Only then is the state
        read to its end, so it includes every transaction that moved those offsets,
        and the consumer starts from exactly those offsets. Reading state first lost
        such a transaction's events (tests/processors/test_handover.py).
        """
        parts = sorted(self.to_restore)
        self.to_restore = set()
        started = time.monotonic()
        ctx = self.p.ctx
        engines = {p: PartitionEngine(p, ctx) for p in parts}
        tp_ = bus.TopicPartition
        inputs = [tp_(self.topics.events, p) for p in parts]
        committed = self._committed(inputs, started + self.p.settings.restore_timeout_s)
        cl = [tp_(self.topics.changelog, p) for p in parts]
        with self._calling():
            agg_parts = self.hw_consumer.partitions_for_topic(self.topics.aggregates) or set()
        ag = [tp_(self.topics.aggregates, q) for q in sorted(agg_parts)]
        self._set_agg_count(len(agg_parts))
        with self._calling():
            ends = self.hw_consumer.end_offsets(cl + ag)
        # A consumer of its own per restore: one reused across restores could deliver a
        # fetch still in flight from the previous restore after the new seek, and
        # skipping records of the aggregates topic would restore too-low rollups.
        rc = self.restore_consumer = bus.consumer(self.p.settings, client_id="servicepulse-restore")
        try:
            self._restore_from(rc, parts, engines, cl + ag, ends, started)
        finally:
            self.restore_consumer = None
            rc.close()
        for e in engines.values():
            e.finish_restore()
        starts = {tp: off for tp, off in committed.items() if off is not None}
        fresh = [tp for tp, off in committed.items() if off is None]
        if fresh:  # never committed: from the log start (an explicit offset, not a reset)
            with self._calling():
                starts.update(self.hw_consumer.beginning_offsets(fresh))
        for tp, off in starts.items():
            self.next_offset[tp.partition] = off
        logger.info(
            "partitions %s start at offsets %s",
            parts,
            [starts[tp] for tp in inputs],
        )
        self.engines.update(engines)
        # restored state lives until revocation: keep the cyclic collector off it
        gc.freeze()
        took = time.monotonic() - started
        self.p.stats.restore_seconds += took
        self.p.metrics.restore_seconds.observe(took)
        self.p.metrics.assigned_partitions.set(len(self.engines))
        return starts

    def _start_at(self, starts: dict[Any, int], batch: dict[Any, Any]) -> None:
        """Make the consumer read each restored partition from its start offset.

        The consumer has usually resolved the same committed offset by itself (and may
        have returned records from it in ``batch``, which are then processed); a
        partition with no position yet is set explicitly. The consumer is never moved
        back over records it has returned (``batch`` is processed as it is). A consumer
        behind the committed offset ends the session (a new one starts from Kafka); one
        ahead of it is left to the gap check of :meth:`step`, which tells markers,
        records deleted by retention and skipped records apart.
        """
        for tp, off in starts.items():
            recs = batch.get(tp)
            at = recs[0].offset if recs else bus.position_now(self.consumer, tp)
            if at is None:
                self.consumer.seek(tp, off)
            elif at < off:
                raise SessionError(
                    f"partition {tp.partition}: the consumer is at offset {at}, behind "
                    f"the committed offset {off} the state was restored to; restarting"
                )

    def _committed(self, inputs: list[Any], deadline: float) -> dict[Any, int | None]:
        """The group's stable committed offsets of ``inputs`` (see :meth:`restore`),
        asked in slices shorter than the watchdog's limit for one call."""
        while True:
            left = deadline - time.monotonic()
            try:
                with self._calling():
                    return bus.committed_offsets(self.consumer, inputs, max(0.1, min(10.0, left)))
            except bus.KafkaTimeoutError as exc:
                if time.monotonic() >= deadline:
                    raise RestoreError(
                        f"the committed offsets of partitions {[tp.partition for tp in inputs]} "
                        f"stayed unstable for {self.p.settings.restore_timeout_s}s (a "
                        "transaction of their previous owner is still open)"
                    ) from exc
                logger.info(
                    "waiting for an open transaction of the previous owner of partitions %s",
                    [tp.partition for tp in inputs],
                )

    def _restore_from(
        self,
        rc: Any,
        parts: list[int],
        engines: dict[int, PartitionEngine],
        tps: list[Any],
        ends: dict[Any, int],
        started: float,
    ) -> None:
        with self._calling():
            begins = rc.beginning_offsets(tps)
        todo = {tp: ends[tp] for tp in tps if ends[tp] > begins[tp]}
        rc.assign(list(todo))
        for tp in todo:
            rc.seek(tp, begins[tp])
        # the limit is on a lack of progress, not on the total: a long restore that keeps
        # reading records never times out (issue 15)
        stall = self.p.settings.restore_timeout_s
        progressed = started
        n = 0
        changelog, aggregates = self.topics.changelog, self.topics.aggregates
        while todo:
            if time.monotonic() - progressed > stall:
                behind = {
                    f"{tp.topic}[{tp.partition}]": (rc.position(tp), e) for tp, e in todo.items()
                }
                raise RestoreError(
                    f"restoring partitions {parts} read no record for {stall:g}s; "
                    f"still behind (position, end): {behind}"
                )
            with self._calling():
                batch = rc.poll(timeout_ms=200, max_records=20_000)
            if batch:
                progressed = time.monotonic()
            for tp, recs in batch.items():
                n += len(recs)
                if tp.topic == changelog:
                    eng = engines[tp.partition]
                    for r in recs:
                        eng.restore_changelog(r.key, r.value)
                elif tp.topic == aggregates:
                    for r in recs:
                        if r.key is None or r.value is None:
                            continue
                        key_parts = r.key.decode().split("|")
                        if len(key_parts) > 1 and key_parts[1].isdigit():
                            e = engines.get(int(key_parts[1]))
                            if e is not None:
                                e.restore_aggregate(key_parts, r.value)
            for tp in [tp for tp, end in todo.items() if rc.position(tp) >= end]:
                del todo[tp]
        logger.info(
            "restored partitions %s from %d records in %.2fs", parts, n, time.monotonic() - started
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "restore read %s",
                {f"{tp.topic}[{tp.partition}]": (begins[tp], ends[tp]) for tp in tps},
            )

    # -- processing ------------------------------------------------------------------

    def step(self) -> int:
        """One transaction: poll until the commit interval or batch limit; commit."""
        self.alive = time.monotonic()
        s = self.p.settings
        deadline = time.monotonic() + s.commit_interval_ms / 1000
        n = 0
        touched: set[int] = set()
        busy = 0.0
        metrics = self.p.metrics
        debug = logger.isEnabledFor(logging.DEBUG)
        while True:
            # past the deadline only while catching up: wait briefly for the next fetch
            remaining = max(0.05, deadline - time.monotonic())
            with self._calling():
                batch = self.consumer.poll(
                    timeout_ms=int(remaining * 1000),
                    max_records=min(s.poll_records, s.max_batch - n),
                )
            if self.fatal is not None:
                raise SessionError(f"rebalance commit failed: {self.fatal}") from self.fatal
            if self.to_restore:
                self._start_at(self.restore(), batch)
            if batch:
                t0 = time.monotonic()
                if self.p.stats.first_event_at is None:
                    self.p.stats.first_event_at = t0
                for tp, recs in batch.items():
                    nxt = recs[-1].offset + 1
                    eng = self.engines.get(tp.partition)
                    if eng is None:
                        raise SessionError(f"records for partition {tp.partition} with no state")
                    expected = self.next_offset.get(tp.partition)
                    if expected is not None and recs[0].offset > expected:
                        self._check_gap(tp, expected, recs[0].offset)
                    if not self.in_txn:
                        self.producer.begin_transaction()
                        self.in_txn = True
                    if debug:
                        logger.debug("p%d: offsets %d-%d", tp.partition, recs[0].offset, nxt - 1)
                    dead = eng.process(recs)
                    eng.mark_live(int(self.p.clock() * 1000))
                    for d in dead:
                        self.producer.send(self.topics.deadletter, key=d.key, value=d.value)
                        metrics.deadletters.labels(d.reason).inc()
                        if d.reason == "processing_error":
                            metrics.processing_errors.labels(d.agency or "unknown").inc()
                        self.p.stats.deadletters += 1
                    self.offsets[tp] = bus.commit_offset(nxt)
                    self.next_offset[tp.partition] = nxt
                    touched.add(tp.partition)
                    n += len(recs)
                busy += time.monotonic() - t0
                self.last_progress = time.monotonic()
            if n >= s.max_batch or self.p.stopping or not batch:
                break
            now_m = time.monotonic()
            if now_m >= deadline:
                # Catching up (the poll came back full: more is waiting): a bigger
                # transaction writes fewer records per event, as every changed key is
                # written once per transaction. Live traffic keeps the commit interval.
                full = sum(len(r) for r in batch.values()) >= min(s.poll_records, s.max_batch)
                if not full or now_m >= deadline + CATCH_UP_EXTRA_S:
                    break
        now = self.p.clock()
        now_ms = int(now * 1000)
        if now - self.last_tick >= s.idle_tick_ms / 1000:
            self.last_tick = now
            for p, eng in self.engines.items():
                if p not in touched and eng.wm.live and self._caught_up(p):
                    eng.tick(now_ms)
        if n:
            metrics.batch_seconds.observe(busy)
            metrics.events.inc(n)
            self.p.stats.events += n
        if self.in_txn or any(e.dirty for e in self.engines.values()):
            self.commit()
        self._gauges(now)
        if time.monotonic() - self.last_progress > STALL_S:
            self._check_stall()
        return n

    def _check_gap(self, tp: Any, expected: int, first: int) -> None:
        """Records of ``tp`` came from offset ``first`` although ``expected`` was next.

        Offsets below the partition's log start were deleted by the events topic's
        retention before they were processed (the consumer, positioned out of range,
        was reset to the log start): nothing brings them back, so they are counted
        (``servicepulse_processor_retention_lost_total``) and logged as an error, and
        processing goes on. Above the log start, offsets may rightly hold nothing for a
        ``read_committed`` reader (transaction markers, aborted records); if they hold
        records, the client skipped them, and the session restarts from the last commit
        instead of losing them. A consumer of its own reads the gap (only offsets inside
        it count, so a fetch left over from an earlier check cannot mislead it).
        """
        c = self.gap_consumer
        if c is None:
            c = self.gap_consumer = bus.consumer(
                self.p.settings, client_id="servicepulse-gap-check"
            )
        with self._calling():
            start = c.beginning_offsets([tp])[tp]
        if start > expected:
            end = min(start, first)
            since = max(expected, self.p.retention_reported.get(tp.partition, expected))
            if end > since:
                gone = end - since
                self.p.retention_reported[tp.partition] = end
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
                return
        c.assign([tp])
        c.seek(tp, expected)
        deadline = time.monotonic() + 30
        while True:
            with self._calling():
                got = c.poll(timeout_ms=200, max_records=500).get(tp, [])
                pos = c.position(tp, timeout_ms=5000)
            held = [r.offset for r in got if expected <= r.offset < first]
            if held:
                self.p.metrics.skips.inc()
                raise SessionError(
                    f"partition {tp.partition}: the Kafka client skipped offsets "
                    f"{expected}-{first - 1} (records at {held[0]}...); restarting from "
                    "the last commit"
                )
            if pos is not None and pos >= first:
                return
            if time.monotonic() > deadline:
                raise SessionError(
                    f"partition {tp.partition}: could not check offsets {expected}-{first - 1}"
                )

    def _check_stall(self) -> None:
        """Restart the session if records wait on an assigned partition but none come.

        A consumer that cannot establish or advance its positions (seen under heavy
        load) would otherwise sit idle forever with a backlog.
        """
        self.last_progress = time.monotonic()
        tps = [bus.TopicPartition(self.topics.events, p) for p in self.engines]
        if not tps:
            self._check_membership()
            return
        # asked through other clients: the group consumer itself may be the stuck one
        s = self.p.settings
        probe = bus.consumer(s, group_id=s.group_id, client_id="servicepulse-stall-probe")
        try:
            with self._calling():
                ends = probe.end_offsets(tps)
                done = {tp: self.next_offset.get(tp.partition) for tp in tps}
                for tp, nxt in done.items():
                    if nxt is None:
                        done[tp] = probe.committed(tp) or 0
        finally:
            probe.close()
        behind = {tp.partition: (done[tp], ends[tp]) for tp in tps if (done[tp] or 0) < ends[tp]}
        if behind:
            raise SessionError(
                f"no records for {STALL_S:.0f}s although partitions are behind "
                f"(partition: (processed or committed, end)): {behind}"
            )

    def _check_membership(self) -> None:
        """With no partitions for a while, make sure this member is still in the group.

        kafka-python 3.0.x was seen to sit on an empty assignment without heartbeats
        after its member had expired, never rejoining; a new session joins afresh.
        """
        s = self.p.settings
        me = self.consumer.group_metadata().member_id
        adm = bus.admin(s)
        try:
            with self._calling():
                desc = adm.describe_groups([s.group_id]).get(s.group_id) or {}
        finally:
            adm.close()
        members = {m.get("member_id") for m in desc.get("members") or [] if isinstance(m, dict)}
        if me not in members:
            raise SessionError(
                f"member {me!r} holds no partitions and is not in group {s.group_id!r} "
                f"(state {desc.get('group_state')!r}); rejoining"
            )

    def _caught_up(self, p: int) -> bool:
        tp = bus.TopicPartition(self.topics.events, p)
        hw = self.consumer.highwater(tp)
        nxt = self.next_offset.get(p)
        if nxt is None:
            try:
                with self._calling():
                    nxt = self.consumer.position(tp, timeout_ms=1000)
            except bus.KafkaError:
                return False
        return hw is not None and nxt is not None and nxt >= hw

    def commit(self) -> None:
        """Write every engine's changes and the offsets; commit the transaction."""
        t0 = time.monotonic()
        prod = self.producer
        if not self.in_txn:
            prod.begin_transaction()
            self.in_txn = True
        out = 0
        metrics = self.p.metrics
        aggregates, parts = self.topics.aggregates, self.p.agg_partitions
        n_agg = self.agg_count
        for p, eng in self.engines.items():
            o = eng.flush()
            for k, v in o.changelog:
                prod.send(self.topics.changelog, key=k, value=v, partition=p)
            for k, v in o.aggregates:
                q = parts.get(k)
                if q is None and n_agg:
                    if len(parts) > 2_000_000:
                        parts.clear()
                    q = parts[k] = bus.key_partition(k, n_agg)
                prod.send(aggregates, key=k, value=v, partition=q)
            metrics.records_out.labels("changelog").inc(len(o.changelog))
            metrics.records_out.labels("aggregates").inc(len(o.aggregates))
            out += len(o.changelog) + len(o.aggregates)
        if self.offsets:
            bus.send_offsets(
                prod,
                self.offsets,
                self.consumer.group_metadata(),
                self.p.settings.transaction_timeout_ms / 1000,
            )
        bus.commit_transaction(prod, self.p.settings.transaction_timeout_ms / 1000)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "committed %d records, offsets %s",
                out,
                {tp.partition: o.offset for tp, o in self.offsets.items()},
            )
        self.in_txn = False
        self.offsets = {}
        took = time.monotonic() - t0
        metrics.commit_seconds.observe(took)
        metrics.transactions.labels("committed").inc()
        stats = self.p.stats
        stats.transactions += 1
        stats.records_out += out
        stats.last_commit_at = time.monotonic()

    def _gauges(self, now: float) -> None:
        metrics = self.p.metrics
        for p, eng in self.engines.items():
            if eng.wm.watermark_ms is not None:
                metrics.watermark_delay.labels(str(p)).set(now - eng.wm.watermark_ms / 1000)
            hw = self.consumer.highwater(bus.TopicPartition(self.topics.events, p))
            nxt = self.next_offset.get(p)
            if hw is not None and nxt is not None:
                metrics.lag.labels(str(p)).set(max(0, hw - nxt))
        if now - self.last_sizes >= 10:
            self.last_sizes = now
            totals: dict[str, int] = {}
            for eng in self.engines.values():
                for k, v in eng.state_sizes().items():
                    totals[k] = totals.get(k, 0) + v
            for k, v in totals.items():
                metrics.state_entries.labels(k).set(v)

    def close(self, *, error: bool = False) -> None:
        """Close the clients; on error drop the state first.

        A transaction still open is aborted before the group learns this member has
        gone (on error), or after the consumer's close (its revocation commits what is
        pending, and a commit that fails leaves the transaction open): left open, it
        would hold up the next owner's restore until the broker's transaction timeout.
        """
        self._closed.set()
        if error:
            self.discard = True
            self.engines.clear()
            self._abort_open()
        if self.consumer is not None and not self.abandon_consumer:
            try:
                self.consumer.close()
            except Exception:  # closing anyway
                logger.warning("closing the consumer failed", exc_info=True)
        self._abort_open()
        for c in (self.restore_consumer, self.hw_consumer, self.gap_consumer):
            if c is not None:
                try:
                    c.close()
                except Exception:  # closing anyway
                    logger.warning("closing a consumer failed", exc_info=True)
        try:
            self.producer.close(timeout=5)
        except Exception:  # closing anyway
            logger.warning("closing the producer failed", exc_info=True)

    def _abort_open(self) -> None:
        if self.in_txn:
            try:
                bus.abort_transaction(self.producer, 10.0)
            except Exception:  # closing anyway
                logger.warning("could not abort the open transaction; it times out")
            self.in_txn = False


class Processor:
    """The stream processor of one instance.

    Args:
        settings: processor settings (Kafka, topics, group, timings).
        catalog: the service catalog.
        standards: the methodology's standards (office wait, interagency term).
        metrics: operational metrics holder.
        clock: the wall clock (epoch seconds); replaced in tests.
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        catalog: Catalog,
        standards: Standards,
        metrics: ProcessorMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.ctx = Context(
            catalog,
            standards,
            settings.allowed_lateness,
            settings.dedup_horizon,
            settings.earliest_occurred_at,
        )
        self.metrics = metrics
        self.clock = clock
        self.stats = RunStats()
        self._stop = threading.Event()
        #: aggregate record key -> partition (the default partitioner's choice, memoised)
        self.agg_partitions: dict[bytes, int] = {}
        #: set by the watchdog when the consumer poll is stuck (see interrupt_stuck_poll)
        self.abort_call = False
        self._session: _Session | None = None
        #: per input partition, the end of the offsets already reported lost to
        #: retention (a session restarted before its commit finds the same gap again)
        self.retention_reported: dict[int, int] = {}

    def interrupt_stuck_poll(self) -> None:
        """Call from a SIGUSR2 handler: raises :class:`PollStuckError` in the main thread
        if the watchdog found its consumer poll stuck (kafka-python 3.0.x can wait
        forever on its IO thread); otherwise does nothing."""
        session = self._session
        if self.abort_call and session is not None and session.call_started is not None:
            self.abort_call = False
            session.abandon_consumer = True
            raise PollStuckError(
                f"consumer poll stuck for over {POLL_STUCK_S:.0f}s inside kafka-python"
            )
        self.abort_call = False

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the loop to commit what it has and return (safe from a signal handler)."""
        self._stop.set()

    def run(self, until: Callable[[_Session], bool] | None = None) -> RunStats:
        """Process until :meth:`stop` (or ``until(session)`` is true after a commit).

        Failures of a session (Kafka errors, fencing, a failed commit) are logged and a
        new session starts after a pause; state is always rebuilt from Kafka.
        """
        backoff = 1.0
        while not self.stopping:
            try:
                session = _Session(self)
            except (BusError, bus.KafkaError, SessionError) as exc:
                logger.warning("cannot start a Kafka session (%s); retrying in %.0fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self.metrics.sessions.inc()
            self._session = session
            try:
                while not self.stopping:
                    session.step()
                    backoff = 1.0
                    if until is not None and until(session):
                        self._stop.set()
                session.close()
            except (SessionError, RestoreError, bus.KafkaError) as exc:
                logger.error("session failed (%s); restarting from the changelog", exc)
                self._restart(session, backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                # a bug must not leave a half-applied batch behind: drop the state and
                # start over from the last commit, as a crash and restart would
                logger.exception("unexpected error; restarting from the changelog")
                self._restart(session, backoff)
                backoff = min(backoff * 2, 30.0)
            except BaseException:
                session.close(error=True)
                raise
        return self.stats

    def _restart(self, session: _Session, backoff: float) -> None:
        self.metrics.transactions.labels("aborted").inc()
        session.close(error=True)
        self._stop.wait(backoff)

    def run_until_caught_up(self, timeout_s: float = 600.0) -> RunStats:
        """Process until every input partition is consumed to its current end; return stats.

        Meant for one instance (benchmarks, backfills): it stops once all partitions of
        the events topic are assigned to it and processed up to the end offsets seen
        when they were assigned. Raises :class:`ProcessorError` after ``timeout_s``.
        """
        started = time.monotonic()
        ends: dict[int, int] = {}
        timed_out = False

        def done(session: _Session) -> bool:
            nonlocal timed_out
            if time.monotonic() - started > timeout_s:
                timed_out = True
                return True
            parts = session.consumer.partitions_for_topic(self.topics.events) or set()
            if not parts or set(session.engines) != parts:
                return False
            if not ends:
                tps = [bus.TopicPartition(self.topics.events, p) for p in parts]
                ends.update(
                    {tp.partition: o for tp, o in session.consumer.end_offsets(tps).items()}
                )
            for p, end in ends.items():
                if end == 0:
                    continue
                nxt = session.next_offset.get(p)
                if nxt is None:
                    tp = bus.TopicPartition(self.topics.events, p)
                    nxt = session.consumer.position(tp, timeout_ms=1000)
                if nxt is None or nxt < end:
                    return False
            return not session.in_txn

        stats = self.run(until=done)
        if timed_out:
            raise ProcessorError(f"not caught up with {self.topics.events} in {timeout_s}s")
        return stats
