"""The local stack's Prometheus: its configuration and the process `servicepulse up` runs."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.methodology import load_methodology
from dashboards import artifacts, pipeline, rules
from servicepulse import promconfig, stack
from tests.fixtures.api import api_settings, running_api
from tests.fixtures.kafka import TopicFactory

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


@pytest.mark.integration
def test_the_stack_prometheus_scrapes_a_protected_api(
    topic_factory: TopicFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SERVICEPULSE_METRICS_TOKEN and SERVICEPULSE_API_METRICS_PORT set, the local
    stack's Prometheus scrapes the API where and as those settings say."""
    _topics, common = topic_factory(3)
    token, metrics_port = f"metrics-{uuid.uuid4().hex}", stack.free_port()
    monkeypatch.setenv("SERVICEPULSE_METRICS_TOKEN", token)
    monkeypatch.setenv("SERVICEPULSE_API_METRICS_PORT", str(metrics_port))
    settings = api_settings(common, tmp_path, metrics_token=token, api_metrics_port=metrics_port)
    port = stack.free_port()
    with running_api(settings) as api:
        p = promconfig.prometheus_process(
            tmp_path / "prom", port, api_port=int(api.url.rsplit(":", 1)[1]), processor_ports=[]
        )
        p.start()
        try:
            secret = tmp_path / "prom" / f"{pipeline.JOB_API}.token"
            assert secret.read_text() == token and secret.stat().st_mode & 0o777 == 0o600
            assert token not in (tmp_path / "prom" / promconfig.CONFIG_NAME).read_text()
            target: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while target.get("health") != "up":
                assert time.monotonic() < deadline, target
                time.sleep(0.5)
                data = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10).json()
                target = next(
                    (
                        t
                        for t in data["data"]["activeTargets"]
                        if t["labels"]["job"] == pipeline.JOB_API
                    ),
                    {},
                )
            assert target["labels"]["instance"] == f"127.0.0.1:{metrics_port}"
        finally:
            assert p.stop()
