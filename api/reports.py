"""Period reports: the scorecards of a period as JSON, CSV and a printable Russian page.

This is the report that replaces manual KPI reporting. :func:`build_report` computes one
:class:`Report` from the read model (the same rollups and the same
:func:`api.scorecard.scored` as the scorecard endpoint, so the numbers agree); the
renderers only lay it out:

- JSON: the :class:`Report` model as is;
- CSV: one long table (section, codes, metric, numerator, denominator, value) that a
  spreadsheet can pivot, UTF-8 with a byte-order mark so Excel reads the Cyrillic;
- HTML: an A4 page with print CSS (``templates/report.html``): ranking of agencies,
  per-service table, funnel drop-offs, overdue applications, data quality per source,
  restatements, methodology appendix and a signature block.

Small cells (fewer journeys than the methodology's threshold) are suppressed everywhere.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any, Final, Literal

import jinja2
from pydantic import BaseModel, Field

from api import perceived as perceived_
from api.perceived import GapRow
from api.readmodel import Group, ReadModel
from api.scorecard import (
    LEVEL_NAMES,
    ComponentOut,
    Ratio,
    RestatedDay,
    Scope,
    Scorecard,
    Scorer,
    restated_days,
    scope_filter,
    scored,
)
from contract.aggregates import Hist, Rollup
from contract.catalog import Catalog
from contract.metrics import BUCKETS

Format = Literal["json", "csv", "html"]
OVERDUE_ROWS: Final = 50
SKEW_LIMIT_SECONDS: Final = 300.0

REASON_NAMES: Final = {
    "invalid_json": "некорректный JSON",
    "too_large": "слишком большое событие",
    "not_an_object": "не JSON-объект",
    "unknown_field": "неизвестное поле",
    "missing_field": "нет обязательного поля",
    "wrong_type": "неверный тип",
    "bad_format": "неверный формат",
    "out_of_range": "вне диапазона",
    "bad_value": "недопустимое значение",
    "no_offset": "время без часового пояса",
    "future_timestamp": "время в будущем",
    "not_pseudonym": "персональные данные вместо псевдонима",
    "unsupported_version": "неподдерживаемая версия",
    "unknown_agency": "неизвестное ведомство",
    "unknown_service": "неизвестная услуга",
    "service_not_owned": "услуга другого ведомства",
    "unknown_municipality": "неизвестный ОКТМО",
    "unknown_step": "неизвестный шаг",
    "unknown_office": "неизвестный офис",
    "unknown_life_situation": "неизвестная жизненная ситуация",
    "unknown_reason_code": "неизвестный код причины",
    "forbidden_agency": "событие чужого ведомства",
    "other": "прочее",
}


#: Russian wording of each component's numerator and denominator for the appendix.
COMPONENT_TEXT: Final = {
    "completion": ("поданные заявления", "поданные + брошенные"),
    "on_time": ("решения в срок", "решения в срок + с нарушением срока"),
    "satisfaction": ("оценки 4 и 5", "все оценки"),
    "wait": ("посещения с ожиданием не дольше норматива", "все посещения офисов"),
    "digital": ("начатые на портале, в мобильном приложении и проактивно", "все начатые"),
    "appeals": ("жалобы, рассмотренные в срок", "рассмотренные жалобы"),
    "interagency": ("ответы на межведомственные запросы за 48 ч", "все ответы"),
    "error_free": ("завершённые заявления без ошибок", "все завершённые заявления"),
}


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


class FunnelStep(BaseModel):
    """Journeys that reached one step and the share lost since the step before."""

    code: str
    name: str
    reached: int
    drop_off: float | None = Field(description="1 - reached / reached at the step before")


class Funnel(BaseModel):
    """The form funnel of one service."""

    service: str
    service_name: str
    agency: str
    started: int
    submitted: int
    steps: list[FunnelStep]
    worst_step: str | None = Field(description="the step with the largest drop-off")


class OverdueRow(BaseModel):
    """Applications pending and overdue now, by service and municipality."""

    agency: str
    service: str
    service_name: str
    municipality: str
    municipality_name: str
    pending: int
    overdue: int


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
    skew_over_limit_share: float | None = Field(
        description="share of events received more than 5 minutes after occurred_at"
    )
    skew_p95_seconds: float | None = Field(description="95th percentile of clock skew")
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
        return g[0] if pred(g) else None

    def by_service(g: Group) -> str | None:
        return g[1] if pred(g) and g[1] else None

    per_agency = model.period(d0, d1, by_agency)
    per_service = model.period(d0, d1, by_service)
    summary = scorer.scorecard(scope, code, start, end)

    agency_rows = _agency_rows(catalog, per_agency, agencies, scorer, small)
    service_rows = _service_rows(catalog, per_service, scorer, small)
    funnels = _funnels(catalog, per_service, small)
    overdue = _overdue(catalog, model, _gauge_filter(catalog, scope, code_))
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
        generated_at=now,
        data_complete_until=model.watermark(),
        ready=model.status.ready,
        summary=summary,
        agencies=agency_rows,
        services=service_rows,
        funnels=funnels,
        overdue=overdue,
        quality=quality,
        restated_days=restated_days(model, start, end, agencies),
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
            timezone=catalog.timezone,
        ),
        agency_names={c: a.short_name or a.name for c, a in catalog.agencies.items()},
        perceived=[
            *perceived_.by_service(per_service, catalog, methodology),
            *perceived_.by_office(perceived_.office_rollups(model, agencies), catalog, methodology),
        ],
    )


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
                name=agency.short_name or agency.name,
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
                agency_name=(agency.short_name or agency.name) if agency else svc.agency,
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
            )
        )
    rows.sort(key=lambda s: (s.agency_name, s.name))
    return rows


def _funnels(catalog: Catalog, per_service: dict[str, Rollup], small: int) -> list[Funnel]:
    out: list[Funnel] = []
    for code, r in per_service.items():
        idx = catalog.services.get(code)
        if idx is None or r.started < small:
            continue
        steps: list[FunnelStep] = []
        prev = r.started
        for st in idx.service.steps:
            reached = r.steps.get(st.code, 0)
            drop = (1.0 - reached / prev) if prev else None
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
                started=r.started,
                submitted=r.submitted,
                steps=steps,
                worst_step=worst.code if worst is not None and (worst.drop_off or 0) > 0 else None,
            )
        )
    out.sort(key=lambda f: -f.started)
    return out


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
    catalog: Catalog, model: ReadModel, keep: Callable[[str, str], bool]
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
                pending=pending,
                overdue=overdue,
            )
        )
    rows.sort(key=lambda r: (-r.overdue, -r.pending, r.service, r.municipality))
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
    skew_bounds = BUCKETS["skew_seconds"]
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
                name=agency.short_name or agency.name,
                events=r.events,
                rejected=rejected,
                rejected_share=rejected / total if total else None,
                rejected_by_reason=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
                late=sum(r.late.values()),
                duplicates=r.duplicates,
                skew_over_limit_share=share_over(r.skew_seconds, skew_bounds, SKEW_LIMIT_SECONDS),
                skew_p95_seconds=quantile(r.skew_seconds, skew_bounds, 0.95),
                skipped_steps=r.skipped_steps,
                skipped_share=r.skipped_steps / r.submitted if r.submitted else None,
            )
        )
    rows.sort(key=lambda q: (-(q.rejected_share or 0.0), q.name))
    return rows


# -- rendering ------------------------------------------------------------------------------------


def render_json(report: Report) -> bytes:
    """The report as JSON (the :class:`Report` schema)."""
    return report.model_dump_json(by_alias=True).encode()


CSV_COLUMNS: Final = (
    "section",
    "agency",
    "service",
    "municipality",
    "item",
    "metric",
    "numerator",
    "denominator",
    "value",
)


@dataclass(frozen=True, slots=True)
class _Rows:
    """Row builder of one CSV section: the codes its rows share, the rest per row.

    Cells left out are empty; ``value`` is the last column (see :data:`CSV_COLUMNS`).
    """

    section: str
    agency: str = ""
    service: str = ""
    municipality: str = ""

    def row(
        self,
        metric: str,
        value: Any,
        *,
        item: str = "",
        numerator: Any = "",
        denominator: Any = "",
    ) -> tuple[Any, ...]:
        """One CSV row in :data:`CSV_COLUMNS` order."""
        return (
            self.section,
            self.agency,
            self.service,
            self.municipality,
            item,
            metric,
            numerator,
            denominator,
            value,
        )

    def ratio(self, metric: str, r: Ratio) -> tuple[Any, ...]:
        """A row with a numerator, a denominator and their quotient."""
        return self.row(metric, r.value, numerator=r.numerator, denominator=r.denominator)

    def components(self, cs: list[ComponentOut]) -> Iterator[tuple[Any, ...]]:
        """A row per index component (metric ``suppressed`` for a suppressed cell)."""
        for c in cs:
            metric = "suppressed" if c.suppressed else "component"
            yield self.row(
                metric, c.value, item=c.code, numerator=c.numerator, denominator=c.denominator
            )


def _csv_rows(report: Report) -> Iterator[tuple[Any, ...]]:
    s = report.summary
    summary = _Rows("summary")
    for metric in ("index", "level", "journeys_started"):
        yield summary.row(metric, getattr(s, metric))
    yield from summary.components(s.components)
    for a in report.agencies:
        ranking = _Rows("ranking", a.code)
        for metric in ("rank", "index", "level", "journeys_started"):
            yield ranking.row(metric, getattr(a, metric))
        yield from ranking.components(a.components)
    for sv in report.services:
        services = _Rows("services", sv.agency, sv.code)
        if sv.suppressed:
            yield services.row("suppressed", "")
            continue
        for metric in ("started", "submitted", "abandoned", "decisions"):
            yield services.row(metric, getattr(sv, metric))
        for metric in ("completion", "on_time", "satisfaction", "digital"):
            yield services.ratio(metric, getattr(sv, metric))
        yield services.row("decision_days_median", sv.decision_days_median)
        yield services.row("index", sv.index)
    for f in report.funnels:
        funnel = _Rows("funnel", f.agency, f.service)
        for st in f.steps:
            yield funnel.row("reached", st.reached, item=st.code)
            yield funnel.row("drop_off", st.drop_off, item=st.code)
    for o in report.overdue:
        overdue = _Rows("overdue", o.agency, o.service, o.municipality)
        yield overdue.row("pending", o.pending)
        yield overdue.row("overdue", o.overdue)
    for q in report.quality:
        quality = _Rows("quality", q.agency)
        yield quality.row("events", q.events)
        yield quality.row(
            "rejected", q.rejected_share, numerator=q.rejected, denominator=q.events + q.rejected
        )
        for reason, n in q.rejected_by_reason.items():
            yield quality.row("rejected_by_reason", n, item=reason)
        yield quality.row("late", q.late)
        yield quality.row("duplicates", q.duplicates)
        yield quality.row("skew_over_5min_share", q.skew_over_limit_share)
        yield quality.row("skipped_steps", q.skipped_share, numerator=q.skipped_steps)
    for d in report.restated_days:
        restated = _Rows("restated", d.agency)
        yield restated.row("restatements", d.count, item=d.day.isoformat())


def render_csv(report: Report) -> bytes:
    """The report as one long CSV table, UTF-8 with BOM (see the module docstring)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for row in _csv_rows(report):
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode()


def _num(value: float | int | None, digits: int = 0) -> str:
    """Russian number formatting: thin-space thousands, decimal comma."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}".replace(",", "\u202f").replace(".", ",")
    return text


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else _num(100.0 * value, digits) + "\u00a0%"


_env: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    global _env
    if _env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(resources.files("api") / "templates")),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["num"] = _num
        env.filters["pct"] = _pct
        env.globals["LEVEL_NAMES"] = LEVEL_NAMES
        env.globals["REASON_NAMES"] = REASON_NAMES
        env.globals["COMPONENT_TEXT"] = COMPONENT_TEXT
        env.globals["PERCEIVED_HOW_TO_READ"] = perceived_.HOW_TO_READ
        _env = env
    return _env


def render_html(report: Report) -> bytes:
    """The printable Russian HTML page of the report."""
    template = _environment().get_template("report.html")
    return template.render(r=report).encode()


def render(report: Report, fmt: Format) -> tuple[bytes, str]:
    """(body, media type) of the report in one format."""
    if fmt == "csv":
        return render_csv(report), "text/csv; charset=utf-8"
    if fmt == "html":
        return render_html(report), "text/html; charset=utf-8"
    return render_json(report), "application/json"
