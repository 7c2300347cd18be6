"""Deadline instants and the index arithmetic: pure logic, no broker."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.aggregates import Hist, Rollup, sum_rollups
from contract.catalog import Catalog, Deadline, load_catalog
from contract.deadlines import APPEAL_TERM, DeadlineCalculator
from contract.methodology import load_methodology, score

TZ = ZoneInfo("Asia/Yekaterinburg")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def calc(catalog: Catalog) -> DeadlineCalculator:
    return DeadlineCalculator(catalog)


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> float:
    return datetime(y, m, d, hh, mm, tzinfo=TZ).timestamp()


def local(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, TZ)


def test_working_days_skip_weekends_and_holidays(calc: DeadlineCalculator) -> None:
    # Submitted Friday 2026-03-06; Mar 7-8 weekend, Mar 9 a holiday (Mar 8 moved):
    # 2 working days are Tue Mar 10 and Wed Mar 11, so the term ends at 24:00 of Mar 11.
    end = calc.deadline(Deadline(working_days=2), at(2026, 3, 6, 17))
    assert local(end) == datetime(2026, 3, 12, 0, 0, tzinfo=TZ)


def test_calendar_days_move_off_a_non_working_last_day(calc: DeadlineCalculator) -> None:
    # 3 calendar days from Thu 2026-03-05 end on Sun Mar 8 -> next working day Tue Mar 10
    end = calc.deadline(Deadline(calendar_days=3), at(2026, 3, 5, 9))
    assert local(end) == datetime(2026, 3, 11, 0, 0, tzinfo=TZ)
    # and one that ends on a working day stays: Mon 2026-11-23 + 3 = Thu Nov 26
    end = calc.deadline(Deadline(calendar_days=3), at(2026, 11, 23, 23, 59))
    assert local(end) == datetime(2026, 11, 27, 0, 0, tzinfo=TZ)


def test_hours_are_exact(calc: DeadlineCalculator) -> None:
    start = at(2026, 12, 30, 15, 30)
    assert calc.deadline(Deadline(hours=48), start) == start + 48 * 3600


def test_term_starts_the_day_after_by_local_day(calc: DeadlineCalculator) -> None:
    # 23:30 local on Monday is still Monday even though it is Monday 18:30 UTC
    mon_late = at(2026, 11, 23, 23, 30)
    mon_early = at(2026, 11, 23, 0, 5)
    d = Deadline(working_days=1)
    assert calc.deadline(d, mon_late) == calc.deadline(d, mon_early)
    assert local(calc.deadline(d, mon_late)) == datetime(2026, 11, 25, 0, 0, tzinfo=TZ)


def test_appeal_term_is_thirty_calendar_days(calc: DeadlineCalculator) -> None:
    end = calc.deadline(APPEAL_TERM, at(2026, 10, 1))
    # Oct 1 + 30 = Oct 31 (Saturday) -> Monday Nov 2 is a working day
    assert local(end) == datetime(2026, 11, 3, 0, 0, tzinfo=TZ)


def test_new_year_holidays(calc: DeadlineCalculator, catalog: Catalog) -> None:
    assert not catalog.is_working_day(date(2026, 1, 9))
    end = calc.deadline(Deadline(working_days=1), at(2025, 12, 31))
    assert local(end).date() == date(2026, 1, 13)  # Jan 12 is the first working day


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1)),
    st.integers(min_value=1, max_value=40),
)
def test_working_day_deadlines_are_midnight_after_a_working_day(start: datetime, n: int) -> None:
    cat = load_catalog()
    c = DeadlineCalculator(cat)
    end = local(c.deadline(Deadline(working_days=n), start.replace(tzinfo=TZ).timestamp()))
    assert (end.hour, end.minute) == (0, 0)
    last = (end - timedelta(days=1)).date()
    assert cat.is_working_day(last)
    # exactly n working days lie strictly after the start day, up to the last day
    day, count = start.date(), 0
    while day < last:
        day += timedelta(days=1)
        count += cat.is_working_day(day)
    assert count == n


def test_index_renormalises_over_components_with_data() -> None:
    m = load_methodology()
    r = Rollup(submitted=80, abandoned=20, feedback={"5": 3, "4": 1, "1": 4})
    s = score(r, m)
    assert s.counted == ("completion", "satisfaction")
    comp = {c.code: c for c in s.components}
    assert (comp["completion"].numerator, comp["completion"].denominator) == (80, 100)
    assert (comp["satisfaction"].numerator, comp["satisfaction"].denominator) == (4, 8)
    assert comp["on_time"].value is None
    w_c, w_s = comp["completion"].weight, comp["satisfaction"].weight
    expected = 100 * (w_c * 0.8 + w_s * 0.5) / (w_c + w_s)
    assert s.index == pytest.approx(expected)
    assert s.level == ("advanced" if expected >= 60 else "satisfactory")


def test_index_levels_and_empty() -> None:
    m = load_methodology()
    assert m.level(60) == "advanced"
    assert m.level(59.99) == "satisfactory"
    assert m.level(40) == "satisfactory"
    assert m.level(39.9) == "basic"
    empty = score(Rollup(), m)
    assert empty.index is None
    assert empty.counted == ()


def test_rollups_sum_exactly() -> None:
    a = Rollup(started=2, steps={"x": 1}, decisions={"approved:on_time": 1})
    a.hist("decision_seconds").observe("decision_seconds", 3600.0)
    b = Rollup(started=3, steps={"x": 2, "y": 1})
    b.hist("decision_seconds").observe("decision_seconds", 10 * 86400.0)
    total = sum_rollups([a, b])
    assert total.started == 5
    assert total.steps == {"x": 3, "y": 1}
    h = total.decision_seconds
    assert isinstance(h, Hist)
    assert h.count == 2
    assert h.sum_ms == 3_600_000 + 864_000_000
    assert a.started == 2  # inputs untouched
