"""Smoke test of ``servicepulse bench``: the cheap benchmarks run and write their results.

No timing is asserted (the machine is shared and small); what must hold is that the
command runs against the session broker, measures positive numbers for every figure it
could measure, compares them with a positive baseline of the same run, checks the
processor's totals, and leaves none of its topics behind.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import Figure, Goal
from bench.report import markdown_table
from kafkaport import connect
from tests.fixtures.kafka import Broker


def test_goal_and_ratio_arithmetic() -> None:
    f = Figure("x", "rate", 30.0, "events/s", "raw", 50.0, Goal("ratio", ">=", 0.6))
    assert f.ratio == pytest.approx(0.6)
    assert f.passed is True
    assert Figure("x", "p99", 2.5, "s", goal=Goal("value", "<=", 2.0)).passed is False
    assert Figure("x", "bytes", None, "bytes", goal=Goal("value", "<", 1024)).passed is None
    table = markdown_table([f])
    assert "| 1 | rate | 30.0 events/s | raw: 50.0 events/s | 0.60 |" in table
    assert "**pass**" in table


@pytest.mark.integration
@pytest.mark.slow
def test_bench_quick_runs_and_writes_positive_results(kafka_broker: Broker, tmp_path: Path) -> None:
    only = "processor,peer" if importlib.util.find_spec("quixstreams") else "processor"
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "servicepulse",
            "bench",
            "--quick",
            "--only",
            only,
            "--events",
            "3000",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# ServicePulse benchmarks")
    assert results["machine"]["cores"] >= 1
    assert results["machine"]["cpu_model"]
    assert results["machine"]["python_ns_per_round"] > 0
    assert "host speed:" in (out / "results.md").read_text()
    figures = {f["name"]: f for f in results["figures"]}
    expected = {"processor events/s, 1 instance", "processor events/s, 2 instances"}
    if "peer" in only:
        expected.add("processor events/s vs a Quix Streams peer (1 instance each)")
    assert expected <= set(figures), sorted(figures)
    for name in expected:
        f = figures[name]
        assert f["value"] is not None and f["value"] > 0, (name, f["note"])
        assert f["baseline"] is not None and f["baseline"] > 0, (name, f["note"])
        assert f["ratio"] == pytest.approx(f["value"] / f["baseline"])
    for n in (1, 2):
        assert figures[f"processor events/s, {n} instance{'s' * (n > 1)}"]["details"][
            "totals_match"
        ]
    # the broker deletes topics asynchronously: a deleted topic may be listed a moment longer
    client = connect(kafka_broker.settings()).admin()
    try:
        deadline = time.monotonic() + 180  # 14 topics a run, slow on a busy broker
        while True:
            leftovers = [t for t in client.list_topics(30) if results["run_id"] in t]
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    assert leftovers == [], proc.stderr[-3000:]


@pytest.mark.slow
def test_history_children_measure_the_generated_days(tmp_path: Path) -> None:
    from bench import history
    from contract.cardinality import budget
    from contract.catalog import load_catalog

    # 5 days, a 2-day horizon: 3 live days of r| keys, 2 closed days as ClosedDay records
    snap = tmp_path / "rm.snapshot"
    api = history._run_child("api", 5, 1200, 2, snap)
    assert (api["live_days"], api["closed_days"], api["keys_per_day"]) == (3, 2, 1200)
    # applied: the newest 2 live days' keys, the newest closed day's values and
    # tombstones, one ClosedDay record per (closed day, partition, agency of its cells);
    # the third live day is a copy of the older sampled one
    mem = api["memory"]
    assert mem["live_keys"] == 3 * 1200 and mem["pending_keys"] == 0
    assert api["records"] == 2 * 1200 + 2 * 1200 + mem["closed"]
    assert mem["days_encoded"] + mem["days_decoded"] == 5
    assert 0 < api["series"] <= sum(budget(load_catalog()).values())
    assert 0 < api["scrape_gzip_bytes"] < api["scrape_bytes"]
    assert api["report_year_cpu_s"] > 0 and api["rss_mib"] > 0 and api["closed_day_apply_cpu_s"] > 0
    restart = history._run_child("restart", 5, 1200, 2, snap)
    assert restart["restored"] and restart["tail_records"] == 1200
    assert restart["start_to_caught_up_s"] > restart["snapshot_load_s"] > 0
    proc = history._run_child("processor", 5, 1200, 2)
    # the live days' keys and each partition's changelog m record
    assert proc["records"] == 3 * 1200 + 12 and proc["restore_cpu_s"] > 0
    # 2 of the 3 live days are closed: staged, packed, never more than the stage's limit
    assert proc["cells"] == 3 * 1200 and proc["packed_groups"] > 0
    assert 0 < proc["stage_peak_bytes"] <= proc["stage_limit_bytes"]


def test_python_speed_is_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    # the reading is per round: ten times the rounds must not read as ten times slower
    from bench import harness

    monkeypatch.setattr(harness, "_SPEED_ROUNDS", 1_000)
    small = harness.python_speed(repeats=3)
    monkeypatch.setattr(harness, "_SPEED_ROUNDS", 10_000)
    large = harness.python_speed(repeats=3)
    assert small > 0 and large > 0
    # the same work per round: within a factor of 3 even on a busy machine
    assert 1 / 3 < large / small < 3
