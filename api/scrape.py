"""The ``/metrics`` response: prepared business bytes plus the API's own metrics.

The business families come from :class:`api.exposition.LiveExposition`, which renders
only what changed since the previous scrape; the API's own metrics are a few dozen
series rendered by ``prometheus_client``. When the client accepts gzip both parts are
sent as one gzip stream whose business part is compressed once per change, not once
per scrape (:meth:`api.exposition.LiveExposition.gzip_payload`).

Until the read model has caught up with the end offsets it saw at start the business
families are withheld: a partial sum would show Prometheus a counter reset and then a
jump of everything counted before (docs/METRICS.md, "After a restart").
"""

from __future__ import annotations

import gzip

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.exposition import ApiMetrics
from api.readmodel import ReadModel
from contract.cardinality import budget
from contract.catalog import Catalog


def install(metrics: ApiMetrics, model: ReadModel, catalog: Catalog) -> None:
    """Wire the gauges that describe the exposition to the read model and catalog."""
    for name, n in budget(catalog).items():
        metrics.business_series_budget.labels(name).set(n)
    metrics.unknown_cells.set_function(lambda: model.unknown_cells)
    metrics.business_withheld.set_function(lambda: 0.0 if model.status.ready else 1.0)


def withheld(model: ReadModel) -> bool:
    """Whether the business families are left out of ``/metrics`` now."""
    return not model.status.ready


def body(
    model: ReadModel, registry: CollectorRegistry, metrics: ApiMetrics, accept_encoding: str
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a ``/metrics`` response.

    Args:
        model: the read model whose exposition is served.
        registry: the API's own metrics.
        metrics: the API's own metrics holder (the per-family series gauge is set here).
        accept_encoding: the request's ``Accept-Encoding`` header.
    """
    compressed = "gzip" in accept_encoding.lower()
    headers = {"Content-Type": CONTENT_TYPE_LATEST}
    if compressed:
        headers["Content-Encoding"] = "gzip"
    if withheld(model):
        own = generate_latest(registry)
        return (gzip.compress(own, compresslevel=1) if compressed else own), headers
    with model.lock:
        series = model.exposition.series()
    for name, n in series.items():
        metrics.business_series.labels(name).set(n)
    own = generate_latest(registry)
    with model.lock:
        if compressed:
            return model.exposition.gzip_payload(own), headers
        return model.exposition.payload() + own, headers
