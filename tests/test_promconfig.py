"""The local stack's Prometheus: its configuration and the process `servicepulse up` runs."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from contract.methodology import load_methodology
from dashboards import artifacts, pipeline, rules
from servicepulse import promconfig, stack

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not on PATH")


def test_rendered_config_passes_promtool(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    artifacts.write(rules_dir, rules.render(load_methodology()))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        promconfig.render_config(
            {"servicepulse-api": ["127.0.0.1:8000"], "servicepulse-processor": []},
            [str(rules_dir / "*.yml")],
        )
    )
    proc = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout
    assert "servicepulse-processor" not in config.read_text()  # a job without targets is left out


@pytest.mark.integration
def test_prometheus_process_scrapes_the_stack_with_the_rules(tmp_path: Path) -> None:
    port, api, proc = stack.free_port(), stack.free_port(), stack.free_port()
    p = promconfig.prometheus_process(tmp_path, port, api_port=api, processor_ports=[proc])
    p.start()
    try:
        base = f"http://127.0.0.1:{port}"
        groups = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
        names = {g["name"] for g in groups}
        expected = {g["name"] for g in rules.recording_groups(load_methodology())}
        assert expected <= names and "servicepulse_pipeline_alerts" in names
        slow = next(g for g in groups if g["name"] == "servicepulse_window_30d")
        assert slow["interval"] == 300
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            data = httpx.get(f"{base}/api/v1/targets", timeout=10).json()["data"]
            seen = {(t["labels"]["job"], t["labels"]["instance"]) for t in data["activeTargets"]}
        assert seen == {
            (pipeline.JOB_API, f"127.0.0.1:{api}"),
            (pipeline.JOB_PROCESSOR, f"127.0.0.1:{proc}"),
            (pipeline.JOB_PROMETHEUS, f"127.0.0.1:{port}"),
        }
        assert (tmp_path / promconfig.DATA_SUBDIR).is_dir()
    finally:
        assert p.stop()
    assert not p.running()
