"""What each page shows, computed from the same code as the API.

Scorecards come from :meth:`api.scorecard.Scorer.scorecard` (what ``/v1/scorecard``
returns), rankings, service tables, funnels, overdue rows and data quality from
:func:`api.reports.build_report` (what ``/v1/reports/period`` returns); only the views the
report has no section for (the daily trend, funnels per channel, office waits, the
end-to-end time of a life situation) are summed here, from the same read model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markupsafe import Markup

from api import perceived
from api.alerts import AlertState
from api.reports import OfficeRow, Report, build_report, office_section, quantile
from api.scorecard import Scope, Scorer, scope_filter, scored
from api.web import charts, ru
from contract.aggregates import Rollup
from contract.catalog import Catalog
from contract.events import CHANNEL_NAMES
from contract.metrics import BUCKETS

TREND_DAYS = 30


@dataclass(frozen=True, slots=True)
class Period:
    """The period a page shows (inclusive days)."""

    start: date
    end: date

    def query(self) -> str:
        """The query string that selects this period."""
        return f"from={self.start.isoformat()}&to={self.end.isoformat()}"


def report(scorer: Scorer, scope: Scope, code: str | None, p: Period) -> Report:
    """The period report of a scope, cached until the read model changes."""
    result: Report = scorer.cached(
        ("web-report", scope, code, p.start, p.end),
        lambda: build_report(scorer, scope, code, p.start, p.end, datetime.now(UTC)),
    )
    return result


def daily_index(
    scorer: Scorer, scope: Scope, code: str | None, days: list[date]
) -> list[float | None]:
    """The index of each day, as ``/v1/scorecard?from=day&to=day`` returns it.

    The same rollups and :func:`api.scorecard.scored` as the scorecard, cached as one
    entry (thirty scorecards would push everything else out of the scorer's cache).
    """
    _code, _name, pred, _agencies = scope_filter(scorer.catalog, scope, code)

    def compute() -> list[float | None]:
        out: list[float | None] = []
        for d in days:
            iso = d.isoformat()
            sums = scorer.model.period(iso, iso, lambda g: 0 if pred(g) else None)
            out.append(scored(sums.get(0, Rollup()), scorer.methodology).index)
        return out

    result: list[float | None] = scorer.cached(("web-trend", scope, code, tuple(days)), compute)
    return result


def trend(scorer: Scorer, scope: Scope, code: str | None, p: Period) -> Markup:
    """SVG of the index per day over the last 30 days of the period."""
    # counted back from the end within the period: no date before year 1 is ever made
    first = p.end - timedelta(days=min((p.end - p.start).days, TREND_DAYS - 1))
    days = [first + timedelta(days=i) for i in range((p.end - first).days + 1)]
    values = daily_index(scorer, scope, code, days)
    m = scorer.methodology
    bands = [(v, name) for name, v in sorted(m.levels.items(), key=lambda kv: kv[1]) if v > 0]
    return charts.trend(
        [(f"{d.day:02d}.{d.month:02d}", v) for d, v in zip(days, values, strict=True)],
        label=f"Индекс клиентоцентричности по дням, {first:%d.%m}–{p.end:%d.%m}",
        bands=[(v, _LEVEL_RU.get(n, n)) for v, n in bands],
    )


_LEVEL_RU = {"advanced": "продвинутый", "satisfactory": "удовлетворительный", "basic": "базовый"}


def ranking_chart(rep: Report) -> Markup:
    """Bars of the agencies' indexes."""
    rows = [
        (a.name, (a.index or 0.0) / 100.0, "—" if a.index is None else f"{a.index:.1f}")
        for a in rep.agencies
    ]
    return charts.bars(rows, label="Индекс ведомств за период")


@dataclass(frozen=True, slots=True)
class ChannelFunnel:
    """The funnel of one service through one channel (all-time totals)."""

    channel: str
    started: int | None
    steps: list[tuple[str, int, float | None]]
    submitted: int | None


def channel_funnels(scorer: Scorer, service: str) -> list[ChannelFunnel]:
    """Per channel: journeys started, reaching each step, submitted (small cells hidden)."""
    idx = scorer.catalog.services[service]
    small = scorer.methodology.standards.small_cell
    per: dict[str, Rollup] = {}
    with scorer.model.lock:
        for (_a, s, _m, channel, _ls), r in scorer.model.totals_view():
            if s == service:
                per.setdefault(channel, Rollup()).add(r)
    out = []
    for channel, r in sorted(per.items(), key=lambda kv: -kv[1].started):
        if r.started < small:
            out.append(ChannelFunnel(channel, None, [], None))
            continue
        steps = []
        for st in idx.service.steps:
            n = r.steps.get(st.code, 0)
            steps.append((st.name, n, n / r.started if r.started else None))
        out.append(ChannelFunnel(channel, r.started, steps, r.submitted))
    return out


def funnel_chart(rep: Report, service: str) -> Markup | None:
    """Bars of the period funnel of a service (empty string without one)."""
    f = next((f for f in rep.funnels if f.service == service), None)
    if f is None or not f.started:
        return None
    rows = [("Начали", 1.0, f"{f.started}")]
    # a step hidden as a small cell in the published report has no bar
    rows += [
        (s.name, s.reached / f.started, f"{s.reached}") for s in f.steps if s.reached is not None
    ]
    return charts.bars(rows, label=f"Воронка заполнения: {f.service_name}")


def decisions(scorer: Scorer, service: str, p: Period) -> dict[str, int]:
    """Decisions of the period by outcome and timeliness (``approved:on_time`` ...)."""
    sums = scorer.model.period(
        p.start.isoformat(), p.end.isoformat(), lambda g: 0 if g[1] == service else None
    )
    return dict(sorted(sums.get(0, Rollup()).decisions.items()))


def offices(scorer: Scorer, agency: str | None, p: Period) -> list[OfficeRow]:
    """Each catalog office of the period: the report's office section (4б) of the region,
    or of one agency (the visits its events record)."""
    if agency is None:
        return office_section(scorer, "region", None, p.start, p.end)
    return office_section(scorer, "agency", agency, p.start, p.end)


def wait_target(scorer: Scorer) -> float | None:
    """The objective on the share of visits within the wait standard (the alert's target)."""
    return next(
        (o.target for o in scorer.methodology.alerts.objectives if o.component == "wait"), None
    )


def office_chart(rows: list[OfficeRow], standard_minutes: int, target: float | None) -> Markup:
    """Bars of the share of visits within the standard per office, the objective as a line."""
    data = [
        (
            o.name,
            o.within_standard.value or 0.0,
            "скрыто" if o.within_standard.value is None else ru.pct(o.within_standard.value),
        )
        for o in rows
    ]
    line = None if target is None else (target, f"Цель: {ru.pct(target, 0)} посещений")
    return charts.bars(
        data,
        label=f"Доля посещений с ожиданием до {standard_minutes} минут по офисам",
        target=line,
    )


@dataclass(frozen=True, slots=True)
class MunicipalityWait:
    """Office waits in one municipality (all-time MFC and office visits)."""

    code: str
    name: str
    visits: int | None
    median_minutes: float | None
    p90_minutes: float | None


def municipality_waits(scorer: Scorer, agencies: list[str] | None) -> list[MunicipalityWait]:
    """Median and 90th percentile of the wait per municipality, over all time: the wait
    histogram is kept by municipality, not by office (see :func:`perceived.office_rollups`)."""
    small = scorer.methodology.standards.small_cell
    bounds = BUCKETS["wait_seconds"]
    rows = []
    for code, r in perceived.office_rollups(scorer.model, agencies).items():
        muni = scorer.catalog.municipalities.get(code)
        n = r.visits.get("true", 0) + r.visits.get("false", 0)
        hidden = n < small
        med = quantile(r.wait_seconds, bounds, 0.5)
        p90 = quantile(r.wait_seconds, bounds, 0.9)
        rows.append(
            MunicipalityWait(
                code=code,
                name=muni.name if muni else code,
                visits=None if hidden else n,
                median_minutes=None if hidden or med is None else med / 60.0,
                p90_minutes=None if hidden or p90 is None else p90 / 60.0,
            )
        )
    rows.sort(key=lambda o: (o.median_minutes is None, -(o.median_minutes or 0.0), o.name))
    return rows


@dataclass(frozen=True, slots=True)
class CaseTime:
    """End-to-end time of a life situation across agencies."""

    started: int
    completed: int
    median_days: float | None
    p90_days: float | None


def case_time(scorer: Scorer, code: str, p: Period) -> CaseTime:
    """Cases of a life situation started and completed, with their end-to-end time."""
    small = scorer.methodology.standards.small_cell
    sums = scorer.model.period(
        p.start.isoformat(), p.end.isoformat(), lambda g: 0 if g[2] == code else None
    )
    r = sums.get(0, Rollup())
    h = r.case_seconds
    enough = h is not None and h.count >= small
    bounds = BUCKETS["case_seconds"]
    med = quantile(h, bounds, 0.5) if enough else None
    p90 = quantile(h, bounds, 0.9) if enough else None
    return CaseTime(
        started=r.cases_started,
        completed=r.cases_completed,
        median_days=None if med is None else med / 86400.0,
        p90_days=None if p90 is None else p90 / 86400.0,
    )


def gaps(rep: Report) -> dict[str, Any]:
    """Measured against perceived of the report's scope: per service and per office area
    (the report's ``perceived`` rows, the same table as in the printed report)."""
    return {
        "services": [g for g in rep.perceived if g.kind == "service"],
        "offices": [g for g in rep.perceived if g.kind != "service"],
        "office_rows": rep.offices,
        "how_to_read": perceived.HOW_TO_READ,
    }


#: How the alerts page names the labels an alert rule sets (DESIGN §8); others as they are.
ALERT_LABELS = {"agency": "ведомство", "service": "услуга", "channel": "канал"}


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as an inspector reads it: names from the catalog, not codes."""

    title: str
    labels: list[str]


def alert_view(alert: AlertState, catalog: Catalog) -> AlertView:
    """The heading and the label line of one alert on the alerts page.

    Rule summaries start with the agency's or the service's code (``{{ $labels.agency }}:``,
    all Alertmanager knows); here that code becomes the catalog's name, and each label
    reads as ``ведомство: Министерство ...`` rather than ``agency=minsoc``. A code the
    catalog does not know is shown as it came.
    """

    def name(label: str, code: str) -> str:
        if label == "agency" and code in catalog.agencies:
            return catalog.agencies[code].display_name
        if label == "service" and code in catalog.services:
            return catalog.services[code].service.name
        if label == "channel":
            return CHANNEL_NAMES.get(code, code)
        return code

    title = alert.summary or alert.name
    for label in ("agency", "service"):
        code = alert.labels.get(label)
        if code and title.startswith(f"{code}:"):
            title = name(label, code) + title[len(code) :]
            break
    labels = [
        f"{ALERT_LABELS[k]}: {name(k, v)}" if k in ALERT_LABELS else f"{k}={v}"
        for k, v in alert.labels.items()
        if k not in ("alertname", "severity")
    ]
    return AlertView(title, labels)
