"""The series budget (contract/cardinality.py) bounds what the API's exposition shows.

A read model is fed a rollup in every label combination the catalog allows (every
service on every channel in every municipality and life situation, agency-level cells,
every closed-set map key, unknown codes and reasons), so each family reaches the most
series it can; each must be within its budget, and the budget within the demo goal.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

from api.exposition import LiveExposition
from contract.aggregates import Dims, GaugeDims, Gauges, Hist, Rollup
from contract.cardinality import GOAL, budget
from contract.catalog import load_catalog
from contract.events import Channel, Reason
from contract.metrics import BUCKETS, FAMILIES, LATE_REASONS

CATALOG = load_catalog()


def _full(steps: list[str], errors: list[str]) -> Rollup:
    hists = {f: Hist([1] * (len(b) + 1), 1000) for f, b in BUCKETS.items()}
    full = Rollup(
        events=1,
        started=1,
        started_digital=1,
        submitted=1,
        abandoned=1,
        resolved=1,
        resolved_with_errors=1,
        skipped_steps=1,
        appeals_received=1,
        interagency_requested=1,
        cases_started=1,
        cases_completed=1,
        duplicates=1,
        steps=dict.fromkeys(steps, 1),
        errors=dict.fromkeys([*errors, "not_in_catalog"], 1),
        decisions={
            f"{o}:{t}": 1 for o in ("approved", "rejected") for t in ("on_time", "late", "unknown")
        },
        feedback=dict.fromkeys("12345", 1),
        visits={"true": 1, "false": 1},
        appeals_answered={"on_time": 1, "late": 1, "unknown": 1},
        interagency_responded={"within": 1, "over": 1, "unknown": 1},
        late=dict.fromkeys([*LATE_REASONS, "made_up"], 1),
    )
    return msgspec.structs.replace(full, **hists)  # every histogram field by its name


@pytest.mark.slow
def test_every_family_stays_within_its_budget_when_every_cell_is_filled() -> None:
    live = LiveExposition(CATALOG)
    municipalities = sorted(CATALOG.municipalities)
    situations = ["", *sorted(CATALOG.life_situations)]
    channels = [c.value for c in Channel]
    for code, svc in CATALOG.services.items():
        agency = svc.service.agency
        full = _full(sorted(svc.step_codes), sorted(svc.error_codes))
        for m, c, ls in itertools.product(municipalities, channels, situations):
            live.add_rollup(Dims(agency, code, m, c, ls), full)
            live.gauges_changed(GaugeDims(agency, code, m, c), None, Gauges(1, 1, 1, 1, 1, 1))
    for agency in CATALOG.agencies:
        full = _full([], [])
        for m, c, ls in itertools.product(municipalities, channels, situations):
            live.add_rollup(Dims(agency, "", m, c, ls), full)
            live.gauges_changed(GaugeDims(agency, "", m, c), None, Gauges(1, 1, 1, 1, 1, 1))
    for agency in [*CATALOG.agencies, "not_an_agency"]:
        for reason in [*(r.value for r in Reason), "made_up"]:
            live.add_dead_letter(agency, reason)
    limits = budget(CATALOG)
    got = live.series()
    assert set(got) == {f.name for f in FAMILIES}
    over = {name: (n, limits[name]) for name, n in got.items() if n > limits[name]}
    assert not over, f"families over their budget (series, budget): {over}"
    # the bound is tight where the catalog fills it: it is not a loose guess
    assert got["journeys_started_total"] == limits["journeys_started_total"]
    assert got["form_duration_seconds"] == limits["form_duration_seconds"]
    assert got["office_wait_seconds"] == limits["office_wait_seconds"]
    assert sum(limits.values()) <= GOAL
    assert live.unknown_cells == 0


def test_series_command_prints_the_budget_per_family_and_total() -> None:
    from typer.testing import CliRunner

    from servicepulse.cli import app

    result = CliRunner().invoke(app, ["dashboards", "series"])
    assert result.exit_code == 0, result.output
    rows = dict(line.split() for line in result.output.splitlines()[1:] if line.strip())
    limits = budget(CATALOG)
    assert {k: int(v) for k, v in rows.items() if k != "total"} == limits
    assert int(rows["total"]) == sum(limits.values())
