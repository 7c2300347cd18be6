"""Appeals (received -> answered) and interagency requests (requested -> responded).

Appeals are answered on time when answered at or before the end of their term from
receipt: 30 calendar days for a citizen's appeal (59-FZ, ``attrs.kind`` ``appeal``, the
default), 15 working days for a complaint about a service (210-FZ art. 11.2,
``complaint``); interagency requests within PT48H of the request (the methodology's
standard). An answer or response with no known receipt or request is counted with
timeliness ``unknown`` (left out of the ratios). Repeats of a receipt, answer, request
or response (new event ids) are counted in ``late`` and change nothing else.
"""

from __future__ import annotations

from contract.aggregates import Dims, GaugeDims
from contract.events import Event
from processors.context import Context
from processors.rollups import (
    APPEALS_OPEN,
    APPEALS_OVERDUE,
    INTERAGENCY_OPEN,
    GaugeBook,
    Records,
    RollupBook,
)
from processors.state import Appeal, Request, encode
from processors.watermark import APPEAL_OVERDUE, EVICT_APPEAL, EVICT_REQUEST, Timers


class AppealBook:
    """Appeals and interagency requests of one partition.

    Args:
        ctx: shared catalog facts.
        rollups: where counts go.
        gauges: where live counts go.
        timers: the partition's event-time timers.
    """

    def __init__(self, ctx: Context, rollups: RollupBook, gauges: GaugeBook, timers: Timers):
        self.ctx = ctx
        self.rollups = rollups
        self.gauges = gauges
        self.timers = timers
        self.appeals: dict[str, Appeal] = {}
        self.requests: dict[str, Request] = {}
        self.dirty_appeals: set[str] = set()
        self.dirty_requests: set[str] = set()
        # the timer handlers below do nothing for a missing key
        timers.watch(APPEAL_OVERDUE, self.appeals)
        timers.watch(EVICT_APPEAL, self.appeals)
        timers.watch(EVICT_REQUEST, self.requests)

    def _late(self, dims: Dims, t: int, reason: str) -> None:
        r = self.rollups.cell(self.ctx.day(t), dims, "late")
        r.late[reason] = r.late.get(reason, 0) + 1

    @staticmethod
    def _cell(dims: Dims) -> GaugeDims:
        return dims.gauge()

    # -- appeals ---------------------------------------------------------------------

    def received(self, ev: Event, t: int, dims: Dims) -> None:
        """``appeal.received``: opens the appeal and its term (by ``attrs.kind``)."""
        key = f"{ev.agency}|{ev.attrs.appeal}"
        a = self.appeals.get(key)
        if a is None:
            kind = ev.attrs.kind.value if ev.attrs.kind is not None else "appeal"
            due = self.ctx.appeal_deadline_ms(t, kind)
            if self.ctx.beyond_calendar(due):
                self.rollups.cell(self.ctx.day(t), dims, "beyond_calendar").beyond_calendar += 1
            a = self.appeals[key] = Appeal(dims=dims, received_ms=t, deadline_ms=due)
            self.gauges.add(self._cell(dims), APPEALS_OPEN, 1)
            self.timers.add(due, APPEAL_OVERDUE, key)
        elif a.received_ms is None:
            a.received_ms = t
        else:
            self._late(a.dims, t, "repeated_appeal")
            return
        self.rollups.cell(self.ctx.day(t), dims, "appeals_received").appeals_received += 1
        self.dirty_appeals.add(key)

    def answered(self, ev: Event, t: int, dims: Dims) -> None:
        """``appeal.answered``: closes the appeal, on time or late."""
        key = f"{ev.agency}|{ev.attrs.appeal}"
        a = self.appeals.get(key)
        if a is None:
            a = self.appeals[key] = Appeal(dims=dims)
            timeliness = "unknown"
        elif a.answered_ms is not None:
            self._late(a.dims, t, "repeated_answer")
            return
        else:
            assert a.deadline_ms is not None  # noqa: S101 - set with received_ms
            timeliness = "on_time" if t <= a.deadline_ms else "late"
            cell = self._cell(a.dims)
            self.gauges.add(cell, APPEALS_OPEN, -1)
            if a.overdue:
                self.gauges.add(cell, APPEALS_OVERDUE, -1)
                a.overdue = False
        a.answered_ms = t
        r = self.rollups.cell(self.ctx.day(t), a.dims, "appeals_answered")
        r.appeals_answered[timeliness] = r.appeals_answered.get(timeliness, 0) + 1
        self.timers.add(t + self.ctx.horizon_ms, EVICT_APPEAL, key)
        self.dirty_appeals.add(key)

    def fire_overdue(self, key: str, due: int) -> None:
        """Mark an open appeal overdue once the watermark passed its term."""
        a = self.appeals.get(key)
        if a is None or a.answered_ms is not None or a.overdue or a.deadline_ms != due:
            return
        a.overdue = True
        self.gauges.add(self._cell(a.dims), APPEALS_OVERDUE, 1)
        self.dirty_appeals.add(key)

    def fire_evict_appeal(self, key: str, due: int) -> None:
        """Forget an answered appeal once the horizon has passed."""
        a = self.appeals.get(key)
        if (
            a is not None
            and a.answered_ms is not None
            and a.answered_ms + self.ctx.horizon_ms == due
        ):
            del self.appeals[key]
            self.dirty_appeals.add(key)

    # -- interagency -----------------------------------------------------------------

    def requested(self, ev: Event, t: int, dims: Dims) -> None:
        """``interagency.requested``: opens a request to another agency."""
        key = f"{ev.agency}|{ev.journey}|{ev.attrs.request}"
        q = self.requests.get(key)
        if q is None:
            q = self.requests[key] = Request(dims=dims, requested_ms=t)
            self.gauges.add(self._cell(dims), INTERAGENCY_OPEN, 1)
        elif q.requested_ms is None:
            q.requested_ms = t
        else:
            self._late(q.dims, t, "repeated_request")
            return
        r = self.rollups.cell(self.ctx.day(t), q.dims, "interagency_requested")
        r.interagency_requested += 1
        self.dirty_requests.add(key)

    def responded(self, ev: Event, t: int, dims: Dims) -> None:
        """``interagency.responded``: closes the request, within PT48H or over."""
        key = f"{ev.agency}|{ev.journey}|{ev.attrs.request}"
        q = self.requests.get(key)
        if q is None:
            q = self.requests[key] = Request(dims=dims)
            r = self.rollups.cell(self.ctx.day(t), dims, "interagency_responded")
            label = "unknown"
        elif q.responded_ms is not None:
            self._late(q.dims, t, "repeated_response")
            return
        else:
            r = self.rollups.cell(self.ctx.day(t), q.dims, "interagency_responded")
            if q.requested_ms is None:
                label = "unknown"
            else:
                took = max(0, t - q.requested_ms)
                label = "within" if took <= self.ctx.interagency_ms else "over"
                r.hist("interagency_seconds").observe("interagency_seconds", took / 1000)
                self.gauges.add(self._cell(q.dims), INTERAGENCY_OPEN, -1)
        q.responded_ms = t
        r.interagency_responded[label] = r.interagency_responded.get(label, 0) + 1
        self.timers.add(t + self.ctx.horizon_ms, EVICT_REQUEST, key)
        self.dirty_requests.add(key)

    def fire_evict_request(self, key: str, due: int) -> None:
        """Forget a responded request once the horizon has passed."""
        q = self.requests.get(key)
        if (
            q is not None
            and q.responded_ms is not None
            and q.responded_ms + self.ctx.horizon_ms == due
        ):
            del self.requests[key]
            self.dirty_requests.add(key)

    # -- changelog -------------------------------------------------------------------

    def flush(self) -> Records:
        """Changelog records of the appeals and requests changed since the last flush."""
        out: Records = []
        for k in self.dirty_appeals:
            a = self.appeals.get(k)
            out.append((f"a|{k}".encode(), None if a is None else encode(a)))
        for k in self.dirty_requests:
            q = self.requests.get(k)
            out.append((f"i|{k}".encode(), None if q is None else encode(q)))
        self.dirty_appeals = set()
        self.dirty_requests = set()
        return out

    def rebuild(self) -> None:
        """Recount gauges and reschedule timers from restored appeals and requests."""
        horizon = self.ctx.horizon_ms
        for key, a in self.appeals.items():
            if a.answered_ms is None:
                if a.received_ms is not None:
                    self.gauges.add(self._cell(a.dims), APPEALS_OPEN, 1)
                if a.overdue:
                    self.gauges.add(self._cell(a.dims), APPEALS_OVERDUE, 1)
                elif a.deadline_ms is not None:
                    self.timers.add(a.deadline_ms, APPEAL_OVERDUE, key)
            else:
                self.timers.add(a.answered_ms + horizon, EVICT_APPEAL, key)
        for key, q in self.requests.items():
            if q.responded_ms is None:
                self.gauges.add(self._cell(q.dims), INTERAGENCY_OPEN, 1)
            else:
                self.timers.add(q.responded_ms + horizon, EVICT_REQUEST, key)
