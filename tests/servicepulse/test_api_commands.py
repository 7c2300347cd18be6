"""The commands: `servicepulse tokens`, `servicepulse serve` as the stack launches it,
and `servicepulse report` straight from Kafka."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from contract.settings import CommonSettings
from servicepulse.stack import free_port
from tests.fixtures.api import demo_records, event, write_transactionally
from tests.fixtures.kafka import TopicFactory


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servicepulse", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    env = {"SERVICEPULSE_TOKEN_DB": str(tmp_path / "t.db")}
    made = cli("tokens", "create", "--agency", "minsoc", "--name", "ИС Минсоца", "--init", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("sp_") and len(token) > 40
    token_id = token.split("_")[1]
    assert cli("tokens", "create", "--agency", "nosuch", env=env).returncode == 2
    assert cli("tokens", "create", "--agency", "minsoc", "--inspector", env=env).returncode == 2
    listed = cli("tokens", "list", env=env)
    assert token_id in listed.stdout and "minsoc" in listed.stdout
    assert token not in listed.stdout + listed.stderr  # the secret is shown once only
    revoked = cli("tokens", "revoke", token_id, env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert cli("tokens", "revoke", "000000000000", env=env).returncode == 1


@pytest.mark.slow
def test_tokens_create_refuses_to_start_an_empty_database(tmp_path: Path) -> None:
    """Issue 12, item 8: `tokens create` away from the stack's directory used to create
    a new, empty database silently (and the token in it never worked)."""
    env = {"SERVICEPULSE_STACK_DIR": str(tmp_path / "elsewhere")}
    env_missing = env  # and no SERVICEPULSE_TOKEN_DB
    expected = tmp_path / "elsewhere" / "api-data" / "tokens.db"
    r = cli("tokens", "create", "--agency", "minsoc", env=env_missing)
    assert r.returncode == 1 and not r.stdout
    message = " ".join(r.stderr.split())
    assert str(expected) in message and "--init" in message and "SERVICEPULSE_TOKEN_DB" in message
    assert not expected.exists() and not expected.parent.exists()
    for args in (("list",), ("revoke", "000000000000")):
        assert cli("tokens", *args, env=env_missing).returncode == 1
        assert not expected.exists()

    made = cli("tokens", "create", "--agency", "minsoc", "--init", env=env_missing)
    assert made.returncode == 0, made.stderr
    assert expected.stat().st_mode & 0o777 == 0o600
    assert expected.parent.stat().st_mode & 0o077 == 0  # the directory we made is private
    again = cli("tokens", "create", "--agency", "minsoc", env=env_missing)  # exists: no --init
    assert again.returncode == 0, again.stderr


@pytest.mark.integration
def test_serve_as_the_stack_launches_it(topic_factory: TopicFactory, tmp_path: Path) -> None:
    _topics, common = topic_factory(3)
    env = _env(common, tmp_path)
    token = cli("tokens", "create", "--agency", "minsoc", "--init", env=env).stdout.strip()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "servicepulse", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        r = httpx.post(
            f"{url}/v1/events",
            content=json.dumps([event()]).encode(),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1
        metrics = httpx.get(f"{url}/metrics").text
        assert "servicepulse_journeys_started_total" in metrics
        assert "process_cpu_seconds_total" in metrics  # the default registry's collectors
        assert "_created" not in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    # uvicorn re-raises SIGTERM after its graceful shutdown, hence -15
    assert code in (0, -signal.SIGTERM) and "API stopped" in text, text
    assert token not in text and token.split("_", 2)[2] not in text


@pytest.mark.integration
def test_report_command_reads_kafka_directly(topic_factory: TopicFactory, tmp_path: Path) -> None:
    topics, common = topic_factory(3)
    write_transactionally(common, topics.aggregates, demo_records(["2026-11-02", "2026-11-03"]))
    env = _env(common, tmp_path)
    out = tmp_path / "report.csv"
    r = cli(
        "report",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--format",
        "csv",
        "-o",
        str(out),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    started = next(
        x for x in rows if x["section"] == "summary" and x["metric"] == "journeys_started"
    )
    assert int(started["value"]) > 0
    html = cli(
        "report",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--scope",
        "agency",
        "--code",
        "minsoc",
        "--format",
        "html",
        env=env,
    )
    assert html.returncode == 0 and "Рейтинг ведомств" in html.stdout and "Минсоц" in html.stdout
    bad = cli("report", "--scope", "agency", "--code", "nosuch", env=env)
    assert bad.returncode == 1 and "unknown agency 'nosuch'" in bad.stderr


def _env(common: CommonSettings, tmp: Path) -> dict[str, str]:
    return {
        "SERVICEPULSE_KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "SERVICEPULSE_TOPIC_PREFIX": common.topic_prefix,
        "SERVICEPULSE_TOKEN_DB": str(tmp / "tokens.db"),
        "SERVICEPULSE_STACK_DIR": str(tmp),
        "SERVICEPULSE_READMODEL_SNAPSHOT": "",
    }
