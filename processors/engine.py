"""The pure per-partition core: records in, state and output records out, no I/O.

:meth:`PartitionEngine.process` decodes and validates a batch of input records, applies
the valid ones in offset order and returns the dead letters; :meth:`flush` returns the
changelog and aggregate records of everything that changed since the previous flush,
one record per changed key. Processing is a deterministic function of the restored
state and the records in offset order (plus the wall clock, for a live partition only),
so the same events give byte-identical outputs however they are batched.

An event that makes the engine raise is isolated, not retried: :meth:`process` catches
the exception, dead-letters the event with reason ``processing_error`` and the
exception's class name (never its message, which may quote data), and goes on with the
next record in the same transaction. So that a failing event leaves no half-applied
state, :meth:`apply` first computes every derived value that can fail (the local days,
the deadlines, the catalog lookups: deterministic functions of the event and the
catalog, memoised where they are costly) and only then changes state, with in-memory
arithmetic only. The processor's own errors (:class:`ProcessorError`, a failed session)
and ``MemoryError`` still propagate: those are infrastructure failures, for which the
session restarts from the changelog.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import msgspec

from contract import aggregates as agg
from contract import deadletter as dl
from contract.aggregates import Dims, GaugeDims, GaugeKey, Key, RestatementKey, RollupKey
from contract.events import (
    MAX_FUTURE,
    SENT_AT_HEADER,
    Event,
    EventType,
    Problem,
    Reason,
    decode_event,
    dedup_identity,
    event_key,
)
from contract.personal import personal_data_rule
from processors import state as st
from processors.appeals import AppealBook
from processors.archive import ClosedJourneys
from processors.context import SLOT_MS, Context, iso
from processors.dedup import CLOCK_KEY, HOUR_MS, DedupStore
from processors.errors import ProcessorError
from processors.journeys import JourneyMachine
from processors.rollups import GaugeBook, Records, RollupBook, Stage
from processors.watermark import (
    ABANDON,
    APPEAL_OVERDUE,
    EVICT_APPEAL,
    EVICT_CASE,
    EVICT_REQUEST,
    OVERDUE,
    Timers,
    WatermarkState,
)

#: no service dimension (a visit keeps the service it was for, where it names one)
_NO_SERVICE: Final = frozenset({EventType.APPEAL_RECEIVED, EventType.APPEAL_ANSWERED})
_UUID: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
#: Lifecycle types whose application computes a deadline or maps an error code.
_PREPARED: Final = frozenset(
    {
        EventType.JOURNEY_STARTED,
        EventType.JOURNEY_SUBMITTED,
        EventType.JOURNEY_ERROR,
        EventType.DECISION_MADE,
        EventType.APPEAL_RECEIVED,
    }
)
# Enum members as module constants and their values in a dict: on the hot path, an
# enum class attribute costs ~100 ns and ``.value`` (a property) ~180 ns, a dict ~15 ns
_VISIT: Final = EventType.VISIT_SERVED
_APPEAL_RECEIVED: Final = EventType.APPEAL_RECEIVED
_JOURNEY_ERROR: Final = EventType.JOURNEY_ERROR
_DECISION_MADE: Final = EventType.DECISION_MADE
_TYPE_VALUE: Final = {t: t.value for t in EventType}
logger = logging.getLogger(__name__)
_MAX_FUTURE_MS: Final = int(MAX_FUTURE.total_seconds() * 1000)
_NEVER: Final = -(1 << 63)


class InputRecord(Protocol):
    """What the engine reads of a consumed record (kafka-python's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A record that failed validation or processing: the record to write, its reason
    and its agency (a catalog agency, or ``""`` if unknown)."""

    key: bytes | None
    value: bytes
    reason: str
    agency: str = ""


@dataclass(slots=True)
class Output:
    """What one flush writes: changelog records (to this partition), aggregates and
    closed days; all in one transaction."""

    changelog: Records = field(default_factory=list)
    aggregates: Records = field(default_factory=list)
    #: ClosedDay records of days made final (to ``<prefix>.days``)
    days: Records = field(default_factory=list)


class PartitionEngine:
    """State and rollups of one input partition.

    Args:
        partition: the input partition number (part of every aggregate key).
        ctx: shared catalog facts and settings.
    """

    def __init__(self, partition: int, ctx: Context) -> None:
        self.partition = partition
        self.ctx = ctx
        self._intern: st.Intern = {}
        self.rollups = RollupBook(partition, self._intern)
        self.gauges = GaugeBook(partition)
        self.timers = Timers()
        self.wm = WatermarkState()
        self.dedup = DedupStore(ctx.horizon_ms)
        self._gcells: dict[Dims, GaugeDims] = {}
        self.closed = ClosedJourneys(ctx.horizon_ms)
        self.journeys = JourneyMachine(
            ctx, self.rollups, self.gauges, self.timers, self._gcells, self.closed
        )
        self.appeals = AppealBook(ctx, self.rollups, self.gauges, self.timers)
        self._wm_dirty = False
        #: a watermark before this changes no day and forgets nothing (only timers fire):
        #: see :func:`_quiet_until`; reset whenever a restore sets the days
        self._quiet_until = _NEVER
        self._restore_buf: dict[bytes, bytes | None] = {}
        #: events of final days (counted ``too_late``), and days made final, for metrics
        self.too_late = 0
        self.days_closed = 0
        j, a = self.journeys, self.appeals
        self._dispatch: dict[EventType, Callable[[Event, int, Dims], None]] = {
            EventType.JOURNEY_STARTED: j.apply,
            EventType.JOURNEY_STEP: j.apply,
            EventType.JOURNEY_SUBMITTED: j.apply,
            EventType.JOURNEY_ABANDONED: j.apply,
            EventType.JOURNEY_ERROR: j.apply,
            EventType.DECISION_MADE: j.apply,
            EventType.INTERAGENCY_REQUESTED: a.requested,
            EventType.INTERAGENCY_RESPONDED: a.responded,
            EventType.APPEAL_RECEIVED: a.received,
            EventType.APPEAL_ANSWERED: a.answered,
            EventType.VISIT_SERVED: self._visit,
            EventType.FEEDBACK_GIVEN: self._feedback,
        }
        self._timer_handlers: dict[int, Callable[[str, int], None]] = {
            ABANDON: j.fire_abandon,
            OVERDUE: j.fire_overdue,
            APPEAL_OVERDUE: a.fire_overdue,
            EVICT_CASE: j.fire_evict_case,
            EVICT_APPEAL: a.fire_evict_appeal,
            EVICT_REQUEST: a.fire_evict_request,
        }

    # -- input -----------------------------------------------------------------------

    def process(self, records: Iterable[InputRecord]) -> list[DeadLetterRecord]:
        """Validate and apply records in offset order; returns the dead letters."""
        catalog = self.ctx.catalog
        check = catalog.check
        earliest = self.ctx.earliest
        apply = self.apply
        dead: list[DeadLetterRecord] = []
        for rec in records:
            raw = rec.value
            ts = rec.timestamp
            if raw is None:
                dead.append(
                    self._dead(rec, [Problem("", Reason.NOT_AN_OBJECT, "record has no value")])
                )
                continue
            # the future limit is checked here in epoch ms (same rule as decode_event's
            # `now`), saving a datetime per record on the hot path
            result = decode_event(raw, None, earliest)
            if isinstance(result, list):
                dead.append(self._dead(rec, result))
                continue
            t = round(result.occurred_at.timestamp() * 1000)
            problems = [_future(result, ts)] if t > ts + _MAX_FUTURE_MS else check(result)
            if problems:
                dead.append(self._dead(rec, problems, result))
                continue
            try:
                # the key rule and the sent_at header inside the event's isolation too
                if rec.key != event_key(result):
                    dead.append(self._dead(rec, [_wrong_key(result)], result))
                    continue
                apply(result, ts, t, _sent_at(rec))
            except (ProcessorError, MemoryError):
                raise
            except Exception as exc:  # isolate the event, go on with the batch
                dead.append(self._poisoned(rec, result, exc))
        return dead

    def _poisoned(self, rec: InputRecord, ev: Event, exc: Exception) -> DeadLetterRecord:
        """The dead letter of an event the engine raised on (class name only, no text)."""
        name = type(exc).__name__
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
        logger.warning(
            "event set aside: %s at %s (topic=%s partition=%d offset=%d); the batch goes on",
            name,
            where,
            rec.topic,
            rec.partition,
            rec.offset,
        )
        problem = Problem(
            "",
            Reason.PROCESSING_ERROR,
            f"the processor could not apply this event ({name}); it was set aside and "
            "counted, every other event is counted as usual",
        )
        return self._dead(rec, [problem], ev, error=name, where=where)

    def _prepare(self, ev: Event, t: int) -> None:
        """Compute every derived value of ``ev`` that can fail, before state changes.

        Each is a deterministic function of the event and the catalog (deadlines
        memoised in the context), so if it succeeds here it succeeds again when the state
        machine asks for it. Local days need no check: :meth:`Context.day` is total (and
        :meth:`apply` computes the event's day before it changes anything).
        """
        ctx = self.ctx
        etype = ev.type
        if etype is _APPEAL_RECEIVED:
            kind = ev.attrs.kind.value if ev.attrs.kind is not None else "appeal"
            ctx.appeal_deadline_ms(t, kind)
            return
        # a lifecycle event: the journey's service is that of its first event (its dims)
        j = self.journeys.journeys.get(f"{ev.agency}|{ev.journey}")
        service = j.dims.service if j is not None else (ev.service or "")
        info = ctx.services.get(service)
        if info is not None:
            ctx.deadline_ms(info.deadline, t)
            if j is not None and etype is _DECISION_MADE:
                base = j.submitted_ms if j.submitted_ms is not None else j.started_ms
                if base is not None:
                    ctx.deadline_ms(info.deadline, base)
        if etype is _JOURNEY_ERROR:
            ctx.catalog.error_code(service, ev.attrs.code)

    def apply(
        self, ev: Event, received_ms: int, t: int | None = None, sent_ms: int | None = None
    ) -> None:
        """Apply one valid, catalog-checked event received at ``received_ms``.

        ``t`` is ``occurred_at`` in epoch ms when the caller has it already; ``sent_ms``
        the producer's ``sent_at`` header, where it stamped one (clock skew).
        """
        ctx = self.ctx
        if t is None:
            t = round(ev.occurred_at.timestamp() * 1000)
        etype = ev.type
        # the channel as its enum member: a StrEnum hashes and compares as its value, so
        # the tuple finds the Dims of the plain strings (built only for a new one)
        if etype in _NO_SERVICE:
            parts = (ev.agency, "", ev.municipality, ev.channel, "")
        elif etype is _VISIT:
            parts = (ev.agency, ev.service or "", ev.municipality, ev.channel, "")
        else:
            parts = (
                ev.agency,
                ev.service or "",
                ev.municipality,
                ev.channel,
                ev.life_situation or "",
            )
        # a plain tuple finds the shared Dims: no NamedTuple is built per event
        dims = self._intern.get(parts)
        if dims is None:
            dims = Dims(*map(str, parts))
            self._intern[dims] = dims
        day = ctx.day(t)
        rollups = self.rollups
        if day < rollups.final_day:
            # its day is final (written to <prefix>.days): nothing moves, not even the
            # dedup state; counted once, on the open day, so a replay of old history shows
            r = rollups.cell(rollups.open_day, dims, "late")
            r.late["too_late"] = r.late.get("too_late", 0) + 1
            self.too_late += 1
            return
        if etype in _PREPARED:
            self._prepare(ev, t)
        agency, uid = dedup_identity(ev)
        if self.dedup.seen(agency, t, received_ms, uid):
            rollups.cell(day, dims, "duplicates").duplicates += 1
            rollups.end_event(received_ms, _TYPE_VALUE[etype])
            return
        r = rollups.cell(day, dims, "events")
        r.events += 1
        # delivery delay; the sender's clock skew only where it stamped its send time
        # a Struct is always true: `or` creates the histogram on first use only
        (r.skew_seconds or r.hist("skew_seconds")).observe(
            "skew_seconds", max(0, received_ms - t) / 1000
        )
        if sent_ms is not None:
            skew = abs(sent_ms - received_ms) / 1000
            (r.sender_skew_seconds or r.hist("sender_skew_seconds")).observe(
                "sender_skew_seconds", skew
            )
        wm = self.wm
        if wm.watermark_ms is not None and t < wm.watermark_ms:
            r.late["behind_watermark"] = r.late.get("behind_watermark", 0) + 1
        self._dispatch[etype](ev, t, dims)
        rollups.end_event(received_ms, _TYPE_VALUE[etype])
        if wm.max_event_ms is None or t > wm.max_event_ms:
            wm.max_event_ms = t
            wm.updated_ms = received_ms
            self._wm_dirty = True
            self._advance(t - ctx.lateness_ms, received_ms)

    def _visit(self, ev: Event, t: int, dims: Dims) -> None:
        wait = ev.attrs.wait_seconds or 0
        r = self.rollups.cell(self.ctx.day(t), dims, "visits")
        k = "true" if wait <= self.ctx.wait_standard_s else "false"
        r.visits[k] = r.visits.get(k, 0) + 1
        ok = f"{ev.attrs.office}:{k}"
        r.office_visits[ok] = r.office_visits.get(ok, 0) + 1
        r.hist("wait_seconds").observe("wait_seconds", wait)

    def _feedback(self, ev: Event, t: int, dims: Dims) -> None:
        k = str(ev.attrs.score)
        r = self.rollups.cell(self.ctx.day(t), dims, "feedback")
        r.feedback[k] = r.feedback.get(k, 0) + 1

    # -- event time --------------------------------------------------------------------

    def _advance(self, new_wm: int, at_ms: int) -> None:
        wm = self.wm
        if wm.watermark_ms is not None and new_wm <= wm.watermark_ms:
            return
        timers, handlers, rollups = self.timers, self._timer_handlers, self.rollups
        while (due := timers.pop_due(new_wm)) is not None:
            handlers[due[1]](due[2], due[0])
            rollups.end_event(at_ms, "watermark")
        wm.watermark_ms = new_wm
        self._wm_dirty = True
        if new_wm < self._quiet_until:
            # the open and final days and the forgetting hours are what they were at the
            # last full pass, so what follows would change nothing
            return
        ctx = self.ctx
        rollups.open_day = ctx.day(new_wm)
        # after the timers: what they counted on a day that becomes final now is in it
        self.days_closed += rollups.finalize(ctx.final_before(new_wm), new_wm)
        if self.dedup.has_legacy:
            self.dedup.expire_legacy(new_wm)
        self.closed.expire(new_wm)
        self._quiet_until = _quiet_until(ctx, new_wm)

    def tick(self, now_ms: int) -> bool:
        """Advance an idle live partition's watermark with the wall clock.

        Does nothing for a partition that is not live (history being replayed).
        Returns whether the watermark moved.
        """
        wm = self.wm
        if not wm.live or wm.watermark_ms is None:
            return False
        new_wm = now_ms - self.ctx.lateness_ms
        if new_wm <= wm.watermark_ms:
            return False
        wm.updated_ms = now_ms
        self._advance(new_wm, now_ms)
        return True

    def mark_live(self, now_ms: int) -> None:
        """After a batch: the partition is live if its newest event is that recent."""
        wm = self.wm
        live = wm.max_event_ms is not None and wm.max_event_ms >= now_ms - self.ctx.lateness_ms
        if live != wm.live:
            wm.live = live
            self._wm_dirty = True

    # -- output ----------------------------------------------------------------------

    def flush(self) -> Output:
        """Records for everything changed since the last flush (one per changed key)."""
        out = Output(
            changelog=[
                *self.journeys.flush(),
                *self.closed.flush(),
                *self.appeals.flush(),
                *self.dedup.flush(),
            ],
            aggregates=[*self.rollups.flush(), *self.gauges.flush()],
            days=self.rollups.flush_days(),
        )
        if self._wm_dirty:
            wm = self.wm
            out.changelog.append(
                (
                    st.META_KEY,
                    st.encode(
                        st.Meta(
                            wm.max_event_ms,
                            wm.watermark_ms,
                            wm.live,
                            wm.updated_ms,
                            self.rollups.final_day,
                        )
                    ),
                )
            )
            if wm.watermark_ms is not None and wm.max_event_ms is not None:
                out.aggregates.append(
                    (
                        agg.watermark_key(self.partition),
                        agg.encode(
                            agg.Watermark(
                                watermark=wm.watermark_ms / 1000,
                                max_event_time=wm.max_event_ms / 1000,
                                updated_at=wm.updated_ms / 1000,
                            )
                        ),
                    )
                )
            self._wm_dirty = False
        return out

    @property
    def dirty(self) -> bool:
        """Whether a flush would write anything."""
        return bool(
            self._wm_dirty
            or self.rollups.pending
            or self.gauges.dirty
            or self.journeys.dirty_journeys
            or self.journeys.dirty_cases
            or self.journeys.has_gone
            or self.appeals.dirty_appeals
            or self.appeals.dirty_requests
        )

    def _dead(
        self,
        rec: InputRecord,
        problems: list[Problem],
        ev: Event | None = None,
        error: str | None = None,
        where: str | None = None,
    ) -> DeadLetterRecord:
        first = problems[0]
        agency = event_id = ""
        if ev is not None:
            agency, event_id = ev.agency, ev.event_id
        elif rec.value is not None:
            agency, event_id = _peek(rec.value)
        if agency not in self.ctx.catalog.agencies:
            agency = ""
        if not _UUID.match(event_id):
            event_id = ""
        value = dl.DeadLetter(
            reason=first.reason.value,
            field=first.field,
            message=first.message,
            problems=[dl.DeadProblem(p.field, p.reason.value, p.message) for p in problems],
            agency=agency,
            event_id=event_id,
            source="processor",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            received_at=iso(rec.timestamp),
            received_day=self.ctx.day(rec.timestamp),
            error=error,
            where=where,
        )
        return DeadLetterRecord(
            _safe_key(rec.key, agency), dl.encode(value), first.reason.value, agency
        )

    # -- restore ---------------------------------------------------------------------

    def restore_changelog(self, key: bytes, value: bytes | None) -> None:
        """Load one changelog record (in offset order; later records win).

        The ``m`` record takes effect at once: with the watermark's day and the final
        day known, :meth:`restore_rollup` stages the closed days' records as they come
        instead of holding them loose (a restore reads the changelog first)."""
        self._restore_buf[key] = value
        if key == st.META_KEY:
            meta = st.decode_meta(value) if value is not None else st.Meta()
            wm_ms = meta.watermark_ms
            self.rollups.open_day = self.ctx.day(wm_ms) if wm_ms is not None else ""
            self.rollups.final_day = meta.final_day
            self._quiet_until = _NEVER

    def restore_aggregate(self, key: Key, value: bytes | None) -> None:
        """Load one aggregate record of this partition (its decoded key, in offset
        order; ``None``: a tombstone, which deletes the key)."""
        if isinstance(key, RollupKey | RestatementKey):
            self.rollups.restore(key, value, self._intern)
        elif isinstance(key, GaugeKey):
            self.gauges.restore(key, value)

    def restore_rollup(
        self, day: str, agency: str, tail: str, value: bytes | None, stage: Stage
    ) -> None:
        """Load one ``r|`` record of this partition, its key split
        (:func:`contract.aggregates.split_rollup_key`), in offset order.

        A final day's record is skipped: the day is on ``<prefix>.days`` and the key's
        tombstone follows it (or compaction removed both). A closed day's record is
        staged as its bytes in ``stage``; only the open day's cells are held loose.
        """
        book = self.rollups
        if day < book.final_day:
            return
        if day < book.open_day:
            stage.add(book, day, agency, tail, value)
            return
        dims = Dims(agency, *tail.split(agg.SEP))
        book.restore(RollupKey(self.partition, day, dims), value, self._intern)

    def finish_restore(self) -> None:
        """Build state from the loaded records; recount gauges and timers."""
        intern = self._intern
        jm, ab = self.journeys, self.appeals
        for key, value in self._restore_buf.items():
            if value is None:
                continue
            text = key.decode()
            kind, _, rest = text.partition("|")
            if kind == "u":
                self.dedup.restore(rest, value)
                continue
            if kind == "d":
                hour, _, block = rest.partition("|")
                self.dedup.restore_legacy(int(hour), int(block), value)
                continue
            if key == CLOCK_KEY:
                self.dedup.restore_clock(value)
                continue
            if kind == "x":
                hour, _, block = rest.partition("|")
                self.closed.restore(int(hour), int(block), value, intern)
                continue
            obj: Any = st.decode(kind, key, value)
            if isinstance(obj, st.Meta):
                self.wm.max_event_ms = obj.max_event_ms
                self.wm.watermark_ms = obj.watermark_ms
                self.wm.live = obj.live
                self.wm.updated_ms = obj.updated_ms
                self.rollups.final_day = obj.final_day
                continue
            obj.dims = intern.setdefault(obj.dims, obj.dims)
            if kind == "j":
                obj.persisted = True
                jm.journeys[rest] = obj
            elif kind == "c":
                jm.cases[rest] = obj
            elif kind == "a":
                ab.appeals[rest] = obj
            elif kind == "i":
                ab.requests[rest] = obj
        self._restore_buf = {}
        self._quiet_until = _NEVER
        self.rollups.drop_final()
        self.dedup.finish_restore(self.wm.watermark_ms)
        self.closed.finish_restore(self.wm.watermark_ms)
        wm_ms = self.wm.watermark_ms
        if wm_ms is not None:
            self.rollups.open_day = self.ctx.day(wm_ms)
            # days final by now but still on the topic (written before the horizon
            # existed, or a horizon lowered since) go to <prefix>.days at the next commit
            before = self.rollups.final_day
            self.days_closed += self.rollups.finalize(self.ctx.final_before(wm_ms), wm_ms)
            if self.rollups.final_day != before:
                self._wm_dirty = True
            self.rollups.pack()
        self.gauges.reset_counts()
        self.timers.clear()
        jm.rebuild()
        ab.rebuild()

    def state_sizes(self) -> dict[str, int]:
        """Number of state entries by kind (for metrics)."""
        return {
            "journeys": len(self.journeys.journeys),
            "closed_journeys": len(self.closed),
            "cases": len(self.journeys.cases),
            "appeals": len(self.appeals.appeals),
            "requests": len(self.appeals.requests),
            "event_ids": len(self.dedup),
            "rollup_cells": len(self.rollups),
            "rollup_days": len(self.rollups.cells),
            "timers": len(self.timers),
        }


def _quiet_until(ctx: Context, watermark_ms: int) -> int:
    """The first watermark after ``watermark_ms`` at which the watermark's side effects
    other than timers may differ: the open day (:meth:`Context.day`, constant within a
    15-minute slot), the final day (the slot of the watermark minus the restatement
    horizon) and the hour behind which closed journeys and legacy dedup blocks are
    forgotten (the watermark minus the horizon, whole hours)."""
    w, r, h = watermark_ms, ctx.restatement_ms, ctx.horizon_ms
    return min(
        (w // SLOT_MS + 1) * SLOT_MS,
        ((w - r) // SLOT_MS + 1) * SLOT_MS + r,
        ((w - h) // HOUR_MS + 1) * HOUR_MS + h,
    )


def _future(ev: Event, received_ms: int) -> Problem:
    now = datetime.fromtimestamp(received_ms / 1000, UTC)
    return Problem(
        "occurred_at",
        Reason.FUTURE_TIMESTAMP,
        "occurred_at is more than 5 minutes ahead of the receiver's clock "
        f"({ev.occurred_at.isoformat()} > {now.isoformat()}); check the sender's clock",
    )


def _sent_at(rec: InputRecord) -> int | None:
    """The ``sent_at`` header (epoch ms) of a record, if it has a well-formed one."""
    for name, value in getattr(rec, "headers", None) or ():
        if name == SENT_AT_HEADER and value is not None and value.isdigit() and len(value) < 16:
            return int(value)
    return None


def _wrong_key(ev: Event) -> Problem:
    rule = (
        "c:<case>"
        if ev.case is not None
        else "j:<agency>:<journey>"
        if ev.journey is not None
        else "a:<agency>:<appeal>"
        if ev.attrs.appeal is not None
        else "e:<event_id>"
    )
    return Problem(
        "",
        Reason.WRONG_KEY,
        f"the Kafka record key must be {rule} (contract.events.event_key, README "
        '"Kafka keys"); a record keyed otherwise could split its journey across partitions',
    )


def _safe_key(key: bytes | None, agency: str) -> bytes | None:
    """The input record's key for its dead letter, unless the key carries something
    that looks like personal data (``j:minsoc:79123456789`` from an old producer): then
    the agency, as the API keys its dead letters."""
    if key is None or personal_data_rule(key.decode("utf-8", "replace")) is None:
        return key
    return agency.encode() or None


def _peek(raw: bytes) -> tuple[str, str]:
    """Agency and event id of an invalid event, if it is JSON at all (never raises)."""
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "", ""
    if not isinstance(obj, dict):
        return "", ""
    agency, eid = obj.get("agency"), obj.get("event_id")
    return (agency if isinstance(agency, str) else "", eid if isinstance(eid, str) else "")
