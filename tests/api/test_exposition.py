"""The names in /metrics: every code a business series carries has its info series.

A read model is fed aggregate and dead-letter records (the real decode path) in every
kind of cell the catalog allows, with codes it does not know too (an error code or a
late reason that is not listed, an office of no agency, a rejection reason from a newer
producer), so every pseudo-value appears. Then each label value of each business series
of its /metrics text must have the Russian name a dashboard joins onto it: a series
without one would drop out of the panel.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from api.readmodel import ReadModel
from contract import aggregates as agg
from contract.aggregates import Rollup, RollupKey
from contract.catalog import load_catalog
from contract.events import Channel, Reason
from contract.metrics import LATE_REASONS, NAMED_LABELS, info_keys
from contract.settings import CommonSettings
from contract.topics import Topics

CATALOG = load_catalog()
DAY = "2026-11-02"


def _fed() -> ReadModel:
    m = ReadModel(CommonSettings(), Topics("unit"), CATALOG)
    office = next(iter(CATALOG.offices.values()))
    situation = next(iter(CATALOG.life_situations))
    visits = {f"{code}:true": 1 for code in [*CATALOG.offices, "no-such-office"]}
    records = []
    for code, idx in CATALOG.services.items():
        r = Rollup(
            started=1,
            submitted=1,
            steps=dict.fromkeys(idx.step_codes, 1),
            errors=dict.fromkeys([*idx.error_codes, "not_in_catalog"], 1),
            decisions={"approved:on_time": 1},
            feedback={"5": 1},
            late=dict.fromkeys([*LATE_REASONS, "made_up"], 1),
            cases_started=1,
        )
        for channel in Channel:
            dims = agg.Dims(idx.service.agency, code, office.municipality, channel, situation)
            records.append((dims, r))
    for agency in CATALOG.agencies:
        r = Rollup(errors={"no_service": 1}, feedback={"4": 1}, visits={"true": 1})
        records.append((agg.Dims(agency, "", "75701000", "portal", ""), r))
        records.append((agg.Dims(agency, "", office.municipality, "mfc", ""), r))
    records.append(
        (agg.Dims("mfc", "", office.municipality, "mfc", ""), Rollup(office_visits=visits))
    )
    with m.lock:
        for dims, r in records:
            m.apply_aggregate(RollupKey(0, DAY, dims).encode(), agg.encode(r))
        for agency in [*CATALOG.agencies, "not_an_agency"]:
            for reason in [*(r.value for r in Reason), "made_up"]:
                dead = {
                    "reason": reason,
                    "agency": agency,
                    "source": "processor",
                    "received_at": f"{DAY}T10:00:00+05:00",
                    "received_day": DAY,
                }
                m.apply_dead_letter(msgspec.json.encode(dead), 0)
    return m


def test_every_code_of_every_business_series_has_its_name() -> None:
    m = _fed()
    with m.lock:
        text = m.exposition.payload().decode()
    named: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    series = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            label = fam.name.removeprefix("servicepulse_catalog_").removesuffix("_info")
            if label in NAMED_LABELS and fam.name.startswith("servicepulse_catalog_"):
                assert s.value == 1 and s.labels[f"{label}_name"].strip(), s
                named[label].add(tuple(s.labels[k] for k in info_keys(label)))
            else:
                series.append(s)
    missing = set()
    checked: dict[str, int] = defaultdict(int)
    for s in series:
        for label in NAMED_LABELS:
            keys = info_keys(label)
            if all(k in s.labels for k in keys):
                checked[label] += 1
                key = tuple(s.labels[k] for k in keys)
                if key not in named[label]:
                    missing.add((label, key))
    assert missing == set()
    # every named label was on some series, with its pseudo-values among them
    assert set(checked) == set(NAMED_LABELS)
    values = {label: {key[-1] for key in keys} for label, keys in named.items()}
    assert {"other"} <= values["code"] and {"other"} <= values["reason"]
    assert "unknown" in values["agency"] and "other" in values["office"]


def test_metrics_name_every_step_error_code_channel_and_reason_of_the_catalog() -> None:
    m = ReadModel(CommonSettings(), Topics("unit"), CATALOG)
    with m.lock:
        text = m.exposition.payload().decode()
    got = {
        (s.name, tuple(sorted(s.labels.items())))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if fam.name.startswith("servicepulse_catalog_")
    }

    def has(family: str, **labels: str) -> bool:
        return (f"servicepulse_catalog_{family}_info", tuple(sorted(labels.items()))) in got

    for code, idx in CATALOG.services.items():
        for st in idx.service.steps:
            assert has("step", service=code, step=st.code, step_name=st.name)
        for e in idx.service.errors:
            assert has("code", service=code, code=e.code, code_name=e.name)
    assert has("channel", channel="mfc", channel_name="МФЦ")
    assert has("reason", reason="unknown_step", reason_name="неизвестный шаг")
    assert has("reason", reason="after_decided", reason_name="после решения по заявлению")
