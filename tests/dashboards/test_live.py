"""Every dashboard query returns data from a real Prometheus holding simulated data.

The Prometheus is the session's real one (``prometheus_server``) with the generated
rules; it scrapes TEST DATA exporters (``tests/fixtures/exposition.py``) that expose every
family of ``contract.metrics`` and the processor's and API's operational metrics, so
every panel can be checked quickly and deterministically. A third target that does not
listen stands for a component that is down, so the alerts panel has an alert to show.
``tests/pipeline/test_dashboards_pipeline.py`` runs the same queries against the real pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from contract.methodology import load_methodology
from dashboards import build, pipeline
from dashboards import rules as R
from servicepulse.stack import free_port
from tests.fixtures.exposition import api_exporter, processor_exporter
from tests.fixtures.panels import (
    MODELS,
    missing_data,
    panels,
    query_variables,
    substitute,
    variable_options,
)
from tests.fixtures.prometheus import PromServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stocked(prometheus_server: PromServer) -> Iterator[PromServer]:
    """The session Prometheus scraping the test exporters, with every rule evaluated."""
    api = api_exporter(free_port())
    proc = processor_exporter(free_port())
    down = f"127.0.0.1:{free_port()}"
    try:
        prometheus_server.scrape(
            {pipeline.JOB_API: [api.target], pipeline.JOB_PROCESSOR: [proc.target, down]}
        )
        m = load_methodology()
        # The last rules of the slowest group, and a pending alert for the target that is down.
        for w in m.windows:
            prometheus_server.wait_for(R.level(R.REGION, w), timeout=60)
        prometheus_server.wait_for('ALERTS{alertname="ServicePulseComponentDown"}', timeout=30)
        yield prometheus_server
    finally:
        api.close()
        proc.close()


CASES = [
    pytest.param(uid, i, id=f"{uid}-{i}-{p['title']}")
    for uid, model in MODELS.items()
    for i, p in enumerate(panels(model))
]


@pytest.mark.parametrize(("uid", "index"), CASES)
def test_panel_returns_data(stocked: PromServer, uid: str, index: int) -> None:
    assert missing_data(stocked, uid, index) == []


def test_index_values_are_in_range(stocked: PromServer) -> None:
    m = load_methodology()
    for w in m.windows:
        for s in stocked.query(R.index(R.AGENCY, w)) + stocked.query(R.index(R.REGION, w)):
            assert 0 <= float(s["value"][1]) <= 100, s
        levels = {float(s["value"][1]) for s in stocked.query(R.level(R.AGENCY, w))}
        assert levels <= {0.0, 1.0, 2.0}
        counted = stocked.query(R.counted(R.REGION, w))
        assert float(counted[0]["value"][1]) == len(m.components)


def test_every_series_a_legend_or_table_shows_carries_its_names(stocked: PromServer) -> None:
    """What the panels get back from Prometheus: a series with a code label has the
    catalog's name of it too (the join matched), wherever a legend or a table shows it."""
    checked = 0
    bad = []
    for uid, model in MODELS.items():
        every = {v["name"]: ".*" for v in query_variables(model)}
        for p in panels(model):
            for t in p["targets"]:
                legend, table = t.get("legendFormat", ""), t.get("format") == "table"
                shown = [
                    label
                    for label in build.CODE_LABELS
                    if table or "{{" + label + "_name}}" in legend
                ]
                if not shown:
                    continue
                for series in stocked.query(substitute(t["expr"], every)):
                    labels = series["metric"]
                    for label in shown:
                        if labels.get(label):
                            checked += 1
                            if not labels.get(f"{label}_name"):
                                bad.append(f"{uid} / {p['title']}: {labels}")
    assert bad == []
    assert checked >= 50


def test_catalog_variables_show_names_and_filter_by_codes(stocked: PromServer) -> None:
    """A dropdown over a catalog code offers the catalog's names as text and the codes
    as values: the same codes the dashboard's family carries (what ``label_values``
    offered), each with its own name; a chained variable narrows with the agency."""
    checked = 0
    for uid, model in MODELS.items():
        for var in query_variables(model):
            name = var["name"]
            if name not in build.CODE_LABELS:
                continue
            names = {
                s["metric"][name]: s["metric"][f"{name}_name"]
                for s in stocked.query(f"servicepulse_catalog_{name}_info")
                if s["metric"].get(name)
            }
            source = re.search(r"last_over_time\((servicepulse_\w+)", var["query"])
            assert source, var["query"]
            agencies = (
                [""]
                if name == "agency"
                else sorted(stocked.label_values("agency", source.group(1)))[:2]
            )
            for agency in agencies:
                chosen = {"agency": agency or ".*"}
                options = variable_options(stocked, var, chosen)
                match = source.group(1) + (f'{{agency="{agency}"}}' if agency else "")
                codes = set(stocked.label_values(name, match)) - {""}
                where = f"{uid} / {name} (agency {agency or 'All'})"
                assert options, where
                assert {v for _, v in options} == codes, where
                for text, value in options:
                    assert text == names[value] and text != value, (where, text, value)
                    checked += 1
    assert checked >= 20
