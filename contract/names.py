"""The Russian name of every code a business metric label can carry, as info series.

Dashboards show names, never codes: each code label ``<label>`` has an info family
``servicepulse_catalog_<label>_info{<keys>, <label>_name}`` (value 1, families in
:data:`contract.metrics.FAMILIES`), and a panel joins it onto its result. So that the join
drops no series, every value the API can expose has a name: the catalog's codes, the
closed sets of the contract (channels, rejection and late reasons) and the pseudo-values
(:data:`contract.metrics.PSEUDO_NAMES`: ``unknown``, ``other``, the empty service).

Where the names come from (docs/METRICS.md, "Names of codes"): agencies, municipalities,
offices, services, their form steps and error codes, life situations from the catalog;
channels from :data:`contract.events.CHANNEL_NAMES`; rejection reasons from
:data:`contract.events.REASON_NAMES`; late reasons from
:data:`contract.metrics.LATE_REASON_NAMES`.
"""

from __future__ import annotations

from contract.catalog import Catalog
from contract.events import CHANNEL_NAMES, REASON_NAMES
from contract.metrics import FAMILY_BY_NAME, LATE_REASON_NAMES, PSEUDO_NAMES, info_keys

#: ``(family, labels)``: one info series.
InfoSeries = tuple[str, dict[str, str]]


def reason_names() -> dict[str, str]:
    """Code -> Russian name of every value of a ``reason`` label: the rejection reasons
    (``events_rejected_total``, the processor's dead letters), the late reasons
    (``late_events_total``) and ``other``. The sets are disjoint (a test checks it), so
    one info family names both."""
    return {**REASON_NAMES, **LATE_REASON_NAMES, **PSEUDO_NAMES["reason"]}


def info_series(catalog: Catalog) -> list[InfoSeries]:
    """Every info series the API exposes for ``catalog``, in family order.

    A label of the family beyond its keys and the name (an office's municipality) is
    the catalog's value, empty for a pseudo-value.
    """
    out: list[InfoSeries] = []
    seen: set[tuple[str, ...]] = set()

    def add(label: str, **values: str) -> None:
        family = FAMILY_BY_NAME[f"catalog_{label}_info"]
        key = (family.name, *(values[k] for k in info_keys(label)))
        if key in seen:  # a catalog code spelled like a pseudo-value keeps its own name
            return
        seen.add(key)
        out.append((family.name, {lab: values.get(lab, "") for lab in family.labels}))

    def pseudo(label: str, **scope: str) -> None:
        for code, name in PSEUDO_NAMES.get(label, {}).items():
            add(label, **scope, **{label: code, f"{label}_name": name})

    for code, ag in catalog.agencies.items():
        add("agency", agency=code, agency_name=ag.display_name)
    pseudo("agency")
    for code, muni in catalog.municipalities.items():
        add("municipality", municipality=code, municipality_name=muni.name)
    pseudo("municipality")
    for code, office in catalog.offices.items():
        add("office", office=code, office_name=office.name, municipality=office.municipality)
    pseudo("office")
    for code, idx in catalog.services.items():
        add("service", service=code, service_name=idx.service.name)
    pseudo("service")
    for code, ls in catalog.life_situations.items():
        add("life_situation", life_situation=code, life_situation_name=ls.name)
    pseudo("life_situation")
    for code, idx in catalog.services.items():
        for step in idx.service.steps:
            add("step", service=code, step=step.code, step_name=step.name)
    for code, idx in catalog.services.items():
        for err in idx.service.errors:
            add("code", service=code, code=err.code, code_name=err.name)
        pseudo("code", service=code)
    pseudo("code", service="")  # an error of a journey without a service
    for channel, name in CHANNEL_NAMES.items():
        add("channel", channel=str(channel), channel_name=name)
    for reason, name in reason_names().items():
        add("reason", reason=str(reason), reason_name=name)
    return out
