"""The Russian names of codes (contract/names.py): every code has one, once, in Russian."""

from __future__ import annotations

import re

import pytest

from contract.catalog import load_catalog
from contract.events import CHANNEL_NAMES, REASON_NAMES, Channel, Reason
from contract.metrics import (
    FAMILY_BY_NAME,
    LATE_REASON_NAMES,
    LATE_REASONS,
    NAMED_LABELS,
    PSEUDO_NAMES,
    info_keys,
)
from contract.names import info_series, reason_names

CATALOG = load_catalog()
#: Latin words a Russian name may keep: names of formats and systems, not jargon.
PROPER = {"JSON", "Kafka"}


def _russian(name: str) -> bool:
    latin = set(re.findall(r"[A-Za-z]+", name)) - PROPER
    return bool(re.search("[а-яё]", name, re.I)) and not latin


def test_every_closed_set_value_has_a_russian_name() -> None:
    assert set(REASON_NAMES) == {r.value for r in Reason}
    assert set(CHANNEL_NAMES) == {c.value for c in Channel}
    assert set(LATE_REASON_NAMES) == set(LATE_REASONS)
    names = {**REASON_NAMES, **CHANNEL_NAMES, **LATE_REASON_NAMES}
    for label_names in PSEUDO_NAMES.values():
        names.update(label_names)
    assert [n for n in names.values() if not _russian(n)] == []


def test_one_reason_family_names_both_rejection_and_late_reasons() -> None:
    assert set(REASON_NAMES).isdisjoint(LATE_REASON_NAMES)
    assert "other" not in REASON_NAMES and "other" not in LATE_REASON_NAMES
    assert set(reason_names()) == {*REASON_NAMES, *LATE_REASON_NAMES, "other"}


def test_each_named_label_has_a_family_joined_on_its_keys() -> None:
    assert set(NAMED_LABELS) >= {
        "agency",
        "service",
        "municipality",
        "office",
        "life_situation",
        "step",
        "code",
        "channel",
        "reason",
    }
    for label in NAMED_LABELS:
        family = FAMILY_BY_NAME[f"catalog_{label}_info"]
        assert family.kind == "gauge" and f"{label}_name" in family.labels
        assert info_keys(label)[-1] == label
    # a step and an error code are codes of their service: the same code repeats
    assert info_keys("step") == ("service", "step")
    assert info_keys("code") == ("service", "code")


def _named(family: str) -> dict[tuple[str, ...], str]:
    label = family.removeprefix("catalog_").removesuffix("_info")
    keys = info_keys(label)
    out: dict[tuple[str, ...], str] = {}
    for name, labels in info_series(CATALOG):
        if name == family:
            key = tuple(labels[k] for k in keys)
            assert key not in out, (family, key)  # one name per code
            out[key] = labels[f"{label}_name"]
    return out


def test_info_series_name_every_catalog_code_and_pseudo_value() -> None:
    steps = _named("catalog_step_info")
    errors = _named("catalog_code_info")
    for code, idx in CATALOG.services.items():
        for st in idx.service.steps:
            assert steps[(code, st.code)] == st.name
        for e in idx.service.errors:
            assert errors[(code, e.code)] == e.name
        assert errors[(code, "other")] == PSEUDO_NAMES["code"]["other"]
    assert errors[("", "other")] == PSEUDO_NAMES["code"]["other"]  # no service
    assert len(steps) == sum(len(i.step_codes) for i in CATALOG.services.values())
    channels = _named("catalog_channel_info")
    assert channels == {(c.value,): CHANNEL_NAMES[c] for c in Channel}
    reasons = _named("catalog_reason_info")
    assert reasons == {(r,): n for r, n in reason_names().items()}
    agencies = _named("catalog_agency_info")
    assert set(agencies) == {(a,) for a in [*CATALOG.agencies, "unknown"]}
    offices = _named("catalog_office_info")
    assert set(offices) == {(o,) for o in [*CATALOG.offices, "other"]}
    assert all(n.strip() for n in [*steps.values(), *errors.values(), *agencies.values()])


@pytest.mark.parametrize("label", ["step", "code"])
def test_a_step_or_error_code_is_named_per_service(label: str) -> None:
    """``identity`` is a step of many services with as many names: joined on the code
    alone, a panel would show one service's name for another's step."""
    named = _named(f"catalog_{label}_info")
    by_code: dict[str, set[str]] = {}
    for (_service, code), name in named.items():
        by_code.setdefault(code, set()).add(name)
    assert any(len(names) > 1 for code, names in by_code.items() if code != "other")
