"""docker-compose.yml, the Dockerfile and the compose configuration files are consistent.

Docker cannot run here, so this checks what can go wrong without it: the file parses,
every file it mounts or builds from exists, every command is a real `servicepulse`
subcommand with real options, versions agree with the local stack, ports and health
checks are as DESIGN.md section 8 says, and the Prometheus and Grafana files fit the
generated rules and dashboards.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dashboards import build, pipeline, push
from servicepulse import stack
from servicepulse.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
#: The subcommands compose runs (issue 6); each must exist in the CLI.
EXPECTED_COMMANDS = {"serve", "process", "simulate", "kafka topics"}
APP_SERVICES = ("topics", "processor-1", "processor-2", "api", "simulator")


def _subcommand(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``servicepulse a b --x 1`` into (["a", "b"], ["--x"])."""
    assert argv[0] == "servicepulse", argv
    words = argv[1:]
    path = []
    for w in words:
        if w.startswith("-"):
            break
        path.append(w)
    return path, [w for w in words if w.startswith("--")]


def test_every_part_is_there() -> None:
    assert set(SERVICES) == {"kafka", "prometheus", "alertmanager", "grafana", *APP_SERVICES}
    assert set(COMPOSE["volumes"]) == {"kafka-data", "api-data", "prometheus-data", "grafana-data"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_commands_are_real_subcommands_with_real_options(name: str) -> None:
    svc = SERVICES[name]
    assert svc["build"] == "." and (ROOT / "Dockerfile").is_file()
    path, options = _subcommand(svc["command"])
    assert " ".join(path) in EXPECTED_COMMANDS, f"{name}: unexpected command {path}"
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"`servicepulse {' '.join(path)}` missing: {result.output}"
    for opt in options:
        assert re.search(rf"{re.escape(opt)}\b", result.output), f"{name}: no option {opt}"


def test_all_expected_commands_are_used() -> None:
    used = {" ".join(_subcommand(SERVICES[n]["command"])[0]) for n in APP_SERVICES}
    assert used == EXPECTED_COMMANDS


def test_app_services_talk_to_kafka_by_service_name() -> None:
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        assert env["SERVICEPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092", name
    assert "--bootstrap" in SERVICES["topics"]["command"]
    assert SERVICES["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("processor-1", "processor-2", "api", "simulator"):
        assert SERVICES[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )
    ids = {SERVICES[f"processor-{i}"]["environment"]["SERVICEPULSE_INSTANCE_ID"] for i in (1, 2)}
    assert len(ids) == 2  # distinct stable transactional ids


def test_versions_agree_with_the_local_stack() -> None:
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{stack.KAFKA_VERSION}"
    tag = SERVICES["prometheus"]["image"].split(":v", 1)[1]
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no local prometheus to compare with")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    local = re.search(r"version (\d+\.\d+)", out)
    assert local and tag.startswith(local.group(1) + "."), (tag, out[:80])


def test_ports_are_the_designed_ones() -> None:
    assert SERVICES["kafka"]["ports"] == ["9092:9094"]
    assert SERVICES["api"]["ports"] == ["8000:8000"]
    assert SERVICES["prometheus"]["ports"] == ["9090:9090"]
    assert SERVICES["alertmanager"]["ports"] == ["9093:9093"]
    assert SERVICES["grafana"]["ports"] == ["3000:3000"]
    for i in (1, 2):
        svc = SERVICES[f"processor-{i}"]
        assert "9400" in svc["command"] and svc["expose"] == ["9400"] and "ports" not in svc


def test_health_checks_and_restart_policies() -> None:
    for name, svc in SERVICES.items():
        if name == "topics":
            assert svc["restart"] == "no"
            continue
        assert svc["restart"] == "unless-stopped", name
        if name != "simulator":
            assert svc["healthcheck"]["test"][0] == "CMD", name


def test_grafana_is_not_anonymous_and_takes_admin_from_env() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_SECURITY_ADMIN_USER"].startswith("${")


def _mounts() -> list[tuple[str, str, str]]:
    out = []
    for name, svc in SERVICES.items():
        for v in svc.get("volumes", []):
            host, container = v.split(":")[:2]
            out.append((name, host, container))
    return out


def test_every_mounted_file_exists() -> None:
    binds = [(n, h, c) for n, h, c in _mounts() if h.startswith("./")]
    assert len(binds) >= 4
    for name, host, _ in binds:
        assert (ROOT / host).exists(), f"{name}: {host} does not exist"
    for name, host, _ in _mounts():
        if not host.startswith("./"):
            assert host in COMPOSE["volumes"], f"{name}: undeclared volume {host}"


def test_dockerfile_copies_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install ." in text and "USER servicepulse" in text
    for pkg in ("contract", "producers", "processors", "api", "dashboards", "servicepulse"):
        assert f"COPY {pkg} ./{pkg}" in text
        assert (ROOT / pkg / "__init__.py").is_file()


def test_compose_prometheus_config_scrapes_the_services_with_the_rules(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in cfg["scrape_configs"]}
    assert jobs[pipeline.JOB_API] == ["api:8000"]
    assert jobs[pipeline.JOB_PROCESSOR] == ["processor-1:9400", "processor-2:9400"]
    mounts = {c: h for _, h, c in _mounts()}
    assert mounts["/etc/prometheus/rules"] == "./deploy/prometheus/rules"
    assert cfg["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH")
    # promtool checks the rule files too when they are where the config says.
    cfg["rule_files"] = [str(ROOT / "deploy/prometheus/rules/*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout


def test_grafana_provisioning_fits_the_dashboards() -> None:
    prov = ROOT / "deploy/grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources/servicepulse.yml").read_text())["datasources"][0]
    assert ds["uid"] == build.DATASOURCE_UID and ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((prov / "dashboards/servicepulse.yml").read_text())["providers"][0]
    mounts = {c: h for _, h, c in _mounts()}
    assert mounts[provider["options"]["path"]] == "./dashboards/generated"
    assert provider["folderUid"] == push.FOLDER_UID
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (ROOT / "dashboards/generated" / Path(home).name).is_file()
