"""The generated Grafana dashboards: up to date, and a lint of the JSON models."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from msgspec import structs

from contract.events import Outcome
from contract.methodology import load_methodology
from contract.metrics import FAMILIES
from dashboards import artifacts, build, pipeline, rules

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"
NUMERIC = {"stat", "timeseries", "bargauge", "gauge", "table"}
BUILTIN_VARS = {"__range", "__rate_interval", "__interval", "__url_time_range"}

MODELS = {
    p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(GENERATED.glob("*.json"))
}


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in model["panels"]:
        yield p
        yield from p.get("panels", [])


def known_metric_names() -> set[str]:
    names = {
        "up",
        "ALERTS",
        "scrape_duration_seconds",
        "prometheus_rule_group_last_duration_seconds",
    }
    for f in FAMILIES:
        names.add(f.full)
        if f.kind == "histogram":
            names |= {f.full + s for s in ("_bucket", "_count", "_sum")}
    for om in pipeline.PROCESSOR_METRICS + pipeline.API_METRICS:
        names.add(om.name)
        if om.kind == "histogram":
            names |= {om.name + s for s in ("_bucket", "_count", "_sum")}
    text = (ROOT / "deploy" / "prometheus" / "rules" / rules.RECORDING_FILE).read_text()
    names |= {r["record"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    return names


def test_committed_dashboards_are_generated() -> None:
    assert artifacts.stale(GENERATED, build.render(load_methodology()), exclusive=True) == []


def test_eight_dashboards_with_unique_uids() -> None:
    uids = [m["uid"] for m in MODELS.values()]
    assert sorted(uids) == sorted(build.UIDS.values())
    assert len(set(uids)) == len(uids) == 8
    assert all(stem == m["uid"] for stem, m in MODELS.items())


@pytest.mark.parametrize("uid", sorted(MODELS))
def test_dashboard_model_is_valid(uid: str) -> None:
    m = MODELS[uid]
    assert m["title"].startswith("ServicePulse — ")
    assert re.search("[а-яё]", m["description"], re.I)
    assert m["schemaVersion"] >= 36
    assert build.TAG in m["tags"]
    ids = [p["id"] for p in panels(m)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    for p in panels(m):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (p["title"], g)
    var_names = {v["name"] for v in m["templating"]["list"]}
    assert "datasource" in var_names
    for v in m["templating"]["list"]:
        if v["type"] == "query":
            if v["name"] in build.CODE_LABELS:
                assert v["query"].startswith("query_result(") and "(?<text>" in v["regex"]
            else:
                assert re.fullmatch(r"label_values\(servicepulse_\w+(\{.*\})?, \w+\)", v["query"])
            assert v["datasource"]["uid"] == "${datasource}" and v["label"]
    links = [lnk for lnk in m["links"] if lnk["type"] == "dashboards"]
    assert links and links[0]["tags"] == [build.TAG] and links[0]["includeVars"]


@pytest.mark.parametrize("uid", sorted(MODELS))
def test_every_panel_has_title_datasource_unit_and_queries(uid: str) -> None:
    m = MODELS[uid]
    var_names = {v["name"] for v in m["templating"]["list"]}
    names = known_metric_names()
    count = 0
    for p in panels(m):
        if p["type"] == "row":
            continue
        count += 1
        where = f"{uid} / {p.get('title')!r}"
        assert p.get("title") and re.search("[а-яё]", p["title"], re.I), where
        assert p.get("description"), where
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        if p["type"] in NUMERIC:
            assert p["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", where
            expr = t["expr"]
            used = set(re.findall(r"\$\{?(\w+)", expr))
            assert used <= var_names | BUILTIN_VARS, f"{where}: undefined {used - var_names}"
            for metric in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[)", expr):
                assert metric in names, f"{where}: unknown metric {metric}"
            assert expr.count("(") == expr.count(")"), where
    assert count >= 5


def test_drill_down_links_point_at_existing_dashboards() -> None:
    uids = set(build.UIDS.values())
    found = 0
    for m in MODELS.values():
        for p in panels(m):
            for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                target = re.match(r"/d/([\w-]+)\?", link["url"])
                assert target and target.group(1) in uids, link
                assert "${__url_time_range}" in link["url"]
                found += 1
    assert found >= 4  # overview -> agency (3), agency -> service, quality -> agency


def test_index_panels_show_the_methodology_levels() -> None:
    m = load_methodology()
    level_panel = next(p for p in panels(MODELS["sp-overview"]) if p["title"] == "Уровень")
    mapped = level_panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert [mapped[str(i)]["text"] for i in range(len(m.levels))] == [
        build.LEVEL_RU[n] for n in rules.level_names(m)
    ]
    steps = next(
        p for p in panels(MODELS["sp-overview"]) if p["title"].startswith("Индекс региона")
    )
    bounds = [s["value"] for s in steps["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert bounds == [None, *sorted(m.levels.values())[1:]]


def test_filters_use_only_labels_the_family_has() -> None:
    q = build.Filters(("agency", "service", "municipality", "channel"))
    assert q.sel("office_visits_total") == (
        'servicepulse_office_visits_total{agency=~"$agency", municipality=~"$municipality"}'
    )
    assert "municipality" not in q.sel("journeys_started_total")
    assert "municipality" not in q.sel("form_duration_seconds_bucket")


def _steps(models: dict[str, Any], uid: str, title: str) -> list[float | None]:
    panel = next(p for p in panels(models[uid]) if p["title"] == title)
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_compliance_colours_follow_the_alert_objectives() -> None:
    """A panel turns green where its objective's alert stops firing: change the target in
    the methodology and the colours move with it."""
    m = load_methodology()
    objectives = tuple(
        structs.replace(o, target=0.85) if o.component == "satisfaction" else o
        for o in m.alerts.objectives
    )
    valid = structs.replace(m.alerts.valid_events, target=0.98)
    changed = structs.replace(
        m, alerts=structs.replace(m.alerts, objectives=objectives, valid_events=valid)
    )
    models = build.models(changed)
    assert _steps(models, "sp-feedback", "Удовлетворённость") == [None, 0.75, 0.85]
    assert _steps(models, "sp-quality", "Доля отклонённых по ведомствам") == [None, 0.02, 0.1]
    wait = next(o.target for o in m.alerts.objectives if o.component == "wait")
    assert _steps(models, "sp-offices", "Приняты в пределах норматива") == [
        None,
        round(wait - 0.1, 4),
        wait,
    ]


def _carried(label: str, expr: str) -> bool:
    """Whether the result of ``expr`` carries ``label``: it is grouped by it, or the
    query reads a recording rule of that level (``agency:servicepulse_...``)."""
    grouped = re.search(rf"\b(?:by|on) \([^)]*\b{label}\b[^)]*\)", expr)
    return bool(grouped or re.search(rf"(?<![\w:]){label}:servicepulse_", expr))


def test_legends_and_tables_show_catalog_names_not_codes() -> None:
    """Inspectors read names, not ``minsoc`` or ``75738000``: a legend never prints a code
    label, and a legend showing a name or a table whose rows carry a code joins the
    catalog's name (``group_left (<label>_name)``)."""
    bad = []
    shown = 0
    for uid, m in MODELS.items():
        for p in panels(m):
            for t in p.get("targets", []):
                legend, expr = t.get("legendFormat", ""), t["expr"]
                where = f"{uid} / {p['title']} / {t['refId']}"
                for label in build.CODE_LABELS:
                    if "{{" + label + "}}" in legend:
                        bad.append(f"{where}: the legend shows the code {label}")
                    named = "{{" + label + "_name}}" in legend
                    table = t.get("format") == "table" and _carried(label, expr)
                    if not (named or table):
                        continue
                    shown += 1
                    if f"group_left ({label}_name)" not in expr:
                        bad.append(f"{where}: {label} without its name")
    assert bad == [], "\n".join(bad)
    assert shown >= 20  # the overview, agency, life, offices and quality boards


def test_tables_hide_codes_and_title_names_in_russian() -> None:
    for uid, m in MODELS.items():
        for p in panels(m):
            if p["type"] != "table":
                continue
            overrides = {
                o["matcher"]["options"]: {c["id"]: c["value"] for c in o["properties"]}
                for o in p["fieldConfig"]["overrides"]
            }
            for label in build.CODE_LABELS:
                assert overrides[label] == {"custom.hidden": True}, (uid, p["title"])
                assert re.search("[а-яё]", overrides[f"{label}_name"]["displayName"], re.I)


#: Labels a legend may print as they are: not codes with names but the pipeline's own
#: numbers and addresses (a partition, a scrape target and its job, an HTTP route and
#: status, a rule group) and the feedback score (1 to 5).
PLAIN_LABELS = {"partition", "instance", "job", "route", "status", "rule_group", "score"}


def _renamed_sets() -> dict[str, set[str]]:
    """The closed sets whose values a panel renames with display-name overrides."""
    return {
        "component": {c.code for c in load_methodology().components},
        "outcome": {o.value for o in Outcome},
        "result": set(pipeline.TRANSACTION_RESULTS_RU),
        "kind": set(pipeline.STATE_KINDS_RU),
    }


def _display_names(panel: dict[str, Any]) -> dict[str, str]:
    return {
        o["matcher"]["options"]: c["value"]
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byName"
        for c in o["properties"]
        if c["id"] == "displayName"
    }


def test_every_code_a_panel_shows_is_joined_to_its_name() -> None:
    """Every query of every generated panel: a legend prints a code label only as its
    name (``{{<label>_name}}``, joined onto the query), else plain labels or a closed set
    the panel renames value by value in Russian; a table, or a legend left to Grafana's
    default (every label), of a result that carries a code label joins that name."""
    renamed = _renamed_sets()
    bad = []
    checked = 0
    for uid, m in MODELS.items():
        for p in panels(m):
            display = _display_names(p) if p["type"] != "row" else {}
            for t in p.get("targets", []):
                legend, expr = t.get("legendFormat", ""), t["expr"]
                where = f"{uid} / {p['title']} / {t['refId']}"
                for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
                    checked += 1
                    code = label.removesuffix("_name")
                    if label in PLAIN_LABELS:
                        continue
                    if code in build.CODE_LABELS and label != code:
                        if f"group_left ({label})" not in expr:
                            bad.append(f"{where}: {label} is not joined")
                    elif label in renamed:
                        for value in renamed[label]:
                            shown = legend.replace("{{" + label + "}}", value)
                            if not re.search("[а-яё]", display.get(shown, ""), re.I):
                                bad.append(f"{where}: {shown!r} has no Russian name")
                    else:
                        bad.append(f"{where}: the legend prints the code {label}")
                if legend and t.get("format") != "table":
                    continue
                for code in build.CODE_LABELS:
                    if _carried(code, expr):
                        checked += 1
                        if f"group_left ({code}_name)" not in expr:
                            bad.append(f"{where}: shows {code} without its name")
    assert bad == [], "\n".join(bad)
    assert checked >= 40
