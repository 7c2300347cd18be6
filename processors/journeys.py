"""The journey and case state machine (DESIGN.md section 5).

Journeys go open -> submitted -> decided, or open -> abandoned (explicitly, or on
portal and mobile when the watermark passes last activity + the service's
``abandon_after``). A submitted application cancelled before its decision is counted as
``withdrawn`` (it was already resolved as submitted). Lifecycle events of a journey
already decided or abandoned are counted in ``late`` and change nothing else.

Every count lands on the event-time day of the instant it happened, in the cell of the
journey's dimensions (taken from its first event), so a journey's funnel, completion
and decisions are counted in one cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from contract.aggregates import Dims, GaugeDims
from contract.catalog import FORM_CHANNELS
from contract.events import Event, EventType
from processors.archive import ClosedJourneys
from processors.context import Context
from processors.rollups import (
    OPEN_JOURNEYS,
    OVERDUE,
    PENDING,
    GaugeBook,
    Records,
    RollupBook,
)
from processors.state import (
    ABANDONED,
    DECIDED,
    OPEN,
    SUBMITTED,
    Case,
    Journey,
    encode,
)
from processors.watermark import ABANDON, EVICT_CASE, Timers
from processors.watermark import OVERDUE as OVERDUE_TIMER

SELF_SERVICE: Final = FORM_CHANNELS
DIGITAL: Final = frozenset({"portal", "mobile", "proactive"})

_STEP: Final = EventType.JOURNEY_STEP
#: Gauge bits of a journey: open, pending, overdue.
_B_OPEN: Final = 1
_B_PENDING: Final = 2
_B_OVERDUE: Final = 4


def gauge_bits(j: Journey) -> int:
    """Which live gauges a journey counts in (bit mask of open, pending, overdue)."""
    st = j.status
    if st == OPEN:
        b = _B_OPEN
        if j.started_ms is not None and j.dims.channel not in SELF_SERVICE:
            b |= _B_PENDING
    elif st == SUBMITTED:
        b = _B_PENDING
    else:
        return 0
    if j.overdue and b & _B_PENDING:
        b |= _B_OVERDUE
    return b


class JourneyMachine:
    """Journeys and cases of one partition, applying events and timers to them.

    Args:
        ctx: shared catalog facts.
        rollups: where counts go.
        gauges: where live counts go.
        timers: the partition's event-time timers.
        gauge_cells: memo of the gauge cell of each dims tuple (shared per engine).
        archive: where closed journeys go.
    """

    def __init__(
        self,
        ctx: Context,
        rollups: RollupBook,
        gauges: GaugeBook,
        timers: Timers,
        gauge_cells: dict[Dims, GaugeDims],
        archive: ClosedJourneys,
    ) -> None:
        self.ctx = ctx
        self.archive = archive
        self._gone: set[str] = set()
        self.rollups = rollups
        self.gauges = gauges
        self.timers = timers
        self.journeys: dict[str, Journey] = {}
        self.cases: dict[str, Case] = {}
        self.dirty_journeys: set[str] = set()
        self.dirty_cases: set[str] = set()
        self._gcells = gauge_cells
        # fire_abandon, fire_overdue and fire_evict_case do nothing for a missing key
        timers.watch(ABANDON, self.journeys)
        timers.watch(OVERDUE_TIMER, self.journeys)
        timers.watch(EVICT_CASE, self.cases)
        self._handlers: dict[EventType, Callable[[Journey, str, Event, int], None]] = {
            EventType.JOURNEY_STARTED: self._started,
            EventType.JOURNEY_STEP: self._step,
            EventType.JOURNEY_ERROR: self._error,
            EventType.JOURNEY_SUBMITTED: self._submitted,
            EventType.JOURNEY_ABANDONED: self._abandoned,
            EventType.DECISION_MADE: self._decided,
        }

    # -- events ----------------------------------------------------------------------

    def apply(self, ev: Event, t: int, dims: Dims) -> None:
        """Apply one lifecycle event (``journey.*``, ``decision.made``) at ``t`` (ms)."""
        key = f"{ev.agency}|{ev.journey}"
        j = self.journeys.get(key)
        if j is None:
            closed = self.archive.get(key)
            if closed is not None:
                self._late_closed(closed[0], closed[1], t)
                return
            j = Journey(dims=dims, last_ms=t, case=ev.case)
            self.journeys[key] = j
            before = 0
            if ev.case is not None:
                self._join_case(j, t)
            if dims.channel in SELF_SERVICE and dims.service in self.ctx.services:
                self.timers.add(t + self.ctx.services[dims.service].abandon_ms, ABANDON, key)
        elif ev.type is _STEP:
            # a step of a known journey changes only its steps, none of the gauge bits:
            # half the events, so no recount (a journey's first event still recounts)
            self._step(j, key, ev, t)
            if t > j.last_ms:
                j.last_ms = t
            if j.status < DECIDED:
                self.dirty_journeys.add(key)
            return
        else:
            before = gauge_bits(j)
        self._handlers[ev.type](j, key, ev, t)
        if t > j.last_ms:
            j.last_ms = t
        self._regauge(j, before)
        if j.status < DECIDED:
            self.dirty_journeys.add(key)

    def _late(self, j: Journey, t: int, reason: str) -> None:
        r = self.rollups.cell(self.ctx.day(t), j.dims, "late")
        r.late[reason] = r.late.get(reason, 0) + 1

    def _late_closed(self, dims: Dims, status: int, t: int) -> None:
        reason = "after_decided" if status == DECIDED else "after_abandoned"
        r = self.rollups.cell(self.ctx.day(t), dims, "late")
        r.late[reason] = r.late.get(reason, 0) + 1

    def _started(self, j: Journey, key: str, ev: Event, t: int) -> None:
        if j.started_ms is not None:
            self._late(j, t, "repeated_start")
            return
        j.started_ms = t
        r = self.rollups.cell(self.ctx.day(t), j.dims, "started")
        r.started += 1
        if j.dims.channel in DIGITAL:
            r.started_digital += 1
        if j.status == OPEN and j.dims.channel not in SELF_SERVICE:
            self._set_deadline(j, key, t)

    def _step(self, j: Journey, key: str, ev: Event, t: int) -> None:
        step = ev.attrs.step
        info = self.ctx.services.get(j.dims.service)
        if step is None or info is None:
            return
        bit = info.step_bits.get(step, 0)
        if bit and not j.steps & bit:
            j.steps |= bit
            r = self.rollups.cell(self.ctx.day(t), j.dims, "steps")
            r.steps[step] = r.steps.get(step, 0) + 1

    def _error(self, j: Journey, key: str, ev: Event, t: int) -> None:
        code = self.ctx.catalog.error_code(j.dims.service, ev.attrs.code)
        r = self.rollups.cell(self.ctx.day(t), j.dims, "errors")
        r.errors[code] = r.errors.get(code, 0) + 1
        j.had_error = True

    def _submitted(self, j: Journey, key: str, ev: Event, t: int) -> None:
        if j.status == SUBMITTED:
            self._late(j, t, "repeated_submit")
            return
        j.status = SUBMITTED
        j.submitted_ms = t
        r = self.rollups.cell(self.ctx.day(t), j.dims, "submitted")
        r.submitted += 1
        r.resolved += 1
        if j.had_error:
            r.resolved_with_errors += 1
        if j.started_ms is not None:
            r.hist("form_seconds").observe("form_seconds", max(0, t - j.started_ms) / 1000)
        info = self.ctx.services.get(j.dims.service)
        # only a self-service form has steps; MFC and office applications never skip any
        if (
            info is not None
            and j.dims.channel in SELF_SERVICE
            and j.steps & info.all_steps != info.all_steps
        ):
            r.skipped_steps += 1
        self._set_deadline(j, key, t)

    def _abandoned(self, j: Journey, key: str, ev: Event, t: int) -> None:
        if j.status == OPEN:
            r = self.rollups.cell(self.ctx.day(t), j.dims, "abandoned")
            r.abandoned += 1
            r.resolved += 1
            if j.had_error:
                r.resolved_with_errors += 1
        else:
            self.rollups.cell(self.ctx.day(t), j.dims, "withdrawn").withdrawn += 1
        self._close(j, key, ABANDONED, t)

    def _decided(self, j: Journey, key: str, ev: Event, t: int) -> None:
        base = j.submitted_ms if j.submitted_ms is not None else j.started_ms
        r = self.rollups.cell(self.ctx.day(t), j.dims, "decisions")
        info = self.ctx.services.get(j.dims.service)
        if base is None or info is None:
            timeliness = "unknown"
        else:
            due = self.ctx.deadline_ms(info.deadline, base)
            timeliness = "on_time" if t <= due else "late"
            r.hist("decision_seconds").observe("decision_seconds", max(0, t - base) / 1000)
        outcome = ev.attrs.outcome.value if ev.attrs.outcome is not None else "unknown"
        k = f"{outcome}:{timeliness}"
        r.decisions[k] = r.decisions.get(k, 0) + 1
        self._close(j, key, DECIDED, t)

    # -- transitions -----------------------------------------------------------------

    def _set_deadline(self, j: Journey, key: str, base_ms: int) -> None:
        info = self.ctx.services.get(j.dims.service)
        if info is None:
            return
        due = self.ctx.deadline_ms(info.deadline, base_ms)
        if info.deadline.hours is None and self.ctx.beyond_calendar(due):
            was = j.deadline_ms is not None and self.ctx.beyond_calendar(j.deadline_ms)
            if not was:  # once per journey, on the deadline that first left the calendar
                self.rollups.cell(
                    self.ctx.day(base_ms), j.dims, "beyond_calendar"
                ).beyond_calendar += 1
        j.deadline_ms = due
        j.overdue = False
        self.timers.add(j.deadline_ms, OVERDUE_TIMER, key)

    def _close(self, j: Journey, key: str, status: int, t: int) -> None:
        j.status = status
        j.closed_ms = t
        j.deadline_ms = None
        j.overdue = False
        del self.journeys[key]
        self.archive.add(key, j.dims, status, t)
        self.dirty_journeys.discard(key)
        if j.persisted:
            self._gone.add(key)
        if j.case is not None:
            self._resolve_case(j, t, decided=status == DECIDED)

    def _regauge(self, j: Journey, before: int) -> None:
        after = gauge_bits(j)
        if after == before:
            return
        cell = self._gcell(j.dims)
        changed = after ^ before
        if changed & _B_OPEN:
            self.gauges.add(cell, OPEN_JOURNEYS, 1 if after & _B_OPEN else -1)
        if changed & _B_PENDING:
            self.gauges.add(cell, PENDING, 1 if after & _B_PENDING else -1)
        if changed & _B_OVERDUE:
            self.gauges.add(cell, OVERDUE, 1 if after & _B_OVERDUE else -1)

    def _gcell(self, dims: Dims) -> GaugeDims:
        cell = self._gcells.get(dims)
        if cell is None:
            cell = self._gcells[dims] = dims.gauge()
        return cell

    # -- cases -----------------------------------------------------------------------

    def _join_case(self, j: Journey, t: int) -> None:
        ckey = j.case or ""
        c = self.cases.get(ckey)
        if c is None:
            c = self.cases[ckey] = Case(dims=j.dims, started_ms=t)
            self.rollups.cell(self.ctx.day(t), j.dims, "cases_started").cases_started += 1
        elif t < c.started_ms:
            c.started_ms = t
        c.open += 1
        c.idle_ms = None
        self.dirty_cases.add(ckey)

    def _resolve_case(self, j: Journey, t: int, *, decided: bool) -> None:
        ckey = j.case or ""
        c = self.cases.get(ckey)
        if c is None:
            return
        c.open -= 1
        if decided:
            c.decided = True
        if c.open <= 0:
            if c.decided and not c.completed:
                c.completed = True
                r = self.rollups.cell(self.ctx.day(t), c.dims, "cases_completed")
                r.cases_completed += 1
                r.hist("case_seconds").observe("case_seconds", max(0, t - c.started_ms) / 1000)
            c.idle_ms = t
            self.timers.add(t + self.ctx.horizon_ms, EVICT_CASE, ckey)
        self.dirty_cases.add(ckey)

    # -- timers ----------------------------------------------------------------------

    def fire_abandon(self, key: str, due: int) -> None:
        """Abandon an idle portal/mobile journey whose timeout the watermark passed."""
        j = self.journeys.get(key)
        if j is None or j.status != OPEN or j.dims.channel not in SELF_SERVICE:
            return
        info = self.ctx.services.get(j.dims.service)
        if info is None:
            return
        at = j.last_ms + info.abandon_ms
        if at > due:
            self.timers.add(at, ABANDON, key)
            return
        before = gauge_bits(j)
        r = self.rollups.cell(self.ctx.day(at), j.dims, "abandoned_timeout")
        r.abandoned += 1
        r.abandoned_timeout += 1
        r.resolved += 1
        if j.had_error:
            r.resolved_with_errors += 1
        self._close(j, key, ABANDONED, at)
        self._regauge(j, before)

    def fire_overdue(self, key: str, due: int) -> None:
        """Mark a pending journey overdue once the watermark passed its deadline."""
        j = self.journeys.get(key)
        if j is None or j.overdue or j.deadline_ms != due:
            return
        before = gauge_bits(j)
        if not before & _B_PENDING:
            return
        j.overdue = True
        self._regauge(j, before)
        self.dirty_journeys.add(key)

    def fire_evict_case(self, key: str, due: int) -> None:
        """Forget a case with no open journey once the horizon has passed."""
        c = self.cases.get(key)
        if (
            c is not None
            and c.open <= 0
            and c.idle_ms is not None
            and c.idle_ms + self.ctx.horizon_ms == due
        ):
            del self.cases[key]
            self.dirty_cases.add(key)

    @property
    def has_gone(self) -> bool:
        """Whether journeys closed since the last flush need tombstones."""
        return bool(self._gone)

    # -- changelog -------------------------------------------------------------------

    def flush(self) -> Records:
        """Changelog records of the journeys and cases changed since the last flush."""
        js, cs = self.journeys, self.cases
        out: Records = [(f"j|{k}".encode(), None) for k in self._gone if k not in js]
        self._gone = set()
        for k in self.dirty_journeys:
            j = js.get(k)
            if j is not None:
                j.persisted = True
                out.append((f"j|{k}".encode(), encode(j)))
        for k in self.dirty_cases:
            c = cs.get(k)
            out.append((f"c|{k}".encode(), None if c is None else encode(c)))
        self.dirty_journeys = set()
        self.dirty_cases = set()
        return out

    def rebuild(self) -> None:
        """Recount gauges and reschedule timers from restored journeys and cases."""
        services = self.ctx.services
        horizon = self.ctx.horizon_ms
        for key, j in self.journeys.items():
            self._regauge(j, 0)
            if j.status == OPEN and j.dims.channel in SELF_SERVICE and j.dims.service in services:
                self.timers.add(j.last_ms + services[j.dims.service].abandon_ms, ABANDON, key)
            if gauge_bits(j) & _B_PENDING and not j.overdue and j.deadline_ms is not None:
                self.timers.add(j.deadline_ms, OVERDUE_TIMER, key)
        for key, c in self.cases.items():
            if c.open <= 0 and c.idle_ms is not None:
                self.timers.add(c.idle_ms + horizon, EVICT_CASE, key)
