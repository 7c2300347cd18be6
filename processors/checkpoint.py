"""Checkpoint: one transaction of the processor.

Dead letters, changelog records, aggregate records (with the tombstones of days made
final), the ClosedDay records of those days and the input offsets (sent with the
consumer's group metadata, so a member of a stale generation cannot commit, KIP-447)
commit together or not at all.
"""

from __future__ import annotations

import logging
import time

from contract.topics import Topics
from kafkaport.ports import GroupMetadata, TransactionalProducer
from kafkaport.types import TopicPartition
from processors.engine import DeadLetterRecord, PartitionEngine
from processors.metrics import ProcessorMetrics

logger = logging.getLogger(__name__)


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

    def begin(self) -> None:
        """Open a transaction unless one is open."""
        if not self.open:
            self._producer.begin_transaction()
            self.open = True

    def dead_letters(self, dead: list[DeadLetterRecord]) -> None:
        """Write dead letters in the open transaction."""
        send = self._producer.send
        topic = self._topics.deadletter
        for d in dead:
            send(topic, d.value, d.key)
            self._metrics.deadletters.labels(d.reason).inc()
            if d.reason == "processing_error":
                self._metrics.processing_errors.labels(d.agency or "unknown").inc()

    def processed(self, partition: TopicPartition, next_offset: int) -> None:
        """Input up to ``next_offset`` of ``partition`` is applied (commits with the outputs)."""
        self.offsets[partition] = next_offset

    def pending(self, engines: dict[int, PartitionEngine]) -> bool:
        """Whether anything would be committed."""
        return self.open or any(e.dirty for e in engines.values())

    def commit(self, engines: dict[int, PartitionEngine], group: GroupMetadata) -> int:
        """Write every engine's changes and the offsets; commit. Returns records written.

        Changelog and aggregate records go to the input partition's number (both topics
        are co-partitioned with the events topic); ClosedDay records are partitioned by
        the producer (murmur2 of the key). Days closed count once committed (a refused
        commit writes nothing).
        """
        t0 = time.monotonic()
        self.begin()
        prod = self._producer
        send = prod.send
        changelog, aggregates = self._topics.changelog, self._topics.aggregates
        days = self._topics.days
        records_out = self._metrics.records_out
        out = closed = 0
        for p, eng in engines.items():
            o = eng.flush()
            for k, v in o.changelog:
                send(changelog, v, k, partition=p)
            for k, v in o.aggregates:
                send(aggregates, v, k, partition=p)
            for k, v in o.days:
                send(days, v, k)
            records_out.labels("changelog").inc(len(o.changelog))
            records_out.labels("aggregates").inc(len(o.aggregates))
            closed += len(o.days)
            out += len(o.changelog) + len(o.aggregates) + len(o.days)
        if self.offsets:
            prod.send_offsets(self.offsets, group, self._timeout_s)
        prod.commit_transaction(self._timeout_s)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "committed %d records, offsets %s",
                out,
                {tp.partition: o for tp, o in self.offsets.items()},
            )
        self.open = False
        self.offsets = {}
        self._metrics.commit_seconds.observe(time.monotonic() - t0)
        self._metrics.transactions.labels("committed").inc()
        if closed:
            records_out.labels("days").inc(closed)
            self._metrics.days_closed.inc(closed)
        return out

    def abort(self) -> None:
        """Abort the open transaction, if any (best effort: else the broker's transaction
        timeout, or the next incarnation with this transactional id, aborts it)."""
        if not self.open:
            return
        self.open = False
        self.offsets = {}
        try:
            self._producer.abort_transaction(10.0)
        except Exception:  # closing anyway
            logger.warning("could not abort the open transaction; it times out")
