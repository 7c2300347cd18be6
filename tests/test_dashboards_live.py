"""Every dashboard query returns data from a real Prometheus holding simulated data.

The Prometheus is the session's real one (``prometheus_server``) with the generated
rules; it scrapes TEST DATA exporters (``tests/fixtures/exposition.py``) that expose every
family of ``contract.metrics`` and the processor's operational metrics. A third target
that does not listen stands for a component that is down, so the alerts panel has an
alert to show. Each query is run twice: with every variable set to All (``.*``), and
with each variable set to the first value its own ``label_values`` query offers, as
Grafana would pick it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from contract.methodology import load_methodology
from dashboards import build, pipeline
from dashboards import rules as R
from servicepulse.stack import free_port
from tests.fixtures.exposition import api_exporter, processor_exporter
from tests.fixtures.prometheus import PromServer

pytestmark = pytest.mark.integration

#: Grafana's built-in variables, as a short test range would set them.
BUILTINS = {"__range": "1h", "__rate_interval": "30s", "__interval": "15s"}


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


def _panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in model["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


def _substitute(expr: str, values: dict[str, str]) -> str:
    def sub(mo: re.Match[str]) -> str:
        name = mo.group(1) or mo.group(2)
        return BUILTINS.get(name) or values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def _variables(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in model["templating"]["list"] if v["type"] == "query"]


def _first_values(server: PromServer, model: dict[str, Any]) -> dict[str, str]:
    """Resolve the variables in order, each from its label_values query, first value."""
    chosen: dict[str, str] = {}
    for var in _variables(model):
        mo = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
        assert mo, f"{model['uid']}: variable {var['name']}: not a label_values query"
        match = _substitute(mo.group(1), chosen)
        values = server.label_values(mo.group(2), match)
        assert values, f"{model['uid']}: variable {var['name']} offers no values ({match})"
        chosen[var["name"]] = values[0]
    return chosen


MODELS = build.models(load_methodology())
CASES = [
    pytest.param(uid, i, id=f"{uid}-{i}-{p['title']}")
    for uid, model in MODELS.items()
    for i, p in enumerate(_panels(model))
]


@pytest.mark.parametrize(("uid", "index"), CASES)
def test_panel_returns_data(stocked: PromServer, uid: str, index: int) -> None:
    model = MODELS[uid]
    panel = list(_panels(model))[index]
    all_values = {v["name"]: ".*" for v in _variables(model)}
    first = _first_values(stocked, model)
    for target in panel["targets"]:
        for values in (all_values, first):
            expr = _substitute(target["expr"], values)
            result = stocked.query(expr)
            assert result, f"{uid} / {panel['title']} / {target['refId']}: no data for\n{expr}"


def test_index_values_are_in_range(stocked: PromServer) -> None:
    m = load_methodology()
    for w in m.windows:
        for s in stocked.query(R.index(R.AGENCY, w)) + stocked.query(R.index(R.REGION, w)):
            assert 0 <= float(s["value"][1]) <= 100, s
        levels = {float(s["value"][1]) for s in stocked.query(R.level(R.AGENCY, w))}
        assert levels <= {0.0, 1.0, 2.0}
        counted = stocked.query(R.counted(R.REGION, w))
        assert float(counted[0]["value"][1]) == len(m.components)
