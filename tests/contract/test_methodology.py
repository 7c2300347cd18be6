"""The methodology file: the shipped one loads, and bad alert sections are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.errors import ConfigError
from contract.methodology import default_methodology_path, load_methodology


def _write(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> str:
    raw = yaml.safe_load(default_methodology_path().read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "methodology.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_shipped_alert_objectives() -> None:
    alerts = load_methodology().alerts
    targets = {o.component: o.target for o in alerts.objectives}
    assert targets == {"satisfaction": 0.80, "wait": 0.90}
    assert alerts.valid_events.target == 0.99
    assert all(b.for_ for o in alerts.objectives for b in o.burn)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("alerts.processor_lag.threshold", 5), "unknown field `threshold`"),
        (_set("alerts.objectives.0.target", 1.2), "at `$.alerts.objectives[0].target`"),
        (
            _set("alerts.objectives.0.burn.0.for", "2 min"),
            "at `$.alerts.objectives[0].burn[0].for`",
        ),
        (_set("alerts.objectives.0.burn.0.factor", 6.0), "can never be exceeded"),
        (_set("alerts.valid_events.burn.0.factor", 100), "valid_events: burn factor 100"),
        (_set("alerts.objectives.0.component", "appeals_typo"), "objectives[0].component"),
        (lambda raw: raw.pop("alerts"), "missing required field `alerts`"),
    ],
)
def test_a_bad_alert_section_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(ConfigError, match="invalid methodology") as err:
        load_methodology(_write(tmp_path, edit))
    assert message in str(err.value)


def test_an_objective_on_a_component_outside_the_index_is_refused(tmp_path: Path) -> None:
    def drop_satisfaction(raw: dict[str, Any]) -> None:
        raw["components"] = [c for c in raw["components"] if c["code"] != "satisfaction"]

    with pytest.raises(ConfigError, match="'satisfaction', which is not in components"):
        load_methodology(_write(tmp_path, drop_satisfaction))
