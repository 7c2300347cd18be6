"""The processor's loop: sessions one after another, each consuming events, applying them
and committing outputs and offsets atomically.

The work is split three ways (the split of quix-streams):

- :mod:`processors.session`: the clients, the owned partitions and their engines, with
  an explicit state machine; rebalances move only the partitions that change owner.
- :mod:`processors.recovery`: the KIP-447 restore of newly assigned partitions.
- :mod:`processors.checkpoint`: the transaction (outputs, dead letters and input offsets
  commit together, so after a crash, a rebalance or a broker restart every output
  equals one clean pass over the same events).

Any failure ends the session: state is dropped, clients are closed and a new session
restores from Kafka. A Kafka call that hangs is ended by the client's own timeouts
(every call that waits on a broker has one).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import kafkaport
from contract.catalog import Catalog
from contract.errors import BusError
from contract.methodology import Standards
from contract.topics import Topics
from kafkaport.ports import Kafka
from kafkaport.reconnect import BACKOFF, Backoff, Reconnect
from processors.context import Context
from processors.errors import ProcessorError, RestoreError, SessionError
from processors.metrics import ProcessorMetrics
from processors.session import Session
from processors.settings import ProcessorSettings

logger = logging.getLogger(__name__)

#: the cyclic collector's thresholds in a processor process (Python's defaults: 700, 10,
#: 10). Open journeys, dedup ids and rollup cells are hundreds of thousands of long-lived
#: objects allocated as events arrive; at the defaults the young collections ran every
#: 700 allocations and kept promoting and re-walking them. Measured on the 400,000-event
#: set (docs/BENCHMARKS.md, 2026-12-05): 38.8 -> 22.9 µs of CPU per event after the first
#: commit. What this can cost is memory held by cyclic garbage between collections; the
#: processor makes little (no client of ours leaves cycles since kafka-python left the
#: processor), and the long soak of the reliability suite bounds it.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Set :data:`GC_THRESHOLDS` for this process (``servicepulse process`` does, once)."""
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class RunStats:
    """What a run processed, for benchmarks and logs."""

    events: int = 0
    transactions: int = 0
    records_out: int = 0
    deadletters: int = 0
    #: input offsets deleted by retention before they were processed (events lost)
    retention_lost: int = 0
    #: transactions whose offsets the group refused in a rebalance (written again)
    refused: int = 0
    restore_seconds: float = 0.0
    #: changelog and aggregate records read by restores
    restored_records: int = 0
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


class Processor:
    """The stream processor of one instance.

    Args:
        settings: processor settings (Kafka, topics, group, timings).
        catalog: the service catalog.
        standards: the methodology's standards (office wait, interagency term).
        metrics: operational metrics holder.
        clock: the wall clock (epoch seconds); replaced in tests.
        kafka: the Kafka client factory; default: confluent-kafka on ``settings``.
        backoff: the pauses between failed sessions; default: the project's policy.
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        catalog: Catalog,
        standards: Standards,
        metrics: ProcessorMetrics,
        clock: Callable[[], float] = time.time,
        kafka: Kafka | None = None,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self.settings = settings
        self.backoff = backoff
        self.topics = Topics(settings.topic_prefix)
        self.ctx = Context(
            catalog,
            standards,
            settings.allowed_lateness,
            settings.dedup_horizon,
            settings.earliest_occurred_at,
            settings.restatement_horizon,
        )
        self.metrics = metrics
        self.clock = clock
        self.kafka = kafka or kafkaport.connect(settings)
        self.stats = RunStats()
        self._stop = threading.Event()
        self._session: Session | None = None
        #: per input partition, the end of the offsets already reported lost to
        #: retention (a session restarted before its commit finds the same gap again)
        self.retention_reported: dict[int, int] = {}

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the loop to commit what it has and return (safe from a signal handler)."""
        self._stop.set()

    def session(self) -> Session:
        """A new session of this processor (not connected: see :meth:`Session.open`)."""
        return Session(self, self.kafka)

    def run(self, until: Callable[[Session], bool] | None = None) -> RunStats:
        """Process until :meth:`stop` (or ``until(session)`` is true after a commit).

        Failures of a session (Kafka errors, fencing, a failed commit, a bug) are logged
        and a new session starts after a pause of :mod:`kafkaport.reconnect` (1 s doubling
        to 30 s, reset by every committed step); state is always rebuilt from Kafka.
        """
        reconnect = Reconnect(
            "processor session",
            self._stop,
            retry_on=(SessionError, RestoreError, BusError),
            backoff=self.backoff,
        )
        reconnect.run(lambda: self._one_session(reconnect, until))
        return self.stats

    def _one_session(self, reconnect: Reconnect, until: Callable[[Session], bool] | None) -> None:
        """One session from open to close; raises what ended it (the caller retries).

        A failure to open (BusError, SessionError) has nothing to abort; any other error
        while opening is a configuration or programming error and ends the run.
        """
        session = self.session()
        self._session = session
        session.open()
        self.metrics.sessions.inc()
        try:
            while not self.stopping:
                session.step()
                reconnect.progressed()
                if until is not None and until(session):
                    self._stop.set()
            session.close()
        except (SessionError, RestoreError, BusError):
            self._abort(session)
            raise
        except Exception as exc:
            # a bug must not leave a half-applied batch behind: drop the state and
            # start over from the last commit, as a crash and restart would. The stack
            # says where; the message is left out, as it may quote a record.
            stack = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
            logger.error(
                "unexpected %s; restarting from the changelog\n%s", type(exc).__name__, stack
            )
            self._abort(session)
            raise SessionError(f"unexpected {type(exc).__name__} in the session") from exc
        except BaseException:
            session.close(error=True)
            raise

    def _abort(self, session: Session) -> None:
        self.metrics.transactions.labels("aborted").inc()
        session.close(error=True)

    def run_until_caught_up(self, timeout_s: float = 600.0) -> RunStats:
        """Process until every input partition is consumed to its current end; return stats.

        Meant for one instance (benchmarks, backfills): it stops once all partitions of
        the events topic are assigned to it and processed up to the end offsets seen
        the first time it owned them all. Raises :class:`ProcessorError` after
        ``timeout_s``.
        """
        started = time.monotonic()
        ends: dict[int, int] = {}
        timed_out = False

        def done(session: Session) -> bool:
            nonlocal timed_out
            if time.monotonic() - started > timeout_s:
                timed_out = True
                return True
            if not ends:
                found = session.end_offsets()
                if not found or set(found) != set(session.engines):
                    return False
                ends.update(found)
            return session.caught_up_with(ends)

        stats = self.run(until=done)
        if timed_out:
            raise ProcessorError(f"not caught up with {self.topics.events} in {timeout_s}s")
        return stats
