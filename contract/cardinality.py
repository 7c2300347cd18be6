"""The series budget: how many Prometheus series each business family can have.

Every label value of a business family comes from the catalog or from a closed set of
the contract, so the number of series is a function of the catalog's size alone. This
module computes that bound family by family (docs/METRICS.md, "Series budget", writes
the same formula); ``servicepulse dashboards series`` prints it for a catalog, and the
API exposes the actual count (``servicepulse_api_business_series{family}``) for the
over-budget alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from contract.catalog import Catalog
from contract.events import Channel, Reason
from contract.metrics import BUCKETS, FAMILIES, LATE_REASONS, PSEUDO_NAMES, Family

#: Values of each family-own label (beyond the dimensions).
_OWN: Final[dict[str, int]] = {
    "outcome": 2,  # approved, rejected
    "timeliness": 3,  # on_time, late, unknown
    "score": 5,
    "within_standard": 2,
    "within_48h": 2,
    "life_situation": 0,  # dimension: see _size
}
CHANNELS: Final = len(Channel)
#: The info series of the code names (contract.names): family -> their number, one per
#: code and one per pseudo-value (``other`` error code: one per service and one without).
_INFO: Final[dict[str, Callable[[Sizes], int]]] = {
    "catalog_agency_info": lambda n: n.agencies + len(PSEUDO_NAMES["agency"]),
    "catalog_municipality_info": lambda n: n.municipalities + len(PSEUDO_NAMES["municipality"]),
    "catalog_office_info": lambda n: n.offices + len(PSEUDO_NAMES["office"]),
    "catalog_service_info": lambda n: n.services + len(PSEUDO_NAMES["service"]),
    "catalog_life_situation_info": lambda n: (
        n.life_situations + len(PSEUDO_NAMES["life_situation"])
    ),
    "catalog_step_info": lambda n: n.steps,
    "catalog_code_info": lambda n: n.error_codes + 1,
    "catalog_channel_info": lambda n: CHANNELS,
    "catalog_reason_info": lambda n: len(Reason) + len(LATE_REASONS) + 1,
}
#: The demo goal for the whole exposition (issue 15; docs/BENCHMARKS.md).
GOAL: Final = 30_000


@dataclass(frozen=True, slots=True)
class Sizes:
    """The catalog sizes the budget is a formula of."""

    agencies: int
    services: int
    municipalities: int
    life_situations: int
    #: distinct (agency, municipality) pairs of the catalog's offices
    office_places: int
    offices: int
    #: sum over services of their steps
    steps: int
    #: sum over services of their error codes plus one (``other``)
    error_codes: int

    @classmethod
    def of(cls, catalog: Catalog) -> Sizes:
        """The sizes of ``catalog``."""
        services = catalog.services.values()
        return cls(
            agencies=len(catalog.agencies),
            services=len(catalog.services),
            municipalities=len(catalog.municipalities),
            life_situations=len(catalog.life_situations),
            office_places=len({(o.agency, o.municipality) for o in catalog.offices.values()}),
            offices=len(catalog.offices),
            steps=sum(len(s.step_codes) for s in services),
            error_codes=sum(len(s.error_codes) + 1 for s in services),
        )


def family_budget(f: Family, n: Sizes) -> int:
    """The most series ``f`` can have for a catalog of sizes ``n``.

    ``(agency, service)`` pairs are the services plus one agency-level pair per agency
    (``service=""``: feedback or late events without a service); ``step`` and ``code``
    are per service (and ``other`` per agency); the municipality of office families is
    that of an office (or ``other``); an ``office`` label is one of the agency's own
    offices (or ``other``) and goes with any service (an MFC serves other agencies'
    services); the catalog's info series have one series per code; a histogram counts its
    buckets, ``+Inf``, ``_sum`` and ``_count``.
    """
    labels = set(f.labels)
    info = _INFO.get(f.name)
    if info is not None:
        return info(n)
    if "office" in labels:
        size = (n.offices + n.agencies) * (n.services + 1)
    elif "agency" not in labels:
        size = 1  # summed over agencies (life-situation cases span them)
    elif "step" in labels:
        size = n.steps
    elif "code" in labels:
        size = n.error_codes + n.agencies  # an error without a service counts as other
    elif "service" in labels:
        size = n.services + n.agencies
    elif "municipality" in labels:
        size = n.office_places + n.agencies
    elif f.name == "events_rejected_total":
        size = (n.agencies + 1) * (len(Reason) + 1)  # unknown agency, other reason
    else:
        size = n.agencies
    if "channel" in labels:
        size *= CHANNELS
    if "life_situation" in labels:
        size *= n.life_situations + 1
    if f.name == "late_events_total":
        size *= len(LATE_REASONS) + 1  # other
    for label in labels:
        size *= _OWN.get(label, 1) or 1
    if f.kind == "histogram":
        assert f.buckets is not None  # noqa: S101 - every histogram family names its buckets
        size *= len(BUCKETS[f.buckets]) + 3
    return size


def budget(catalog: Catalog) -> dict[str, int]:
    """The series budget of every business family for ``catalog``, in family order."""
    n = Sizes.of(catalog)
    return {f.name: family_budget(f, n) for f in FAMILIES}
