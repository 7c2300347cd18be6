"""Checkpoint: one transaction of the processor.

Dead letters, changelog records, aggregate records (with the tombstones of days made
final), the ClosedDay records of those days and the input offsets (sent with the
consumer's group metadata, so a member of a stale generation cannot commit, KIP-447)
commit together or not at all.

A transaction whose offsets the group refuses (the generation moved on under a
rebalance: ILLEGAL_GENERATION and its kin) is aborted, but the engines are not wrong:
they hold exactly what the aborted records said. So the records are kept, per input
partition, and written again at the head of the next transaction, with the offsets
(:class:`OffsetsRefused`). Restoring every owned partition from Kafka instead cost a
pause of about a second on each member a join or leave caught committing. A partition
revoked or lost meanwhile takes its kept records and offsets with it: its next owner
reprocesses from the last committed offsets, as after any abort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from contract.topics import Topics
from kafkaport.ports import GroupMetadata, TransactionalProducer
from kafkaport.types import KafkaError, TopicPartition
from processors.engine import DeadLetterRecord, Output, PartitionEngine
from processors.metrics import ProcessorMetrics

logger = logging.getLogger(__name__)


#: Refused transactions in a row whose records are kept; the next refusal is an error.
MAX_REFUSALS = 5


class OffsetsRefused(Exception):
    """The group refused the transaction's offsets; it was aborted and its records are
    kept for the next transaction (``cause``: the client's error)."""

    def __init__(self, cause: KafkaError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Written:
    """What one transaction wrote for one input partition (kept when it was refused)."""

    outputs: list[Output] = field(default_factory=list)
    dead: list[DeadLetterRecord] = field(default_factory=list)


class Checkpoint:
    """The open transaction of a session (begun at the first output of a batch)."""

    def __init__(
        self,
        producer: TransactionalProducer,
        topics: Topics,
        metrics: ProcessorMetrics,
        timeout_s: float,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._metrics = metrics
        self._timeout_s = timeout_s
        #: whether a transaction is open
        self.open = False
        #: the next input offset of every partition processed in this transaction
        self.offsets: dict[TopicPartition, int] = {}
        #: per input partition, what the open transaction wrote
        self._written: dict[int, _Written] = {}
        #: records and offsets of refused transactions, written again in the next one
        self._refused: dict[int, _Written] = {}
        self._refused_offsets: dict[TopicPartition, int] = {}
        #: refused transactions in a row (a member the group no longer knows is
        #: refused for ever: past MAX_REFUSALS the session restores from Kafka)
        self._refusals = 0

    def begin(self) -> None:
        """Open a transaction unless one is open."""
        if not self.open:
            self._producer.begin_transaction()
            self.open = True

    def dead_letters(self, partition: int, dead: list[DeadLetterRecord]) -> None:
        """Write dead letters of input ``partition`` in the open transaction."""
        self._send_dead(dead)
        self._written.setdefault(partition, _Written()).dead.extend(dead)
        for d in dead:
            self._metrics.deadletters.labels(d.reason).inc()
            if d.reason == "processing_error":
                self._metrics.processing_errors.labels(d.agency or "unknown").inc()

    def _send_dead(self, dead: list[DeadLetterRecord]) -> None:
        send = self._producer.send
        topic = self._topics.deadletter
        for d in dead:
            send(topic, d.value, d.key)

    def _send_outputs(self, p: int, o: Output) -> None:
        send = self._producer.send
        changelog, aggregates = self._topics.changelog, self._topics.aggregates
        days = self._topics.days
        for k, v in o.changelog:
            send(changelog, v, k, partition=p)
        for k, v in o.aggregates:
            send(aggregates, v, k, partition=p)
        for k, v in o.days:
            send(days, v, k)

    def forget_all(self) -> None:
        """Drop everything refused transactions kept (the state is rebuilt from Kafka)."""
        self._refused, self._refused_offsets, self._written = {}, {}, {}
        self._refusals = 0

    def forget(self, partitions: list[int]) -> None:
        """Drop what refused transactions kept of ``partitions`` (revoked or lost: their
        next owner processes them again from the last committed offsets)."""
        for p in partitions:
            self._refused.pop(p, None)
        gone = set(partitions)
        self._refused_offsets = {
            tp: o for tp, o in self._refused_offsets.items() if tp.partition not in gone
        }

    def processed(self, partition: TopicPartition, next_offset: int) -> None:
        """Input up to ``next_offset`` of ``partition`` is applied (commits with the outputs)."""
        self.offsets[partition] = next_offset

    def pending(self, engines: dict[int, PartitionEngine]) -> bool:
        """Whether anything would be committed."""
        return self.open or bool(self._refused) or any(e.dirty for e in engines.values())

    def commit(
        self, engines: dict[int, PartitionEngine], group: Callable[[], GroupMetadata]
    ) -> int:
        """Write every engine's changes and the offsets; commit. Returns records written.

        ``group`` gives the consumer's group metadata; it is asked only once the outputs
        are written, right before the offsets are sent: metadata taken before the flush
        was tens of milliseconds old when it reached the broker, and a rebalance that
        bumped the generation in between had the transaction refused
        (ILLEGAL_GENERATION), which costs a restore of every owned partition.

        Changelog and aggregate records go to the input partition's number (both topics
        are co-partitioned with the events topic); ClosedDay records are partitioned by
        the producer (murmur2 of the key). Days closed count once committed (a refused
        commit writes nothing).
        """
        t0 = time.monotonic()
        self.begin()
        prod = self._producer
        records_out = self._metrics.records_out
        out = closed = 0
        # what refused transactions wrote goes first: the newer values follow it
        refused, self._refused = self._refused, {}
        for p, w in refused.items():
            self._send_dead(w.dead)
            mine = self._written.setdefault(p, _Written())
            mine.dead[:0] = w.dead
            for o in w.outputs:
                self._send_outputs(p, o)
                out += len(o.changelog) + len(o.aggregates) + len(o.days)
                closed += len(o.days)
            mine.outputs[:0] = w.outputs
        offsets = {**self._refused_offsets, **self.offsets}
        self._refused_offsets = {}
        for p, eng in engines.items():
            o = eng.flush()
            self._send_outputs(p, o)
            self._written.setdefault(p, _Written()).outputs.append(o)
            records_out.labels("changelog").inc(len(o.changelog))
            records_out.labels("aggregates").inc(len(o.aggregates))
            closed += len(o.days)
            out += len(o.changelog) + len(o.aggregates) + len(o.days)
        if offsets:
            try:
                prod.send_offsets(offsets, group(), self._timeout_s)
            except KafkaError as exc:
                if not exc.requires_abort or exc.fatal or self._refusals >= MAX_REFUSALS:
                    raise  # the session aborts and restores from Kafka
                self._keep_refused(offsets)
                raise OffsetsRefused(exc) from exc
        prod.commit_transaction(self._timeout_s)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "committed %d records, offsets %s",
                out,
                {tp.partition: o for tp, o in offsets.items()},
            )
        self.open = False
        self.offsets = {}
        self._written = {}
        self._refusals = 0
        self._metrics.commit_seconds.observe(time.monotonic() - t0)
        self._metrics.transactions.labels("committed").inc()
        if closed:
            records_out.labels("days").inc(closed)
            self._metrics.days_closed.inc(closed)
        return out

    def _keep_refused(self, offsets: dict[TopicPartition, int]) -> None:
        """Abort the transaction the group refused; keep its records and offsets."""
        self._refused, self._written = self._written, {}
        self._refused_offsets = offsets
        self._refusals += 1
        self.offsets = {}
        self.open = False
        self._producer.abort_transaction(self._timeout_s)
        self._metrics.transactions.labels("aborted").inc()

    def abort(self) -> None:
        """Abort the open transaction, if any (best effort: else the broker's transaction
        timeout, or the next incarnation with this transactional id, aborts it)."""
        self.forget_all()
        if not self.open:
            return
        self.open = False
        self.offsets = {}
        try:
            self._producer.abort_transaction(10.0)
        except Exception:  # closing anyway
            logger.warning("could not abort the open transaction; it times out")
