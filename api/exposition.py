"""What ``/metrics`` shows: the business families from the read model, and the API's own.

:class:`LiveExposition` keeps the text of every business family of
:data:`contract.metrics.FAMILIES` up to date as aggregate records arrive: the read model
hands it the difference each record makes to a cell, the exposition adds it to the one
series of each family the cell feeds and marks that series' line to be rendered again.
A scrape renders only the lines that changed since the previous scrape, joins prepared
bytes and, when the client accepts gzip, serves a compressed copy made once per change.
Its cost depends on the number of series (bounded by the catalog, docs/METRICS.md
"Series budget"), never on the days of history or the number of rollup cells.

Counters are sums over all days and partitions of the cumulative rollups, so they never
go backwards; gauges are sums over partitions of the latest live counts; histograms come
from the rollups' bucket counts. Label values come only from the catalog (and the
contract's closed sets); a cell the catalog does not know is left out and counted in
``servicepulse_api_unknown_cells``. Until the read model has caught up with the end
offsets it saw at start, the business families are withheld (a partial sum would be a
false drop and then a false jump in Prometheus), ``servicepulse_api_business_withheld``
is 1 and ``/readyz`` says so.

:func:`build_metrics` makes the API's own metrics (requests, latency, ingest results).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contract.aggregates import INT_FIELDS, Dims, GaugeDims, Gauges, Hist, Rollup
from contract.catalog import Catalog
from contract.events import Channel, Outcome, Reason
from contract.metrics import BUCKETS, FAMILIES, LATE_REASONS, Family
from contract.names import info_series

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
    business_withheld: Gauge
    business_series: Gauge
    business_series_budget: Gauge


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
        business_withheld=Gauge(
            p + "business_withheld",
            "1 while the business families are left out of /metrics: the read model has "
            "not caught up with the end offsets it saw at start",
            registry=registry,
        ),
        business_series=Gauge(
            p + "business_series",
            "Series of the business families, by family (compare with the series budget)",
            ["family"],
            registry=registry,
        ),
        business_series_budget=Gauge(
            p + "business_series_budget",
            "Most series a business family can have for the catalog (docs/METRICS.md)",
            ["family"],
            registry=registry,
        ),
    )


# -- the business families ---------------------------------------------------------------------

#: families read from one rollup or gauge field (each family names its source field)
_SCALARS: Final = {
    f.name: f.source for f in FAMILIES if f.kind == "counter" and f.source in INT_FIELDS
}
_HISTS: Final = {f.name: f.source for f in FAMILIES if f.kind == "histogram" and f.source}
_GAUGES: Final = {f.name: f.source for f in FAMILIES if f.kind == "gauge" and f.source}
_CHANNELS: Final = frozenset(c.value for c in Channel)
_OUTCOMES: Final = frozenset(o.value for o in Outcome)
_TIMELINESS: Final = frozenset({"on_time", "late", "unknown"})
_SCORES: Final = frozenset({"1", "2", "3", "4", "5"})
_BOOL: Final = frozenset({"true", "false"})
_LATE: Final = frozenset(LATE_REASONS)
_REJECT_REASONS: Final = frozenset(r.value for r in Reason)
_WITHIN_48H: Final = {"within": "true", "over": "false"}
#: the label value of a bounded dimension whose value the catalog does not bound here
OTHER: Final = "other"
UNKNOWN: Final = "unknown"
#: families whose municipality is the office's (see :meth:`LiveExposition._base`)
_OFFICE_FAMILIES: Final = frozenset({"office_visits_total", "office_wait_seconds"})

Labels = dict[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


@dataclass(slots=True)
class _Table:
    """The series of one family: values, their rendered lines, which lines are stale."""

    family: Family
    values: dict[tuple[str, ...], float] = field(default_factory=dict)
    hists: dict[tuple[str, ...], Hist] = field(default_factory=dict)
    lines: dict[tuple[str, ...], bytes] = field(default_factory=dict)
    #: each series' sample lines up to the value, made once
    heads: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    stale: set[tuple[str, ...]] = field(default_factory=set)
    #: the header and every line, joined; ``None`` when a line changed since
    block: bytes | None = None

    def header(self) -> bytes:
        f = self.family
        kind = "counter" if f.kind == "counter" else f.kind
        return f"# HELP {f.full} {f.help}\n# TYPE {f.full} {kind}\n".encode()

    def series(self) -> int:
        """Samples this family exposes (a histogram's buckets, sum and count each count)."""
        if self.family.kind != "histogram":
            return len(self.values)
        assert self.family.buckets is not None  # noqa: S101 - histograms name their buckets
        return len(self.hists) * (len(BUCKETS[self.family.buckets]) + 3)

    def render(self) -> bytes:
        if self.block is not None:
            return self.block
        f = self.family
        heads = self.heads
        for lv in self.stale:
            head = heads.get(lv)
            if head is None:
                head = heads[lv] = _heads(f, lv)
            if f.kind == "histogram":
                self.lines[lv] = _histogram_lines(head, self.hists[lv])
            else:
                self.lines[lv] = f"{head[0]}{_number(self.values[lv])}\n".encode()
        self.stale = set()
        self.block = self.header() + b"".join(self.lines.values())
        return self.block


def _heads(f: Family, lv: tuple[str, ...]) -> tuple[str, ...]:
    """Each sample line of one series up to its value (labels never change)."""
    labels = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(f.labels, lv, strict=True))
    if f.kind != "histogram":
        return (f"{f.full}{{{labels}}} ",)
    assert f.buckets is not None  # noqa: S101 - every histogram family names its buckets
    sep = "," if labels else ""
    les = [_le(b) for b in BUCKETS[f.buckets]] + ["+Inf"]
    return (
        *(f'{f.full}_bucket{{{labels}{sep}le="{le}"}} ' for le in les),
        f"{f.full}_count{{{labels}}} ",
        f"{f.full}_sum{{{labels}}} ",
    )


def _histogram_lines(heads: tuple[str, ...], h: Hist) -> bytes:
    """Cumulative buckets, +Inf, count and sum of one series (``heads`` from _heads)."""
    out: list[str] = []
    cumulative = 0
    n = len(heads) - 3  # finite buckets
    for i in range(n):
        cumulative += h.counts[i] if i < len(h.counts) else 0
        out.append(f"{heads[i]}{cumulative}\n")
    total = h.count
    out.append(f"{heads[n]}{total}\n{heads[n + 1]}{total}\n")
    out.append(f"{heads[n + 2]}{_number(h.sum_ms / 1000.0)}\n")
    return "".join(out).encode()


class LiveExposition:
    """The business families, kept up to date record by record; a scrape joins bytes.

    The read model calls :meth:`add_rollup`, :meth:`gauges_changed` and
    :meth:`add_dead_letter` while it holds its lock, and :meth:`payload` is called
    under the same lock, so no method here locks.

    Args:
        catalog: the label values allowed.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._tables: dict[str, _Table] = {f.name: _Table(f) for f in FAMILIES}
        self._offices: frozenset[tuple[str, str]] = frozenset(
            (o.agency, o.municipality) for o in catalog.offices.values()
        )
        self._unknown: set[Dims] = set()
        self._names(catalog)
        self._generation = 0
        self._rendered: tuple[int, bytes] = (-1, b"")
        self._compressed: tuple[int, bytes, Any] = (-1, b"", None)

    # -- updates ---------------------------------------------------------------------

    def _names(self, cat: Catalog) -> None:
        """The Russian names of every code a label can carry as info series (value 1):
        they never change (:func:`contract.names.info_series`, the pseudo-values such as
        ``other`` included, so a dashboard's join with the names drops no series)."""
        for family, labels in info_series(cat):
            self._add(family, labels, 1)

    @property
    def unknown_cells(self) -> int:
        """Cells left out because the catalog does not know one of their labels."""
        return len(self._unknown)

    def series(self) -> dict[str, int]:
        """Series exposed per family (histogram buckets, sum and count included)."""
        return {name: t.series() for name, t in self._tables.items()}

    def _valid(self, a: str, s: str, m: str, c: str, ls: str) -> bool:
        cat = self._catalog
        return (
            a in cat.agencies
            and (s == "" or s in cat.services)
            and m in cat.municipalities
            and c in _CHANNELS
            and (ls == "" or ls in cat.life_situations)
        )

    def _add(self, name: str, base: Labels, value: float) -> None:
        t = self._tables[name]
        lv = tuple(base[n] for n in t.family.labels)
        t.values[lv] = t.values.get(lv, 0) + value
        t.stale.add(lv)
        t.block = None

    def _base(self, cell: Dims) -> Labels:
        a, s, m, c, ls = cell
        return {
            "agency": a,
            "service": s,
            "municipality": m,
            "channel": c,
            "life_situation": ls,
        }

    def add_rollup(self, cell: Dims, delta: Rollup) -> None:
        """Add the difference one aggregate record made to ``cell`` (summed over days)."""
        if not self._valid(*cell):
            self._unknown.add(cell)
            return
        self._generation += 1
        base = self._base(cell)
        add = self._add
        for name, fld in _SCALARS.items():
            v = getattr(delta, fld)
            if v:
                add(name, base, v)
        svc = self._catalog.services.get(base["service"])
        for step, v in delta.steps.items():
            if svc is not None and step in svc.step_codes:
                add("journey_steps_total", {**base, "step": step}, v)
        for code, v in delta.errors.items():
            if svc is None or code not in svc.error_codes:
                code = OTHER
            add("journey_errors_total", {**base, "code": code}, v)
        for key, v in delta.decisions.items():
            outcome, _, timeliness = key.partition(":")
            if outcome in _OUTCOMES and timeliness in _TIMELINESS:
                add("decisions_total", {**base, "outcome": outcome, "timeliness": timeliness}, v)
        for score, v in delta.feedback.items():
            if score in _SCORES:
                add("feedback_total", {**base, "score": score}, v)
        office = base
        if (cell.agency, cell.municipality) not in self._offices:
            # a visit reported for a place without an office of the agency: the label
            # stays bounded by the catalog's offices (docs/METRICS.md)
            office = {**base, "municipality": OTHER}
        for within, v in delta.visits.items():
            if within in _BOOL:
                add("office_visits_total", {**office, "within_standard": within}, v)
        offices = self._catalog.offices
        for key, v in delta.office_visits.items():
            code, _, within = key.rpartition(":")
            if within in _BOOL:
                info = offices.get(code)
                # the office of another agency (or none the catalog knows): other, so the
                # label stays bounded by the agency's own offices (docs/METRICS.md)
                code = code if info is not None and info.agency == cell.agency else OTHER
                labels = {**base, "office": code, "within_standard": within}
                add("office_visits_by_office_total", labels, v)
        for timeliness, v in delta.appeals_answered.items():
            if timeliness in _TIMELINESS:
                add("appeals_answered_total", {**base, "timeliness": timeliness}, v)
        for within, v in delta.interagency_responded.items():
            flag = _WITHIN_48H.get(within)
            if flag is not None:
                add("interagency_responses_total", {**base, "within_48h": flag}, v)
        for reason, v in delta.late.items():
            add("late_events_total", {**base, "reason": reason if reason in _LATE else OTHER}, v)
        for name, fld in _HISTS.items():
            h: Hist | None = getattr(delta, fld)
            if h is not None and (h.sum_ms or any(h.counts)):
                t = self._tables[name]
                labels = office if name in _OFFICE_FAMILIES else base
                lv = tuple(labels[n] for n in t.family.labels)
                acc = t.hists.get(lv)
                if acc is None:
                    acc = t.hists[lv] = Hist.empty(fld)
                acc.add(h)
                t.stale.add(lv)
                t.block = None

    def gauges_changed(self, cell: GaugeDims, old: Gauges | None, new: Gauges | None) -> None:
        """One partition's live counts of ``cell`` went from ``old`` to ``new``."""
        a, s, m, c = cell
        if not self._valid(a, s, m, c, ""):
            self._unknown.add(Dims(a, s, m, c, ""))
            return
        self._generation += 1
        base = self._base(Dims(a, s, m, c, ""))
        for name, fld in _GAUGES.items():
            d = (getattr(new, fld) if new else 0) - (getattr(old, fld) if old else 0)
            t = self._tables[name]
            lv = tuple(base[n] for n in t.family.labels)
            if d or (new is not None and lv not in t.values):
                self._add(name, base, d)

    def add_dead_letter(self, agency: str, reason: str, n: int = 1) -> None:
        """Count ``n`` rejected events of ``agency`` for ``reason``."""
        self._generation += 1
        a = agency if agency in self._catalog.agencies else UNKNOWN
        r = reason if reason in _REJECT_REASONS else OTHER
        self._add("events_rejected_total", {"agency": a, "reason": r}, n)

    # -- the scrape --------------------------------------------------------------------

    def payload(self) -> bytes:
        """The business families as text; lines are rendered only for changed series."""
        gen = self._generation
        if self._rendered[0] != gen:
            self._rendered = (gen, b"".join(t.render() for t in self._tables.values()))
        return self._rendered[1]

    def gzip_payload(self, tail: bytes) -> bytes:
        """One gzip stream of the business families followed by ``tail``.

        The business part is compressed once per change and kept as a compressor flushed
        to a byte boundary; a scrape copies that compressor and compresses only ``tail``
        (the API's own metrics), so the body is a single gzip member every client reads.
        """
        gen = self._generation
        if self._compressed[0] != gen:
            c = zlib.compressobj(1, zlib.DEFLATED, 31)
            head = c.compress(self.payload()) + c.flush(zlib.Z_SYNC_FLUSH)
            self._compressed = (gen, head, c)
        _, head, prepared = self._compressed
        c = prepared.copy()
        body: bytes = head + c.compress(tail) + c.flush()
        return body


def _le(bound: float) -> str:
    return str(float(bound))
