"""Deadline instants, as Russian administrative terms are read (DESIGN.md section 5).

A term of N calendar or working days starts on the day after the day of the triggering
event (submission, else start; receipt for appeals) and ends at 24:00 local time of its
last day. Working days come from the catalog's production calendar. A calendar-day term
whose last day is not a working day moves to the next working day. A term in hours ends
exactly that long after the event. "On time" means at or before the deadline instant.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from contract.catalog import Catalog, Deadline

#: a citizen's appeal under 59-FZ (the methodology's default ``appeal_term_days``)
APPEAL_TERM = Deadline(calendar_days=30)
#: a complaint about a service under 210-FZ art. 11.2 (``complaint_term_working_days``)
COMPLAINT_TERM = Deadline(working_days=15)


class DeadlineCalculator:
    """Computes deadline instants (epoch seconds) for one catalog; memoised per day.

    The cache is keyed by the local start date, so the cost per event is one dict lookup
    after the first event of each day and term.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._tz: ZoneInfo = catalog.tz
        self._is_working: Callable[[date], bool] = catalog.is_working_day
        self._end_of_term = lru_cache(maxsize=65_536)(self._end_of_term_uncached)

    def local_date(self, epoch: float) -> date:
        """The calendar date of an instant in the catalog's time zone."""
        return datetime.fromtimestamp(epoch, self._tz).date()

    def deadline(self, term: Deadline, start_epoch: float) -> float:
        """The deadline instant (epoch seconds) of ``term`` counted from ``start_epoch``."""
        if term.hours is not None:
            return start_epoch + term.hours * 3600.0
        return self._end_of_term(self.local_date(start_epoch), term.kind, term.amount)

    def _end_of_term_uncached(self, start_day: date, kind: str, amount: int) -> float:
        if kind == "working_days":
            day = start_day
            left = amount
            while left:
                day += timedelta(days=1)
                if self._is_working(day):
                    left -= 1
        else:
            day = start_day + timedelta(days=amount)
            while not self._is_working(day):
                day += timedelta(days=1)
        # 24:00 of the last day is 00:00 of the next; built in local time so DST-free
        # and DST zones alike give local midnight.
        end = datetime.combine(day + timedelta(days=1), time(0), self._tz)
        return end.timestamp()
