"""What every partition engine shares: catalog lookups, deadlines, day boundaries.

Times inside the processor are integer epoch milliseconds, so every duration is an
exact integer and the same events give the same totals on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from contract.catalog import Catalog, Deadline
from contract.deadlines import DeadlineCalculator
from contract.events import EARLIEST_OCCURRED_AT
from contract.methodology import Standards

#: Day boundaries are memoised per 15-minute slot: every UTC offset in use is a
#: multiple of 15 minutes, so all instants of one slot share their local date.
SLOT_MS: Final = 900_000


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """Per-service facts the state machine needs on every event."""

    abandon_ms: int
    deadline: Deadline
    step_bits: dict[str, int]
    all_steps: int


@dataclass(slots=True)
class Context:
    """Shared, read-only facts for the engines of one processor.

    Args:
        catalog: the service catalog (time zone, services, calendar).
        standards: the methodology's standards (office wait, interagency term).
        lateness: allowed lateness of the watermark.
        horizon: how long event ids are remembered (receive time) and closed journeys
            (event time).
        earliest: events whose ``occurred_at`` is before this are rejected (too_early).
        restatement_horizon: a day is final for a partition once its watermark passed
            the day's end plus this (docs/AGGREGATES.md, "Bounded history").
    """

    catalog: Catalog
    standards: Standards
    lateness: timedelta = timedelta(minutes=5)
    horizon: timedelta = timedelta(days=7)
    earliest: datetime = EARLIEST_OCCURRED_AT
    restatement_horizon: timedelta = timedelta(days=35)
    calc: DeadlineCalculator = field(init=False)
    lateness_ms: int = field(init=False)
    horizon_ms: int = field(init=False)
    restatement_ms: int = field(init=False)
    wait_standard_s: int = field(init=False)
    interagency_ms: int = field(init=False)
    services: dict[str, ServiceInfo] = field(init=False)
    _days: dict[int, str] = field(init=False, default_factory=dict)
    _deadlines: dict[tuple[str, str, int], int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.calc = DeadlineCalculator(self.catalog)
        self.lateness_ms = int(self.lateness.total_seconds() * 1000)
        self.horizon_ms = int(self.horizon.total_seconds() * 1000)
        self.restatement_ms = int(self.restatement_horizon.total_seconds() * 1000)
        self.wait_standard_s = self.standards.office_wait_seconds
        self.interagency_ms = self.standards.interagency_seconds * 1000
        self.services = {
            code: ServiceInfo(
                abandon_ms=round(idx.abandon_after_s * 1000),
                deadline=idx.service.deadline,
                step_bits={s: 1 << i for s, i in idx.step_order.items()},
                all_steps=(1 << len(idx.step_order)) - 1,
            )
            for code, idx in self.catalog.services.items()
        }

    def day(self, ms: int) -> str:
        """The ISO local date (catalog time zone) of an instant in epoch ms.

        Total: an instant whose local date is outside years 1..9999 (which the contract's
        time limits keep out of the processor) gets the first or last date, never an
        exception.
        """
        slot = ms // SLOT_MS
        d = self._days.get(slot)
        if d is None:
            try:
                local = datetime.fromtimestamp(slot * (SLOT_MS // 1000), self.catalog.tz)
            except (ValueError, OverflowError, OSError):
                local_day = date.min if slot < 0 else date.max
            else:
                local_day = local.date()
            d = self._days[slot] = local_day.isoformat()
        return d

    def final_before(self, watermark_ms: int) -> str:
        """Days before this ISO date are final at ``watermark_ms``: their end (24:00 local)
        plus the restatement horizon is at or before the watermark."""
        return self.day(watermark_ms - self.restatement_ms)

    def deadline_ms(self, term: Deadline, start_ms: int) -> int:
        """The deadline instant (epoch ms) of ``term`` counted from ``start_ms``."""
        if term.hours is not None:
            return start_ms + term.hours * 3_600_000
        # a day term depends only on the local start date: memoised per (date, term)
        key = (self.day(start_ms), term.kind, term.amount)
        due = self._deadlines.get(key)
        if due is None:
            due = self._deadlines[key] = round(self.calc.deadline(term, start_ms / 1000) * 1000)
        return due

    def beyond_calendar(self, due_ms: int) -> bool:
        """Whether a day-term deadline falls after the production calendar's last day
        (its working days were then guessed as Monday to Friday)."""
        until = self.catalog.calendar_until
        # the deadline is 24:00 of its last day, i.e. 00:00 local of the day after
        return until is None or self.day(due_ms - 1) > until.isoformat()

    def appeal_deadline_ms(self, received_ms: int, kind: str = "appeal") -> int:
        """The end of the term of an appeal (59-FZ, calendar days) or a complaint
        (210-FZ art. 11.2, working days) counted from receipt."""
        st = self.standards
        term = (
            Deadline(working_days=st.complaint_term_working_days)
            if kind == "complaint"
            else Deadline(calendar_days=st.appeal_term_days)
        )
        return self.deadline_ms(term, received_ms)


def iso(ms: int) -> str:
    """An instant (epoch ms) as RFC 3339 in UTC, millisecond precision.

    Total, like :meth:`Context.day`: an instant outside years 1..9999 gets the first or
    last representable instant (a record timestamp is not checked by anyone upstream).
    """
    try:
        when = datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        when = (datetime.min if ms < 0 else datetime.max).replace(tzinfo=UTC)
    return when.isoformat(timespec="milliseconds")
