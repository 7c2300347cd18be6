"""Public open data: the index and its components per agency and service, per day and month.

No token. ``/open/`` is a Russian page with the latest month and links to the files;
``/open/v1/{agencies|services}/{day|month}.{json|csv}`` are the files (schema version 1,
``docs/OPENDATA.md``; ``/open/v1/schema.json`` is its JSON Schema). Numbers are computed
with :func:`api.scorecard.scored` from the same daily rollups as ``/v1/scorecard``, so an
agency's month here equals its scorecard for that month.

Small cells are suppressed (DESIGN §9): a component whose denominator is below the
methodology's threshold has no numerator, denominator or value, and a cell with fewer
journeys started than the threshold shows no count and no index at all. Answers carry an
``ETag`` (a hash of the body; ``If-None-Match`` gets 304) and ``Cache-Control: public``.
``SERVICEPULSE_OPEN_DATA_ENABLED=false`` removes the routes.
"""

from __future__ import annotations

import calendar
import csv
import io
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from api.errors import BadRequest
from api.readmodel import Group
from api.scorecard import MAX_DAYS, Scorer, scored
from contract.aggregates import Rollup

SCHEMA_VERSION: Final = "1"
MAX_MONTHS: Final = 24
Level = Literal["agencies", "services"]
Grain = Literal["day", "month"]


class OpenComponent(BaseModel):
    """One component of one cell; numbers are null when suppressed."""

    code: str
    numerator: int | None
    denominator: int | None
    value: float | None
    suppressed: bool


class OpenRow(BaseModel):
    """One agency or service in one day or month."""

    period: str = Field(description="YYYY-MM-DD (day) or YYYY-MM (month), region time zone")
    agency: str
    service: str | None = Field(description="null in the agencies file")
    name: str
    journeys_started: int | None = Field(description="null when suppressed")
    index: float | None
    level: str | None
    suppressed: bool = Field(description="the whole cell is below the small-cell threshold")
    components: list[OpenComponent]


class OpenFile(BaseModel):
    """An open data file."""

    schema_version: str = SCHEMA_VERSION
    licence: str
    publisher: str
    level: Level
    grain: Grain
    date_from: date = Field(serialization_alias="from")
    date_to: date = Field(serialization_alias="to")
    small_cell: int
    rows: list[OpenRow]


def _months(start: date, end: date) -> list[tuple[str, date, date]]:
    """(YYYY-MM, first day, last day) of each month of the period, cut to the period;
    to the end of the calendar (December 9999) without stepping past it."""
    out = []
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        first, last = date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])
        out.append((f"{y:04d}-{m:02d}", max(first, start), min(last, end)))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _month_count(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month + 1


def build(
    scorer: Scorer,
    level: Level,
    grain: Grain,
    start: date,
    end: date,
    licence: str,
) -> OpenFile:
    """The rows of one open data file (see the module docstring)."""
    catalog, methodology = scorer.catalog, scorer.methodology
    small = methodology.standards.small_cell
    if grain == "day":
        spans = [
            (d.isoformat(), d, d)
            for d in (start + timedelta(days=i) for i in range((end - start).days + 1))
        ]
    else:
        spans = _months(start, end)
    group: Callable[[Group], tuple[str, str | None] | None]
    if level == "agencies":
        group = lambda g: (g.agency, None) if g.agency in catalog.agencies else None  # noqa: E731
    else:
        group = lambda g: (g.agency, g.service) if g.service in catalog.services else None  # noqa: E731
    rows: list[OpenRow] = []
    for label, d0, d1 in spans:
        sums: dict[tuple[str, str | None], Rollup] = scorer.model.period(
            d0.isoformat(), d1.isoformat(), group
        )
        for (agency, service), r in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            if r.started == 0 and r.events == 0:
                continue
            name = (
                catalog.services[service].service.name if service else catalog.agencies[agency].name
            )
            hidden = r.started < small
            sc = scored(r, methodology)
            comps = [
                OpenComponent(
                    code=c.code,
                    numerator=None if hidden else c.numerator,
                    denominator=None if hidden else c.denominator,
                    value=None if hidden else c.value,
                    suppressed=hidden or c.suppressed,
                )
                for c in sc.components
            ]
            rows.append(
                OpenRow(
                    period=label,
                    agency=agency,
                    service=service,
                    name=name,
                    journeys_started=None if hidden else r.started,
                    index=None if hidden or sc.index is None else round(sc.index, 4),
                    level=None if hidden else sc.level,
                    suppressed=hidden,
                    components=comps,
                )
            )
    return OpenFile(
        licence=licence,
        publisher=catalog.file.region.name,
        level=level,
        grain=grain,
        date_from=start,
        date_to=end,
        small_cell=small,
        rows=rows,
    )


CSV_COLUMNS: Final = (
    "period",
    "agency",
    "service",
    "component",
    "numerator",
    "denominator",
    "value",
    "suppressed",
)


def to_csv(f: OpenFile) -> bytes:
    """Long CSV: a row per cell and metric (``index``, ``journeys_started``, components)."""
    buf = io.StringIO()
    buf.write(f"# ServicePulse open data, schema {f.schema_version}; licence: {f.licence}\r\n")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)

    def cell(v: Any) -> Any:
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)

    for r in f.rows:
        base = (r.period, r.agency, r.service or "")
        flag = "true" if r.suppressed else "false"
        w.writerow([*base, "journeys_started", "", "", cell(r.journeys_started), flag])
        w.writerow([*base, "index", "", "", cell(r.index), flag])
        for c in r.components:
            w.writerow(
                [
                    *base,
                    c.code,
                    cell(c.numerator),
                    cell(c.denominator),
                    cell(c.value),
                    "true" if c.suppressed else "false",
                ]
            )
    return ("\ufeff" + buf.getvalue()).encode()


def bounds(scorer: Scorer, grain: Grain, d0: date | None, d1: date | None) -> tuple[date, date]:
    """The first and last day of a file: the asked ones, else the last 30 days or 12
    months up to the newest day held; 400 past the limits."""
    today = scorer.model.watermark()
    last = (today.astimezone(scorer.catalog.tz).date() if today else None) or d1 or date.today()
    end = d1 or last
    try:
        if grain == "day":
            start = d0 or end - timedelta(days=29)
        else:
            start = d0 or (end.replace(day=1) - timedelta(days=335)).replace(day=1)
    except OverflowError:
        # e.g. to=0001-01-01: the default start would be before year 1 (a 500 before)
        default = "30 days" if grain == "day" else "12 months"
        raise BadRequest(
            f"give both from and to: the default {default} up to {end.isoformat()} are "
            "out of the calendar"
        ) from None
    if start > end:
        raise BadRequest(f"from {start.isoformat()} is after to {end.isoformat()}")
    if grain == "day" and (end - start).days + 1 > MAX_DAYS:
        raise BadRequest(f"at most {MAX_DAYS} days per file")
    if grain != "day" and _month_count(start, end) > MAX_MONTHS:
        raise BadRequest(f"at most {MAX_MONTHS} months per file")
    return start, end
