"""The operational metric names the rules and dashboards use match the components' own."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from api.exposition import build_metrics as api_metrics
from dashboards import pipeline
from processors.metrics import build_metrics as processor_metrics


def _defined(build: Callable[[CollectorRegistry], Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Exposed name -> (type, label names) of every metric a component's builder makes."""
    holder = build(CollectorRegistry())
    out = {}
    for f in dataclasses.fields(holder):
        metric = getattr(holder, f.name)
        kind = metric._type  # prometheus_client keeps the type and label names here
        name = metric._name + ("_total" if kind == "counter" else "")
        out[name] = (kind, tuple(metric._labelnames))
    return out


@pytest.mark.parametrize(
    ("table", "build"),
    [(pipeline.PROCESSOR_METRICS, processor_metrics), (pipeline.API_METRICS, api_metrics)],
    ids=["processor", "api"],
)
def test_ops_metrics_exist_with_their_labels(
    table: tuple[pipeline.OpsMetric, ...], build: Callable[[CollectorRegistry], Any]
) -> None:
    defined = _defined(build)
    for om in table:
        assert om.name in defined, f"{om.name} is not defined by the component"
        assert defined[om.name] == (om.kind, om.labels), om.name


def test_the_pipeline_board_names_every_value_the_processor_writes() -> None:
    """The Russian names of transaction results and state kinds are of exactly the
    values the processor writes (its source: the label values are literals there)."""
    from processors import checkpoint, engine, runner

    sources = inspect.getsource(checkpoint) + inspect.getsource(runner)
    results = set(re.findall(r"transactions\.labels\(\"(\w+)\"\)", sources))
    assert results == set(pipeline.TRANSACTION_RESULTS_RU)
    kinds = set(
        re.findall(r"\"(\w+)\": len\(", inspect.getsource(engine.PartitionEngine.state_sizes))
    )
    assert kinds == set(pipeline.STATE_KINDS_RU)
