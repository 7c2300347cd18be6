"""The generated Prometheus rules: up to date, valid, and unit-tested rule by rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest
import yaml

from contract.methodology import Methodology, load_methodology
from dashboards import artifacts, rules, ruletests

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
TESTS = ROOT / "deploy" / "prometheus" / "tests"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH")


def _promtool() -> str:
    """The promtool binary: the tests that run it are skipped without one."""
    assert PROMTOOL is not None
    return PROMTOOL


@pytest.fixture(scope="module")
def methodology() -> Methodology:
    return load_methodology()


def test_committed_rules_are_generated_from_the_methodology(methodology: Methodology) -> None:
    assert artifacts.stale(RULES, rules.render(methodology), exclusive=True) == []
    assert artifacts.stale(TESTS, ruletests.render(methodology), exclusive=True) == []


def test_stale_reports_a_hand_edit(tmp_path: Path, methodology: Methodology) -> None:
    files = rules.render(methodology)
    artifacts.write(tmp_path, files)
    assert artifacts.stale(tmp_path, files) == []
    path = tmp_path / rules.ALERTS_FILE
    path.write_text(path.read_text().replace("for: 2m", "for: 1m", 1))
    (tmp_path / "extra.yml").write_text("groups: []\n")
    problems = artifacts.stale(tmp_path, files, exclusive=True)
    assert len(problems) == 2
    assert "-    for: 1m" in problems[0]
    assert "extra.yml" in problems[1]


@needs_promtool
def test_promtool_check_rules() -> None:
    files = sorted(str(p) for p in RULES.glob("*.yml"))
    proc = subprocess.run([_promtool(), "check", "rules", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(files)


@needs_promtool
@pytest.mark.slow
def test_promtool_unit_tests_pass() -> None:
    files = sorted(p.name for p in TESTS.glob("*.yml"))
    assert files == sorted(ruletests.TEST_FILES)
    proc = subprocess.run(
        [_promtool(), "test", "rules", *files], cwd=TESTS, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout + proc.stderr


def test_every_rule_has_a_unit_test(methodology: Methodology) -> None:
    recorded: set[str] = set()
    alerting: set[str] = set()
    for name in (rules.RECORDING_FILE, rules.ALERTS_FILE):
        for group in yaml.safe_load((RULES / name).read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded.add(rule["record"])
                else:
                    alerting.add(f"{rule['alert']}/{rule['labels']['severity']}")
    covered = set(ruletests.covered(ruletests.render(methodology)))
    assert recorded - covered == set()
    assert alerting - covered == set()
    assert len(recorded) > 50 and len(alerting) >= 10


@needs_promtool
@pytest.mark.slow
def test_other_weights_give_an_index_that_agrees_with_the_report_code(
    tmp_path: Path, methodology: Methodology
) -> None:
    """Rules generated from a different methodology still match contract.methodology.score."""
    raw = yaml.safe_load((ROOT / "contract" / "data" / "methodology.yaml").read_text())
    for comp in raw["components"]:
        comp["weight"] = {"completion": 0.5, "wait": 0.0, "satisfaction": 0.3}.get(
            comp["code"], 0.05
        )
    raw["levels"] = {"advanced": 75, "satisfactory": 50, "basic": 0}
    path = tmp_path / "methodology.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    other = load_methodology(str(path))
    artifacts.write(tmp_path / "rules", rules.render(other))
    artifacts.write(tmp_path / "tests", {"long.yml": ruletests.render(other)["recording-long.yml"]})
    recording = (tmp_path / "rules" / rules.RECORDING_FILE).read_text()
    assert "* 0.5" in recording and "bool 75" in recording
    proc = subprocess.run(
        [_promtool(), "test", "rules", "long.yml"],
        cwd=tmp_path / "tests",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_thresholds_come_from_the_methodology(methodology: Methodology) -> None:
    alerts = methodology.alerts
    sat = next(o for o in alerts.objectives if o.component == "satisfaction")
    other = msgspec.structs.replace(
        methodology,
        alerts=msgspec.structs.replace(
            alerts,
            objectives=(msgspec.structs.replace(sat, target=0.7, alert="X"),),
            processor_lag=msgspec.structs.replace(alerts.processor_lag, records=123, for_="7m"),
        ),
    )
    alerting = [r for g in rules.alert_groups(other) for r in g["rules"]]
    assert not [r for r in alerting if r["alert"] == sat.alert]
    x = {r["labels"]["window"]: r for r in alerting if r["alert"] == "X"}
    assert sorted(x) == sorted(b.long for b in sat.burn)
    for b in sat.burn:
        assert f"> {b.factor * (1 - 0.7):g}\n" in x[b.long]["expr"]
        assert x[b.long]["for"] == b.for_
    (lag,) = [r for r in alerting if r["alert"] == "ServicePulseProcessorLag"]
    assert lag["expr"].endswith("> 123") and lag["for"] == "7m"


def test_the_burn_windows_of_the_alerts_are_recorded(methodology: Methodology) -> None:
    alerts = methodology.alerts
    sat, *rest = alerts.objectives
    burn = msgspec.structs.replace(sat.burn[0], long="3h", short="10m")
    valid = msgspec.structs.replace(alerts.valid_events.burn[0], long="4h")
    other = msgspec.structs.replace(
        methodology,
        alerts=msgspec.structs.replace(
            alerts,
            objectives=(msgspec.structs.replace(sat, burn=(burn,)), *rest),
            valid_events=msgspec.structs.replace(alerts.valid_events, burn=(valid,)),
        ),
    )
    recorded = {r["record"] for g in rules.recording_groups(other) for r in g["rules"]}
    for w in ("3h", "10m"):
        assert rules.ratio(rules.AGENCY, w) in recorded
    assert rules.increase(rules.AGENCY, "denominator", "3h") in recorded
    assert rules.rejection_ratio("4h") in recorded
    assert rules.rejection_ratio("1h") not in recorded
    alerting = " ".join(r["expr"] for g in rules.alert_groups(other) for r in g["rules"])
    for name in re.findall(r"[a-z_]+:[a-z_]+:[a-z_0-9]+", alerting):
        assert name in recorded


def test_index_rule_renormalises_over_components_with_data(methodology: Methodology) -> None:
    groups = {g["name"]: g for g in rules.recording_groups(methodology)}
    index = next(
        r
        for r in groups["servicepulse_window_1d"]["rules"]
        if r["record"] == rules.index(rules.REGION, "1d")
    )
    expr = index["expr"]
    for c in methodology.components:
        assert f'{{component="{c.code}"}} * {c.weight:g}' in expr
        assert f'{{component="{c.code}"}} >= bool 0) * {c.weight:g}' in expr


def test_long_windows_are_slow_groups_only_when_asked(methodology: Methodology) -> None:
    slow = {g["name"]: g.get("interval") for g in rules.recording_groups(methodology)}
    assert slow["servicepulse_window_30d"] == "5m"
    assert slow["servicepulse_window_1d"] is None
    fast = {
        g["name"]: g.get("interval")
        for g in rules.recording_groups(methodology, slow_interval=None)
    }
    assert fast["servicepulse_window_30d"] is None


@pytest.mark.parametrize(("text", "secs"), [("5m", 300), ("6h", 21600), ("30d", 2592000)])
def test_seconds(text: str, secs: int) -> None:
    assert rules.seconds(text) == secs


def test_seconds_refuses_compound_durations() -> None:
    with pytest.raises(ValueError, match="unsupported duration"):
        rules.seconds("1h30m")
