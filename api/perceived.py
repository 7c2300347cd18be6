"""Measured against perceived: satisfaction set beside what was measured for the same cells.

Per service: the share of good scores (4-5) beside the on-time share of decisions and the
median time to decision; per office area (municipality: ``feedback.given`` names no office,
so satisfaction has no office, see docs/WEB.md): the share of good scores given in MFC
and office visits beside the share of visits served within the wait standard and the
median wait. The gap is satisfaction minus the measured share, in percentage points.
Each side is a ratio of its own cell and is suppressed (``None``) below the small-cell
threshold, like everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydantic import BaseModel, Field

from api.readmodel import ReadModel
from contract.aggregates import Hist, Rollup
from contract.catalog import Catalog
from contract.methodology import Methodology, fractions
from contract.metrics import BUCKETS

#: How to read the gap: one sentence for the page and the report.
HOW_TO_READ: Final = (
    "Разрыв — доля оценок 4–5 минус измеренная доля (решений в срок или посещений без "
    "долгого ожидания), в процентных пунктах: плюс — люди оценивают услугу лучше, чем "
    "говорят измерения; минус — хуже, и причину стоит искать не только в сроках."
)
OFFICE_CHANNELS: Final = frozenset({"mfc", "office"})


class CountedShare(BaseModel):
    """A share with its counts; all ``None`` below the small-cell threshold."""

    numerator: int | None
    denominator: int | None
    value: float | None


class GapRow(BaseModel):
    """One service or office area: perceived and measured side by side."""

    kind: str = Field(description="service or municipality")
    code: str
    name: str
    agency: str = Field(description="agency code; empty for a municipality")
    satisfaction: CountedShare = Field(description="good scores (4-5) / all scores")
    measured: CountedShare = Field(
        description="on-time decisions, or visits within the wait standard"
    )
    measured_name: str
    median: float | None = Field(
        description="median time to decision (days) or office wait (minutes)"
    )
    median_unit: str
    gap: float | None = Field(description="satisfaction - measured, as a share (-1..1)")


def _share(num: int, den: int, small: int) -> CountedShare:
    if den == 0 or den < small:
        return CountedShare(numerator=None, denominator=None, value=None)
    return CountedShare(numerator=num, denominator=den, value=num / den)


def _median(h: Hist | None, name: str, scale: float, small: int) -> float | None:
    if h is None or h.count < small:
        return None
    bounds = BUCKETS[name]
    rank, seen = 0.5 * h.count, 0
    for i, c in enumerate(h.counts):
        if c and seen + c >= rank:
            if i >= len(bounds):
                return float(bounds[-1]) / scale
            lower = float(bounds[i - 1]) if i > 0 else 0.0
            return (lower + (float(bounds[i]) - lower) * (rank - seen) / c) / scale
        seen += c
    return float(bounds[-1]) / scale


def _gap(a: CountedShare, b: CountedShare) -> float | None:
    return None if a.value is None or b.value is None else a.value - b.value


def _row(
    kind: str, code: str, name: str, agency: str, r: Rollup, methodology: Methodology
) -> GapRow:
    small = methodology.standards.small_cell
    f = fractions(r, methodology.standards)
    sat = _share(*f["satisfaction"], small)
    if kind == "service":
        measured = _share(*f["on_time"], small)
        median = _median(r.decision_seconds, "decision_seconds", 86400.0, small)
        measured_name, unit = "решения в срок", "дн."
    else:
        measured = _share(*f["wait"], small)
        median = _median(r.wait_seconds, "wait_seconds", 60.0, small)
        measured_name, unit = "ожидание в пределах норматива", "мин"
    return GapRow(
        kind=kind,
        code=code,
        name=name,
        agency=agency,
        satisfaction=sat,
        measured=measured,
        measured_name=measured_name,
        median=median,
        median_unit=unit,
        gap=_gap(sat, measured),
    )


def by_service(
    per_service: dict[str, Rollup], catalog: Catalog, methodology: Methodology
) -> list[GapRow]:
    """A row per service of the period sums (``model.period`` grouped by service)."""
    rows = []
    for code, r in per_service.items():
        idx = catalog.services.get(code)
        if idx is None:
            continue
        rows.append(_row("service", code, idx.service.name, idx.service.agency, r, methodology))
    rows.sort(key=lambda g: (g.gap is None, g.gap or 0.0, g.name))
    return rows


def office_rollups(model: ReadModel, agencies: Iterable[str] | None = None) -> dict[str, Rollup]:
    """All-time sums of MFC and office cells by municipality (optionally of some agencies).

    The read model keeps municipality and channel only in its all-time totals (its daily
    rollups are by agency, service and life situation), so office views are all-time.
    """
    keep = None if agencies is None else frozenset(agencies)
    out: dict[str, Rollup] = {}
    with model.lock:
        for (agency, _service, muni, channel, _ls), r in model.totals_view():
            if channel not in OFFICE_CHANNELS or (keep is not None and agency not in keep):
                continue
            acc = out.get(muni)
            if acc is None:
                acc = out[muni] = Rollup()
            acc.add(r)
    return out


def by_office(
    per_muni: dict[str, Rollup], catalog: Catalog, methodology: Methodology
) -> list[GapRow]:
    """A row per municipality of :func:`office_rollups`."""
    rows = []
    for code, r in per_muni.items():
        muni = catalog.municipalities.get(code)
        rows.append(_row("municipality", code, muni.name if muni else code, "", r, methodology))
    rows.sort(key=lambda g: (g.gap is None, g.gap or 0.0, g.name))
    return rows
