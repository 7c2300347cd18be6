"""What ``/metrics`` shows: the business families from the read model, and the API's own.

:class:`BusinessCollector` renders every family of :data:`contract.metrics.FAMILIES` at
scrape time from the read model: counters are sums over all days and partitions of the
cumulative rollups, so they never go backwards when the API or a processor restarts;
gauges are sums over partitions of the latest live counts; histograms come from the
rollups' bucket counts. Label values come only from the catalog (and the contract's
closed sets); a rollup cell the catalog does not know is left out and counted in
``servicepulse_api_unknown_cells``.

:func:`build_metrics` makes the API's own metrics (requests, latency, ingest results).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from contract.aggregates import Gauges, Hist, Rollup
from contract.catalog import Catalog
from contract.events import Channel, Outcome
from contract.metrics import BUCKETS, FAMILIES, FAMILY_BY_NAME, Family

# -- the API's own metrics -----------------------------------------------------------------

LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    """The API's own metrics (not the business families)."""

    requests: Counter
    latency: Histogram
    ingest_events: Counter
    rejected: Counter
    rate_limited: Counter
    saturated: Counter
    dead_letter_failures: Counter
    inflight: Gauge
    readmodel_ready: Gauge
    readmodel_lag: Gauge
    readmodel_records: Gauge
    unknown_cells: Gauge


def build_metrics(registry: CollectorRegistry) -> ApiMetrics:
    """Create the API's own metrics in ``registry``."""
    p = "servicepulse_api_"
    return ApiMetrics(
        requests=Counter(
            p + "requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        ),
        latency=Histogram(
            p + "request_duration_seconds",
            "HTTP request latency by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        ingest_events=Counter(
            p + "ingest_events_total",
            "Events received by POST /v1/events, by result (accepted, duplicate, rejected)",
            ["result"],
            registry=registry,
        ),
        rejected=Counter(
            p + "ingest_rejected_total",
            "Events rejected at ingest, by the sending token's agency and reason",
            ["agency", "reason"],
            registry=registry,
        ),
        rate_limited=Counter(
            p + "rate_limited_total", "Ingest requests refused with 429", registry=registry
        ),
        saturated=Counter(
            p + "saturated_total",
            "Ingest requests refused with 503: too many events in flight or requests at once",
            registry=registry,
        ),
        dead_letter_failures=Counter(
            p + "dead_letter_failures_total",
            "Rejection records that could not be written to the dead-letter topic",
            registry=registry,
        ),
        inflight=Gauge(
            p + "inflight_events", "Events produced and not yet acknowledged", registry=registry
        ),
        readmodel_ready=Gauge(
            p + "readmodel_ready", "1 once the read model caught up with Kafka", registry=registry
        ),
        readmodel_lag=Gauge(
            p + "readmodel_lag_records",
            "Records between the read model and the end offsets seen at start",
            registry=registry,
        ),
        readmodel_records=Gauge(
            p + "readmodel_records", "Records the read model has applied", registry=registry
        ),
        unknown_cells=Gauge(
            p + "unknown_cells",
            "Rollup cells left out of /metrics because the catalog does not know a label",
            registry=registry,
        ),
    )


# -- the business families ---------------------------------------------------------------------

#: counters of the dimension labels taken from one integer rollup field
_SCALARS: Final = {
    "journeys_started_total": "started",
    "journeys_started_digital_total": "started_digital",
    "journeys_submitted_total": "submitted",
    "journeys_abandoned_total": "abandoned",
    "journeys_resolved_total": "resolved",
    "journeys_resolved_with_errors_total": "resolved_with_errors",
    "journeys_skipped_steps_total": "skipped_steps",
    "appeals_received_total": "appeals_received",
    "interagency_requests_total": "interagency_requested",
    "cases_started_total": "cases_started",
    "cases_completed_total": "cases_completed",
    "duplicate_events_total": "duplicates",
    "events_processed_total": "events",
    "deadlines_beyond_calendar_total": "beyond_calendar",
}
_HISTS: Final = {
    "decision_duration_seconds": "decision_seconds",
    "form_duration_seconds": "form_seconds",
    "office_wait_seconds": "wait_seconds",
    "interagency_response_seconds": "interagency_seconds",
    "case_duration_seconds": "case_seconds",
    "delivery_delay_seconds": "skew_seconds",
    "clock_skew_seconds": "sender_skew_seconds",
}
_GAUGES: Final = {
    "applications_pending": "pending",
    "applications_overdue": "overdue",
    "journeys_open": "open_journeys",
    "appeals_open": "appeals_open",
    "appeals_overdue": "appeals_overdue",
}
_CHANNELS: Final = frozenset(c.value for c in Channel)
_OUTCOMES: Final = frozenset(o.value for o in Outcome)
_TIMELINESS: Final = frozenset({"on_time", "late", "unknown"})
_SCORES: Final = frozenset({"1", "2", "3", "4", "5"})
_BOOL: Final = frozenset({"true", "false"})
_REASON_RE: Final = re.compile(r"^[a-z_]{1,40}$")

Labels = dict[str, str]


class ModelView(Protocol):
    """The parts of the read model the collector uses."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Guards :meth:`totals_view`."""
        ...

    def totals_view(self) -> Iterable[tuple[tuple[str, str, str, str, str], Rollup]]:
        """Cells with their rollups summed over days and partitions (lock held)."""
        ...

    def gauges(self) -> list[tuple[tuple[str, str, str, str], Gauges]]:
        """Live gauges summed over partitions."""
        ...

    def dead_letters(
        self, day_from: str | None = None, day_to: str | None = None
    ) -> dict[tuple[str, str], int]:
        """Dead letters by (agency, reason)."""
        ...


Sink = dict[str, dict[tuple[str, ...], float]]


class BusinessCollector(Collector):
    """Renders the business families of the read model at scrape time.

    Args:
        model: the read model.
        catalog: the label values allowed.
        unknown: set to the number of cells left out at each scrape.
    """

    def __init__(
        self,
        model: ModelView,
        catalog: Catalog,
        unknown: Gauge | None = None,
    ) -> None:
        self._model = model
        self._catalog = catalog
        self._unknown = unknown

    def describe(self) -> Iterator[Metric]:
        """Nothing: describing would run a collection at registration."""
        return iter(())

    def _valid_cell(self, a: str, s: str, m: str, c: str, ls: str) -> bool:
        cat = self._catalog
        return (
            a in cat.agencies
            and (s == "" or s in cat.services)
            and m in cat.municipalities
            and c in _CHANNELS
            and (ls == "" or ls in cat.life_situations)
        )

    def collect(self) -> Iterator[Metric]:
        """One sample set per family of :data:`contract.metrics.FAMILIES`."""
        counters: Sink = {f.name: {} for f in FAMILIES if f.kind == "counter"}
        gauges: Sink = {f.name: {} for f in FAMILIES if f.kind == "gauge"}
        hists: dict[str, dict[tuple[str, ...], Hist]] = {
            f.name: {} for f in FAMILIES if f.kind == "histogram"
        }
        unknown = 0
        cat = self._catalog
        with self._model.lock:
            for cell, r in self._model.totals_view():
                a, s, m, c, ls = cell
                if not self._valid_cell(a, s, m, c, ls):
                    unknown += 1
                    continue
                base = {
                    "agency": a,
                    "service": s,
                    "municipality": m,
                    "channel": c,
                    "life_situation": ls,
                }
                self._rollup(counters, hists, base, r, cat)
        for (a, s, m, c), g in self._model.gauges():
            if not self._valid_cell(a, s, m, c, ""):
                unknown += 1
                continue
            base = {"agency": a, "service": s, "municipality": m, "channel": c}
            for name, fld in _GAUGES.items():
                _put(gauges, name, base, getattr(g, fld))
        for code, ag in cat.agencies.items():
            labels = {"agency": code, "agency_name": ag.short_name or ag.name}
            _put(gauges, "catalog_agency_info", labels, 1)
        for code, muni in cat.municipalities.items():
            labels = {"municipality": code, "municipality_name": muni.name}
            _put(gauges, "catalog_municipality_info", labels, 1)
        for code, office in cat.offices.items():
            labels = {
                "office": code,
                "office_name": office.name,
                "municipality": office.municipality,
            }
            _put(gauges, "catalog_office_info", labels, 1)
        for (agency, reason), n in self._model.dead_letters().items():
            a = agency if agency in cat.agencies else "unknown"
            _put(counters, "events_rejected_total", {"agency": a, "reason": reason}, n)
        if self._unknown is not None:
            self._unknown.set(unknown)

        for f in FAMILIES:
            if f.kind == "counter":
                cm = CounterMetricFamily(f.full, f.help, labels=f.labels)
                for lv, v in counters[f.name].items():
                    cm.add_metric(lv, v)
                yield cm
            elif f.kind == "gauge":
                gm = GaugeMetricFamily(f.full, f.help, labels=f.labels)
                for lv, v in gauges[f.name].items():
                    gm.add_metric(lv, v)
                yield gm
            else:
                yield _histogram(f, hists[f.name])

    def _rollup(
        self,
        counters: Sink,
        hists: dict[str, dict[tuple[str, ...], Hist]],
        base: Labels,
        r: Rollup,
        cat: Catalog,
    ) -> None:
        for name, fld in _SCALARS.items():
            v = getattr(r, fld)
            if v:
                _put(counters, name, base, v)
        svc = cat.services.get(base["service"])
        for step, v in r.steps.items():
            if svc is not None and step in svc.step_codes:
                _put(counters, "journey_steps_total", {**base, "step": step}, v)
        for code, v in r.errors.items():
            if svc is not None and code not in svc.error_codes:
                code = "other"
            _put(counters, "journey_errors_total", {**base, "code": code}, v)
        for key, v in r.decisions.items():
            outcome, _, timeliness = key.partition(":")
            if outcome in _OUTCOMES and timeliness in _TIMELINESS:
                labels = {**base, "outcome": outcome, "timeliness": timeliness}
                _put(counters, "decisions_total", labels, v)
        for score, v in r.feedback.items():
            if score in _SCORES:
                _put(counters, "feedback_total", {**base, "score": score}, v)
        for within, v in r.visits.items():
            if within in _BOOL:
                _put(counters, "office_visits_total", {**base, "within_standard": within}, v)
        for key, v in r.office_visits.items():
            office, _, within = key.rpartition(":")
            if office in cat.offices and within in _BOOL:
                labels = {**base, "office": office, "within_standard": within}
                _put(counters, "office_visits_by_office_total", labels, v)
        for timeliness, v in r.appeals_answered.items():
            if timeliness in _TIMELINESS:
                _put(counters, "appeals_answered_total", {**base, "timeliness": timeliness}, v)
        for within, v in r.interagency_responded.items():
            flag = {"within": "true", "over": "false"}.get(within)
            if flag is not None:
                _put(counters, "interagency_responses_total", {**base, "within_48h": flag}, v)
        for reason, v in r.late.items():
            if _REASON_RE.match(reason):
                _put(counters, "late_events_total", {**base, "reason": reason}, v)
        for name, fld in _HISTS.items():
            h: Hist | None = getattr(r, fld)
            if h is not None and h.count:
                lv = tuple(base[n] for n in FAMILY_BY_NAME[name].labels)
                acc = hists[name].get(lv)
                if acc is None:
                    acc = hists[name][lv] = Hist.empty(fld)
                acc.add(h)


def _put(sink: Sink, name: str, labels: Labels, value: float) -> None:
    lv = tuple(labels[n] for n in FAMILY_BY_NAME[name].labels)
    d = sink[name]
    d[lv] = d.get(lv, 0) + value


def _histogram(f: Family, series: dict[tuple[str, ...], Hist]) -> HistogramMetricFamily:
    hm = HistogramMetricFamily(f.full, f.help, labels=f.labels)
    assert f.buckets is not None  # noqa: S101 - every histogram family names its buckets
    bounds = BUCKETS[f.buckets]
    for lv, h in series.items():
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for i, bound in enumerate(bounds):
            cumulative += h.counts[i] if i < len(h.counts) else 0
            buckets.append((_le(bound), cumulative))
        buckets.append(("+Inf", h.count))
        hm.add_metric(list(lv), buckets, h.sum_ms / 1000.0)
    return hm


def _le(bound: float) -> str:
    return str(float(bound))
