"""Period reports, the layout: one :class:`api.reports.Report` as JSON, CSV or HTML.

The numbers are all computed by :func:`api.reports.build_report`; here they are only laid out:

- JSON: the :class:`Report` model as is;
- CSV: one long table (section, codes, metric, numerator, denominator, value) that a
  spreadsheet can pivot, UTF-8 with a byte-order mark so Excel reads the Cyrillic;
- HTML: an A4 page with print CSS (``templates/report.html``): ranking of agencies,
  per-service table, funnel drop-offs, overdue applications, data quality per source,
  restatements, methodology appendix and a signature block.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Final, Literal

import jinja2

from api import perceived as perceived_
from api.reports import Report
from api.scorecard import LEVEL_NAMES, ComponentOut, Ratio
from contract.names import reason_names

Format = Literal["json", "csv", "html"]

#: Russian names of the rejection reasons (one definition in the contract, with ``other``).
REASON_NAMES: Final = reason_names()


#: Russian names of the rollup counters a restatement can move (the "what changed" column).
CHANGED_NAMES: Final = {
    "events": "события",
    "started": "начатые",
    "submitted": "поданные",
    "abandoned": "брошенные",
    "abandoned_timeout": "брошенные по тайм-ауту",
    "withdrawn": "отозванные",
    "steps": "шаги формы",
    "errors": "ошибки",
    "decisions": "решения",
    "feedback": "оценки",
    "visits": "посещения офисов",
    "appeals_received": "жалобы",
    "appeals_answered": "ответы на жалобы",
    "interagency_requested": "межведомственные запросы",
    "interagency_responded": "межведомственные ответы",
    "cases_started": "случаи",
    "cases_completed": "завершённые случаи",
    "duplicates": "дубли",
    "late": "поздние события",
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
        yield funnel.row("started", f.started, item=f.channel)
        for st in f.steps:
            yield funnel.row("reached", st.reached, item=f"{f.channel}:{st.code}")
            yield funnel.row("drop_off", st.drop_off, item=f"{f.channel}:{st.code}")
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
        yield quality.row("delay_over_5min_share", q.delay_over_limit_share)
        yield quality.row("clock_skew_over_1min_share", q.skew_over_limit_share)
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


def _when(value: datetime) -> str:
    """A local time with its UTC offset, e.g. ``02.12.2026 03:02 (UTC+05:00)``."""
    return f"{value:%d.%m.%Y %H:%M} (UTC{value.isoformat()[-6:]})"


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
        env.filters["when"] = _when
        env.globals["LEVEL_NAMES"] = LEVEL_NAMES
        env.globals["REASON_NAMES"] = REASON_NAMES
        env.globals["COMPONENT_TEXT"] = COMPONENT_TEXT
        env.globals["CHANGED_NAMES"] = CHANGED_NAMES
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
