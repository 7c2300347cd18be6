"""Scorecards: the client-centricity index of a scope and period, with its arithmetic.

``GET /v1/scorecard`` sums the exact daily rollups of the period over the cells of the
scope (the region, an agency, a service or a life situation) and scores the sum with
:func:`contract.methodology.score`: every component with its numerator, denominator and
value, the index and its level, which components counted. A component whose denominator
is below the methodology's small-cell threshold is suppressed (no number is shown and it
does not count), so no person can be singled out; the index is then renormalised over
the components that remain, exactly as the methodology does for components without data.
Days of the period that were restated after they closed are listed.

Where suppression applies (docs/METRICS.md, "Small cells"): to what is *published*, the
scorecard API and the period reports (JSON, CSV, HTML), which may be passed on as open
data. The live Prometheus metrics and Grafana dashboards are for inspectors and agencies
behind their tokens and show exact counts. In published figures the region is summed
only from the agencies' cells that are shown (:func:`published_region`): an agency's
hidden cell would otherwise still move the region's figure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal

from cachetools import LRUCache
from pydantic import BaseModel, Field

from api.errors import BadRequest, NotFound
from api.lifecases import CasesOut, cases_of
from api.readmodel import Group, ReadModel
from contract.aggregates import Rollup
from contract.catalog import Catalog
from contract.methodology import Methodology, Score, fractions, score, score_fractions

Scope = Literal["region", "agency", "service", "life_situation"]
MAX_DAYS: Final = 366
DEFAULT_DAYS: Final = 30
#: results of scorecards and reports kept per read-model version (:meth:`Scorer.cached`)
_CACHED_RESULTS: Final = 64
_MISS: Final = object()

LEVEL_NAMES: Final = {
    "advanced": "продвинутый",
    "satisfactory": "удовлетворительный",
    "basic": "базовый",
}


class Ratio(BaseModel):
    """An exact fraction; all ``None`` when suppressed (denominator below the small cell)."""

    numerator: int | None = Field(description="count of the good outcomes")
    denominator: int | None = Field(description="count of all outcomes")
    value: float | None = Field(description="numerator / denominator, 0..1; null without data")
    suppressed: bool = Field(
        False, description="true when the denominator is below the small-cell threshold"
    )


class ComponentOut(Ratio):
    """One index component over the period."""

    code: str = Field(examples=["on_time"])
    name: str = Field(examples=["Решения в срок"])
    weight: float = Field(description="weight in the methodology", examples=[0.2])
    counted: bool = Field(description="whether it entered the index")


class RestatedDay(BaseModel):
    """A day of the period changed after it had closed (late events)."""

    day: date
    agency: str
    count: int = Field(description="late changes recorded")
    last_at: str = Field(description="when the last change was processed (ISO 8601)")
    changed: list[str] = Field(
        default_factory=list, description="rollup counters the recent late changes moved"
    )


class Scorecard(BaseModel):
    """The index of one scope and period with everything needed to check it by hand."""

    scope: Scope
    code: str = Field(description="catalog code of the scope; the region code for region")
    name: str = Field(description="Russian name of the scope")
    date_from: date = Field(alias="from", serialization_alias="from")
    date_to: date = Field(alias="to", serialization_alias="to")
    journeys_started: int = Field(description="journeys started in the period (all channels)")
    index: float | None = Field(description="client-centricity index 0..100; null without data")
    level: str | None = Field(
        description="advanced (>= 60), satisfactory (>= 40) or basic", examples=["advanced"]
    )
    counted: list[str] = Field(description="components that entered the index")
    suppressed: list[str] = Field(description="components hidden as small cells")
    components: list[ComponentOut]
    restated: bool = Field(description="whether any day of the period was restated")
    restated_days: list[RestatedDay]
    small_cell: int = Field(description="denominators below this are suppressed")
    data_complete_until: datetime | None = Field(
        description="lowest event-time watermark over input partitions"
    )
    ready: bool = Field(description="false while the read model is still catching up")
    hidden_small_cells: dict[str, int] = Field(
        default_factory=dict,
        description="region only: per component, how many agencies' small cells were left "
        "out of the region's figures (they are hidden in the agencies' rows too)",
    )
    cases: CasesOut | None = Field(
        None, description="life-situation cases counted once across agencies (api/lifecases)"
    )
    calendar_until: date | None = Field(
        None, description="last day of the catalog's production calendar (null without one)"
    )
    deadlines_beyond_calendar: int = Field(
        0,
        description="deadlines set in the period that fall after calendar_until: their "
        "working days were taken as Monday to Friday, so on-time figures for them are "
        "provisional until the catalog's calendar is extended",
    )

    model_config = {
        "populate_by_name": True,
        "json_schema_extra": {
            "examples": [
                {
                    "scope": "agency",
                    "code": "minsoc",
                    "name": "Министерство социальных отношений Челябинской области",
                    "from": "2026-11-01",
                    "to": "2026-11-30",
                    "journeys_started": 1840,
                    "index": 71.4,
                    "level": "advanced",
                    "counted": ["completion", "on_time", "digital", "error_free"],
                    "suppressed": ["appeals"],
                    "components": [
                        {
                            "code": "on_time",
                            "name": "Решения в срок",
                            "weight": 0.2,
                            "numerator": 912,
                            "denominator": 1003,
                            "value": 0.9093,
                            "suppressed": False,
                            "counted": True,
                        }
                    ],
                    "restated": False,
                    "restated_days": [],
                    "small_cell": 5,
                    "data_complete_until": "2026-11-30T18:55:00Z",
                    "ready": True,
                }
            ]
        },
    }


def ratio(numerator: int, denominator: int, small_cell: int) -> Ratio:
    """A fraction, suppressed when ``0 < denominator < small_cell``."""
    if 0 < denominator < small_cell:
        return Ratio(numerator=None, denominator=None, value=None, suppressed=True)
    value = numerator / denominator if denominator else None
    return Ratio(numerator=numerator, denominator=denominator, value=value)


class Scored(BaseModel):
    """An index with its components, small cells suppressed."""

    index: float | None
    level: str | None
    counted: list[str]
    suppressed: list[str]
    components: list[ComponentOut]


def scored(rollup: Rollup, methodology: Methodology) -> Scored:
    """Score a summed rollup, suppressing components with a small denominator.

    Without suppression this is exactly :func:`contract.methodology.score`; with it, the
    suppressed components are treated like components without data and the weights are
    renormalised over the rest (the same formula, over fewer components).
    """
    return scored_score(score(rollup, methodology), methodology)


def scored_score(base: Score, methodology: Methodology) -> Scored:
    """:func:`scored` of an already computed :class:`contract.methodology.Score`."""
    small = methodology.standards.small_cell
    comps: list[ComponentOut] = []
    suppressed: list[str] = []
    counted: list[str] = []
    for c in base.components:
        r = ratio(c.numerator, c.denominator, small)
        is_counted = c.code in base.counted and not r.suppressed
        if r.suppressed:
            suppressed.append(c.code)
        if is_counted:
            counted.append(c.code)
        comps.append(
            ComponentOut(
                code=c.code, name=c.name, weight=c.weight, counted=is_counted, **r.model_dump()
            )
        )
    index, level = base.index, base.level
    if suppressed:
        kept = [c for c in base.components if c.code in counted]
        total_w = sum(c.weight for c in kept)
        if kept and total_w > 0:
            index = 100.0 * sum(c.weight * c.numerator / c.denominator for c in kept) / total_w
            level = methodology.level(index)
        else:
            index, level = None, None
    return Scored(
        index=index, level=level, counted=counted, suppressed=suppressed, components=comps
    )


def published_region(
    per_agency: Iterable[Rollup], methodology: Methodology
) -> tuple[Scored, dict[str, int]]:
    """The region scored from the agencies' shown cells only, and per component how many
    agencies' small cells were left out."""
    small = methodology.standards.small_cell
    sums = {c.code: [0, 0] for c in methodology.components}
    hidden: dict[str, int] = {}
    for r in per_agency:
        for code, (n, d) in fractions(r, methodology.standards).items():
            if code not in sums:
                continue
            if 0 < d < small:
                hidden[code] = hidden.get(code, 0) + 1
                continue
            sums[code][0] += n
            sums[code][1] += d
    base = score_fractions({k: (v[0], v[1]) for k, v in sums.items()}, methodology)
    return scored_score(base, methodology), hidden


# -- scopes and periods ---------------------------------------------------------------------


def period_bounds(
    catalog: Catalog, date_from: date | None, date_to: date | None, now: datetime | None = None
) -> tuple[date, date]:
    """The period, defaulting to the last 30 days up to today in the catalog time zone.

    Raises:
        BadRequest: ``from`` after ``to``, a period longer than 366 days, or a default
            period that would leave the calendar (``to=0001-01-01``).
    """
    today = (now or datetime.now(catalog.tz)).astimezone(catalog.tz).date()
    try:
        end = date_to or (
            today if date_from is None else min(today, date_from + timedelta(days=DEFAULT_DAYS - 1))
        )
        start = date_from or end - timedelta(days=DEFAULT_DAYS - 1)
    except OverflowError:
        # e.g. to=0001-01-01: the default start would be before year 1 (a 500 before)
        raise BadRequest(
            f"give both from and to: the default period of {DEFAULT_DAYS} days around "
            f"{(date_to or date_from or today).isoformat()} is out of the calendar"
        ) from None
    if start > end:
        raise BadRequest(f"from {start.isoformat()} is after to {end.isoformat()}")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadRequest(
            f"the period {start.isoformat()}..{end.isoformat()} is longer than {MAX_DAYS} days"
        )
    return start, end


def scope_filter(
    catalog: Catalog, scope: Scope, code: str | None
) -> tuple[str, str, Callable[[Group], bool], frozenset[str] | None]:
    """(code, name, predicate on (agency, service, life_situation), agencies or None).

    Raises:
        BadRequest: no code for a scope that needs one.
        NotFound: a code the catalog does not know.
    """
    if scope == "region":
        region = catalog.file.region
        known = catalog.agencies  # cells of agencies the catalog does not know are left out
        return region.code, region.name, lambda g: g.agency in known, None
    if not code:
        raise BadRequest(f"scope {scope!r} needs a code (?code=...)")
    if scope == "agency":
        agency = catalog.agencies.get(code)
        if agency is None:
            raise NotFound(f"unknown agency {code!r}")
        return code, agency.name, lambda g: g.agency == code, frozenset({code})
    if scope == "service":
        svc = catalog.services.get(code)
        if svc is None:
            raise NotFound(f"unknown service {code!r}")
        return code, svc.service.name, lambda g: g.service == code, frozenset({svc.service.agency})
    ls = catalog.life_situations.get(code)
    if ls is None:
        raise NotFound(f"unknown life situation {code!r}")
    agencies = frozenset(
        catalog.services[s].service.agency for s in ls.services if s in catalog.services
    )
    return code, ls.name, lambda g: g.life_situation == code, agencies


def restated_days(
    model: ReadModel, start: date, end: date, agencies: frozenset[str] | None
) -> list[RestatedDay]:
    """Restated days of the period for the given agencies (``None``: all)."""
    return [
        RestatedDay(
            day=date.fromisoformat(day),
            agency=agency,
            count=r.count,
            last_at=r.last_at,
            changed=sorted({f for e in r.recent for f in e.fields}),
        )
        for day, agency, r in model.restatements(start.isoformat(), end.isoformat())
        if agencies is None or agency in agencies
    ]


class Scorer:
    """Computes scorecards from a read model, caching results until the model changes."""

    def __init__(self, model: ReadModel, catalog: Catalog, methodology: Methodology) -> None:
        self.model = model
        self.catalog = catalog
        self.methodology = methodology
        #: the 64 results asked for last (least recently used dropped), keyed by the read
        #: model's version so a change makes every earlier entry unreachable
        self._cache: LRUCache[Hashable, Any] = LRUCache(maxsize=_CACHED_RESULTS)
        self._lock = threading.Lock()

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered for this key until the read model changes."""
        full = (self.model.version, key)
        with self._lock:
            hit = self._cache.get(full, _MISS)
        if hit is not _MISS:
            return hit
        value = compute()
        with self._lock:
            self._cache[full] = value
        return value

    def scorecard(self, scope: Scope, code: str | None, start: date, end: date) -> Scorecard:
        """The scorecard of one scope and period (see the module docstring)."""
        result: Scorecard = self.cached(
            ("scorecard", scope, code, start, end), lambda: self._scorecard(scope, code, start, end)
        )
        return result

    def _scorecard(self, scope: Scope, code: str | None, start: date, end: date) -> Scorecard:
        code_, name, pred, agencies = scope_filter(self.catalog, scope, code)
        sums = self.model.period(
            start.isoformat(), end.isoformat(), lambda g: 0 if pred(g) else None
        )
        rollup = sums.get(0, Rollup())
        hidden: dict[str, int] = {}
        if scope == "region":
            per_agency = self.model.period(
                start.isoformat(), end.isoformat(), lambda g: g.agency if pred(g) else None
            )
            sc, hidden = published_region(per_agency.values(), self.methodology)
        else:
            sc = scored(rollup, self.methodology)
        days = restated_days(self.model, start, end, agencies)
        return Scorecard(
            scope=scope,
            code=code_,
            name=name,
            date_from=start,
            date_to=end,
            journeys_started=rollup.started,
            index=sc.index,
            level=sc.level,
            counted=sc.counted,
            suppressed=sc.suppressed,
            components=sc.components,
            restated=bool(days),
            restated_days=days,
            small_cell=self.methodology.standards.small_cell,
            data_complete_until=self.model.watermark(),
            ready=self.model.status.ready,
            hidden_small_cells=hidden,
            cases=cases_of(rollup, self.methodology.standards.small_cell),
            calendar_until=self.catalog.calendar_until,
            deadlines_beyond_calendar=rollup.beyond_calendar,
        )
