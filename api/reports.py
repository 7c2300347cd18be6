"""Period reports, the numbers: the scorecards of a period as one :class:`Report`.

This is the report that replaces manual KPI reporting. :func:`build_report` computes one
:class:`Report` from the read model (the same rollups and the same
:func:`api.scorecard.scored` as the scorecard endpoint, so the numbers agree);
:mod:`api.report_render` only lays it out as JSON, CSV or a printable Russian page.

Small cells (fewer journeys than the methodology's threshold) are suppressed everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Final

from pydantic import BaseModel, Field

from api import perceived as perceived_
from api.lifecases import CasesOut, cases_of
from api.perceived import GapRow
from api.readmodel import Group, ReadModel
from api.scorecard import (
    ComponentOut,
    Ratio,
    RestatedDay,
    Scope,
    Scorecard,
    Scorer,
    ratio,
    restated_days,
    scope_filter,
    scored,
)
from contract.aggregates import Hist, Rollup
from contract.catalog import CHANNEL_NAMES, FORM_CHANNELS, Catalog
from contract.metrics import BUCKETS

OVERDUE_ROWS: Final = 50
#: a delivery later than this after occurred_at counts as delayed (backfills, late sends)
SKEW_LIMIT_SECONDS: Final = 300.0
#: a producer clock off by more than this (its sent_at against the broker) counts as skewed
CLOCK_SKEW_LIMIT_SECONDS: Final = 60.0


class AgencyRow(BaseModel):
    """One agency in the ranking."""

    rank: int | None = Field(description="1 = highest index; null without an index")
    code: str
    name: str
    journeys_started: int | None = Field(description="null when suppressed (small cell)")
    index: float | None
    level: str | None
    components: list[ComponentOut]


class ServiceRow(BaseModel):
    """One service of the period."""

    code: str
    name: str
    agency: str
    agency_name: str
    deadline: str = Field(description="legal term, as in the regulation")
    suppressed: bool = Field(description="fewer journeys than the small-cell threshold")
    started: int | None
    submitted: int | None
    abandoned: int | None
    decisions: int | None
    completion: Ratio
    on_time: Ratio
    satisfaction: Ratio
    digital: Ratio
    decision_days_median: float | None = Field(
        description="median time to decision in days, estimated from histogram buckets"
    )
    index: float | None
    level: str | None
    beyond_calendar: bool = Field(
        False,
        description="some deadlines of this service in the period fall after the production "
        "calendar's last day (working days guessed as Monday to Friday)",
    )


class FunnelStep(BaseModel):
    """Journeys that reached one step and the share lost since the step before."""

    code: str
    name: str
    reached: int | None = Field(description="null when suppressed (small cell)")
    drop_off: float | None = Field(
        description="1 - reached / reached at the step before; null when either is suppressed"
    )


class Funnel(BaseModel):
    """The form funnel of one service on one channel with form steps (portal, mobile)."""

    service: str
    service_name: str
    agency: str
    channel: str = Field(description="portal or mobile: MFC and office journeys have no steps")
    channel_name: str
    started: int
    submitted: int
    steps: list[FunnelStep]
    worst_step: str | None = Field(description="the step with the largest drop-off")


class LifeRow(BaseModel):
    """One life situation: its cases, counted once across the agencies involved."""

    code: str
    name: str
    agencies: list[str] = Field(description="short names of the agencies of its services")
    cases: CasesOut
    median_days: float | None = Field(
        description="median end-to-end time of completed cases, days (from histogram buckets)"
    )


class OfficeRow(BaseModel):
    """One office: visits and the share within the office wait standard."""

    code: str
    name: str
    municipality_name: str
    visits: int | None = Field(description="null when suppressed (small cell)")
    within_standard: Ratio


class OverdueRow(BaseModel):
    """Applications pending and overdue now, by service and municipality."""

    agency: str
    service: str
    service_name: str
    municipality: str
    municipality_name: str
    pending: int | None = Field(description="null when suppressed (small cell)")
    overdue: int | None = Field(description="null when suppressed (small cell)")


class QualityRow(BaseModel):
    """Data quality of one source (agency) over the period."""

    agency: str
    name: str
    events: int = Field(description="valid events processed")
    rejected: int = Field(description="events rejected (API and processor), by receive day")
    rejected_share: float | None = Field(description="rejected / (processed + rejected)")
    rejected_by_reason: dict[str, int]
    late: int = Field(description="lifecycle events counted late")
    duplicates: int
    delay_over_limit_share: float | None = Field(
        None,
        description="delivery delay: share of events received over 5 minutes after occurred_at",
    )
    delay_p95_seconds: float | None = Field(
        None, description="95th percentile of the delivery delay (receive time - occurred_at)"
    )
    skew_measured: int = Field(0, description="events whose producer stamped its send time")
    skew_over_limit_share: float | None = Field(
        description="clock skew: share of stamped events whose producer clock was off by "
        "more than 1 minute (|sent_at - broker receive time|); null without stamps"
    )
    skew_p95_seconds: float | None = Field(description="95th percentile of the clock skew")
    skipped_steps: int = Field(description="submitted journeys that skipped catalog steps")
    skipped_share: float | None = Field(description="skipped_steps / submitted")


class MethodologyComponent(BaseModel):
    """A component as the methodology defines it."""

    code: str
    name: str
    weight: float
    numerator: str
    denominator: str


class MethodologyOut(BaseModel):
    """The methodology the report was computed with."""

    components: list[MethodologyComponent]
    levels: dict[str, float]
    small_cell: int
    office_wait_seconds: int
    interagency_seconds: int
    appeal_term_days: int
    complaint_term_working_days: int = 15
    timezone: str


class Report(BaseModel):
    """A period report."""

    title: str
    region: str
    scope: Scope
    code: str
    name: str
    date_from: date = Field(alias="from", serialization_alias="from")
    date_to: date = Field(alias="to", serialization_alias="to")
    generated_at: datetime
    data_complete_until: datetime | None
    ready: bool
    summary: Scorecard
    agencies: list[AgencyRow]
    services: list[ServiceRow]
    funnels: list[Funnel]
    overdue: list[OverdueRow]
    quality: list[QualityRow]
    restated_days: list[RestatedDay]
    restated_day_count: int = Field(0, description="distinct days restated (not day x agency)")
    life_situations: list[LifeRow] = Field(default_factory=list)
    offices: list[OfficeRow] = Field(default_factory=list)
    methodology: MethodologyOut
    agency_names: dict[str, str] = Field(description="short Russian names of the agencies")
    perceived: list[GapRow] = Field(
        default_factory=list,
        description="satisfaction against measured times per service and office area",
    )

    model_config = {"populate_by_name": True}


# -- arithmetic helpers ------------------------------------------------------------------------


def quantile(h: Hist | None, bounds: tuple[float, ...], q: float) -> float | None:
    """Estimate a quantile from bucket counts (linear within the bucket, like Prometheus).

    Returns ``None`` for an empty histogram; observations in the +Inf bucket give the
    largest finite bound.
    """
    if h is None or h.count == 0:
        return None
    rank = q * h.count
    seen = 0
    for i, c in enumerate(h.counts):
        if c and seen + c >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lower = float(bounds[i - 1]) if i > 0 else 0.0
            return lower + (float(bounds[i]) - lower) * (rank - seen) / c
        seen += c
    return float(bounds[-1])


def share_over(h: Hist | None, bounds: tuple[float, ...], limit: float) -> float | None:
    """Share of observations in buckets whose lower bound is at or above ``limit``."""
    if h is None or h.count == 0:
        return None
    over = sum(c for i, c in enumerate(h.counts) if i > 0 and float(bounds[i - 1]) >= limit)
    return over / h.count


def _count(n: int, small: int) -> int | None:
    return None if 0 < n < small else n


# -- building the report -----------------------------------------------------------------------


def build_report(
    scorer: Scorer, scope: Scope, code: str | None, start: date, end: date, now: datetime
) -> Report:
    """Compute the report of one scope and period (see the module docstring)."""
    model, catalog, methodology = scorer.model, scorer.catalog, scorer.methodology
    small = methodology.standards.small_cell
    code_, name, pred, agencies = scope_filter(catalog, scope, code)
    d0, d1 = start.isoformat(), end.isoformat()

    def by_agency(g: Group) -> str | None:
        return g.agency if pred(g) else None

    def by_service(g: Group) -> str | None:
        return g.service if pred(g) and g.service else None

    def by_form(g: Group) -> tuple[str, str] | None:
        return (
            (g.service, g.channel) if pred(g) and g.service and g.channel in FORM_CHANNELS else None
        )

    def by_life(g: Group) -> str | None:
        return g.life_situation if pred(g) and g.life_situation else None

    per_agency = model.period(d0, d1, by_agency)
    per_service = model.period(d0, d1, by_service)
    summary = scorer.scorecard(scope, code, start, end)

    agency_rows = _agency_rows(catalog, per_agency, agencies, scorer, small)
    service_rows = _service_rows(catalog, per_service, scorer, small)
    funnels = _funnels(catalog, model.period(d0, d1, by_form), small)
    lives = _life_rows(catalog, model.period(d0, d1, by_life), small)
    offices = office_section(scorer, scope, code, start, end)
    restated = [
        d.model_copy(update={"last_at": _local_iso(d.last_at, catalog)})
        for d in restated_days(model, start, end, agencies)
    ]
    watermark = model.watermark()
    overdue = _overdue(catalog, model, _gauge_filter(catalog, scope, code_), small)
    quality = _quality(catalog, model, per_agency, d0, d1, agencies)
    m = methodology
    return Report(
        title="Отчёт о качестве предоставления государственных услуг",
        region=catalog.file.region.name,
        scope=scope,
        code=code_,
        name=name,
        date_from=start,
        date_to=end,
        generated_at=now.astimezone(catalog.tz),
        data_complete_until=watermark.astimezone(catalog.tz) if watermark else None,
        ready=model.status.ready,
        summary=summary,
        agencies=agency_rows,
        services=service_rows,
        funnels=funnels,
        overdue=overdue,
        quality=quality,
        restated_days=restated,
        restated_day_count=len({d.day for d in restated}),
        life_situations=lives,
        offices=offices,
        methodology=MethodologyOut(
            components=[
                MethodologyComponent(
                    code=c.code,
                    name=c.name,
                    weight=c.weight,
                    numerator=c.numerator,
                    denominator=c.denominator,
                )
                for c in m.components
            ],
            levels=dict(m.levels),
            small_cell=small,
            office_wait_seconds=m.standards.office_wait_seconds,
            interagency_seconds=m.standards.interagency_seconds,
            appeal_term_days=m.standards.appeal_term_days,
            complaint_term_working_days=m.standards.complaint_term_working_days,
            timezone=catalog.timezone,
        ),
        agency_names={c: a.display_name for c, a in catalog.agencies.items()},
        perceived=[
            *perceived_.by_service(per_service, catalog, methodology),
            *perceived_.by_office(perceived_.office_rollups(model, agencies), catalog, methodology),
        ],
    )


def _local_iso(text: str, catalog: Catalog) -> str:
    try:
        return datetime.fromisoformat(text).astimezone(catalog.tz).isoformat()
    except ValueError:
        return text


def _agency_rows(
    catalog: Catalog,
    per_agency: dict[str, Rollup],
    agencies: frozenset[str] | None,
    scorer: Scorer,
    small: int,
) -> list[AgencyRow]:
    rows: list[AgencyRow] = []
    for code, agency in catalog.agencies.items():
        if agencies is not None and code not in agencies:
            continue
        r = per_agency.get(code)
        if r is None:
            continue
        sc = scored(r, scorer.methodology)
        rows.append(
            AgencyRow(
                rank=None,
                code=code,
                name=agency.display_name,
                journeys_started=_count(r.started, small),
                index=sc.index,
                level=sc.level,
                components=sc.components,
            )
        )
    rows.sort(key=lambda a: (a.index is None, -(a.index or 0.0), a.name))
    for i, row in enumerate(rows):
        if row.index is not None:
            row.rank = i + 1
    return rows


def _service_rows(
    catalog: Catalog, per_service: dict[str, Rollup], scorer: Scorer, small: int
) -> list[ServiceRow]:
    rows: list[ServiceRow] = []
    for code, r in per_service.items():
        idx = catalog.services.get(code)
        if idx is None:
            continue
        svc = idx.service
        agency = catalog.agencies.get(svc.agency)
        suppressed = 0 < r.started < small
        sc = scored(r, scorer.methodology)
        comps = {c.code: c for c in sc.components}

        def comp(name: str, comps: dict[str, ComponentOut] = comps) -> Ratio:
            c = comps[name]
            return Ratio(
                numerator=c.numerator,
                denominator=c.denominator,
                value=c.value,
                suppressed=c.suppressed,
            )

        decisions = sum(r.decisions.values())
        median = quantile(r.decision_seconds, BUCKETS["decision_seconds"], 0.5)
        hidden = Ratio(numerator=None, denominator=None, value=None, suppressed=True)
        rows.append(
            ServiceRow(
                code=code,
                name=svc.name,
                agency=svc.agency,
                agency_name=(agency.display_name) if agency else svc.agency,
                deadline=svc.deadline.describe(),
                suppressed=suppressed,
                started=None if suppressed else r.started,
                submitted=None if suppressed else _count(r.submitted, small),
                abandoned=None if suppressed else _count(r.abandoned, small),
                decisions=None if suppressed else _count(decisions, small),
                completion=hidden if suppressed else comp("completion"),
                on_time=hidden if suppressed else comp("on_time"),
                satisfaction=hidden if suppressed else comp("satisfaction"),
                digital=hidden if suppressed else comp("digital"),
                decision_days_median=(
                    None if suppressed or median is None or decisions < small else median / 86400.0
                ),
                index=None if suppressed else sc.index,
                level=None if suppressed else sc.level,
                beyond_calendar=r.beyond_calendar > 0,
            )
        )
    rows.sort(key=lambda s: (s.agency_name, s.name))
    return rows


def _funnels(catalog: Catalog, per_form: dict[tuple[str, str], Rollup], small: int) -> list[Funnel]:
    """Funnels per (service, channel) over journeys that have the form's steps."""
    out: list[Funnel] = []
    for (code, channel), r in per_form.items():
        idx = catalog.services.get(code)
        if idx is None or r.started < small:
            continue
        steps: list[FunnelStep] = []
        prev: int | None = r.started
        for st in idx.service.steps:
            reached = _count(r.steps.get(st.code, 0), small)
            drop = (1.0 - reached / prev) if prev and reached is not None else None
            steps.append(FunnelStep(code=st.code, name=st.name, reached=reached, drop_off=drop))
            prev = reached
        worst = max(
            (s for s in steps if s.drop_off is not None),
            key=lambda s: s.drop_off or 0.0,
            default=None,
        )
        out.append(
            Funnel(
                service=code,
                service_name=idx.service.name,
                agency=idx.service.agency,
                channel=channel,
                channel_name=CHANNEL_NAMES.get(channel, channel),
                started=r.started,
                submitted=r.submitted,
                steps=steps,
                worst_step=worst.code if worst is not None and (worst.drop_off or 0) > 0 else None,
            )
        )
    out.sort(key=lambda f: (-f.started, f.service, f.channel))
    return out


def _life_rows(catalog: Catalog, per_life: dict[str, Rollup], small: int) -> list[LifeRow]:
    rows = []
    for code, ls in catalog.life_situations.items():
        r = per_life.get(code)
        if r is None or not r.cases_started:
            continue
        cases = cases_of(r, small)
        median = quantile(r.case_seconds, BUCKETS["case_seconds"], 0.5)
        names = {
            catalog.agencies[a].display_name
            for s in ls.services
            if s in catalog.services
            and (a := catalog.services[s].service.agency) in catalog.agencies
        }
        rows.append(
            LifeRow(
                code=code,
                name=ls.name,
                agencies=sorted(names),
                cases=cases,
                median_days=None if cases.suppressed or median is None else median / 86400.0,
            )
        )
    rows.sort(key=lambda x: (-(x.cases.started or 0), x.name))
    return rows


def office_section(
    scorer: Scorer, scope: Scope, code: str | None, start: date, end: date
) -> list[OfficeRow]:
    """The report's office section: each catalog office of the scope's visits in the period."""
    _code, _name, pred, _agencies = scope_filter(scorer.catalog, scope, code)
    scope_sum = scorer.model.period(
        start.isoformat(), end.isoformat(), lambda g: 0 if pred(g) else None
    ).get(0, Rollup())
    return _office_rows(scorer.catalog, scope_sum, scorer.methodology.standards.small_cell)


def _office_rows(catalog: Catalog, r: Rollup, small: int) -> list[OfficeRow]:
    acc: dict[str, list[int]] = {}
    for key, n in r.office_visits.items():
        office, _, within = key.rpartition(":")
        v = acc.setdefault(office, [0, 0])
        v[0] += n
        v[1] += n if within == "true" else 0
    rows = []
    for code, (visits, ok) in acc.items():
        o = catalog.offices.get(code)
        if o is None:
            continue
        muni = catalog.municipalities.get(o.municipality)
        rows.append(
            OfficeRow(
                code=code,
                name=o.name,
                municipality_name=muni.name if muni else o.municipality,
                visits=_count(visits, small),
                within_standard=ratio(ok, visits, small),
            )
        )
    rows.sort(key=lambda x: (x.within_standard.value is None, x.within_standard.value or 0.0))
    return rows


def _gauge_filter(catalog: Catalog, scope: Scope, code: str) -> Callable[[str, str], bool]:
    """Whether a gauge of (agency, service) belongs to the scope.

    Gauges carry no life situation; a life situation's gauges are those of its services.
    """
    if scope == "region":
        return lambda _a, _s: True
    if scope == "agency":
        return lambda a, _s: a == code
    if scope == "service":
        return lambda _a, s: s == code
    services = frozenset(catalog.life_situations[code].services)
    return lambda _a, s: s in services


def _overdue(
    catalog: Catalog, model: ReadModel, keep: Callable[[str, str], bool], small: int
) -> list[OverdueRow]:
    acc: dict[tuple[str, str, str], list[int]] = {}
    for (a, s, m, _c), g in model.gauges():
        if not keep(a, s):
            continue
        if g.pending == 0 and g.overdue == 0:
            continue
        v = acc.setdefault((a, s, m), [0, 0])
        v[0] += g.pending
        v[1] += g.overdue
    rows = []
    for (a, s, m), (pending, overdue) in acc.items():
        if overdue <= 0:
            continue
        svc = catalog.services.get(s)
        muni = catalog.municipalities.get(m)
        rows.append(
            OverdueRow(
                agency=a,
                service=s,
                service_name=svc.service.name if svc else s,
                municipality=m,
                municipality_name=muni.name if muni else m,
                pending=_count(pending, small),
                overdue=_count(overdue, small),
            )
        )
    # sorted by the true counts, so a suppressed row does not reveal its place by name
    rows.sort(key=lambda r: (-(r.overdue or 0), -(r.pending or 0), r.service, r.municipality))
    return rows[:OVERDUE_ROWS]


def _quality(
    catalog: Catalog,
    model: ReadModel,
    per_agency: dict[str, Rollup],
    d0: str,
    d1: str,
    agencies: frozenset[str] | None,
) -> list[QualityRow]:
    dead = model.dead_letters(d0, d1)
    by_agency: dict[str, dict[str, int]] = {}
    for (source, reason), n in dead.items():
        by_agency.setdefault(source, {})[reason] = n
    rows = []
    delay_bounds = BUCKETS["skew_seconds"]
    skew_bounds = BUCKETS["sender_skew_seconds"]
    for code, agency in catalog.agencies.items():
        if agencies is not None and code not in agencies:
            continue
        r = per_agency.get(code, Rollup())
        reasons = by_agency.get(code, {})
        rejected = sum(reasons.values())
        if not r.events and not rejected:
            continue
        total = r.events + rejected
        rows.append(
            QualityRow(
                agency=code,
                name=agency.display_name,
                events=r.events,
                rejected=rejected,
                rejected_share=rejected / total if total else None,
                rejected_by_reason=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
                late=sum(r.late.values()),
                duplicates=r.duplicates,
                delay_over_limit_share=share_over(r.skew_seconds, delay_bounds, SKEW_LIMIT_SECONDS),
                delay_p95_seconds=quantile(r.skew_seconds, delay_bounds, 0.95),
                skew_measured=r.sender_skew_seconds.count if r.sender_skew_seconds else 0,
                skew_over_limit_share=share_over(
                    r.sender_skew_seconds, skew_bounds, CLOCK_SKEW_LIMIT_SECONDS
                ),
                skew_p95_seconds=quantile(r.sender_skew_seconds, skew_bounds, 0.95),
                skipped_steps=r.skipped_steps,
                skipped_share=r.skipped_steps / r.submitted if r.submitted else None,
            )
        )
    rows.sort(key=lambda q: (-(q.rejected_share or 0.0), q.name))
    return rows
