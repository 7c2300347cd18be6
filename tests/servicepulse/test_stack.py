"""`servicepulse up` / `status` / `down` with the real launcher, on ports of the test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servicepulse import stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servicepulse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (Debian package) not installed")
def test_up_runs_a_real_broker_that_kcat_uses_and_down_leaves_nothing(tmp_path: Path) -> None:
    kafka_port = stack.free_port()
    env = {
        **os.environ,
        "SERVICEPULSE_STACK_DIR": str(tmp_path / "stack"),
        "SERVICEPULSE_STACK_KAFKA_PORT": str(kafka_port),
        "SERVICEPULSE_STACK_CONTROLLER_PORT": str(stack.free_port()),
    }
    up = _cli(
        env,
        "up",
        "--processors",
        "0",
        "--no-api",
        "--no-prometheus",
        "--run-dir",
        str(tmp_path / "stack"),
    )
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "kafka" in up.stdout and "running" in up.stdout
        bootstrap = f"127.0.0.1:{kafka_port}"
        listing = subprocess.run(
            ["kcat", "-b", bootstrap, "-L"], capture_output=True, text=True, timeout=30, check=True
        )
        assert "servicepulse.events" in listing.stdout
        assert "with 12 partitions" in listing.stdout
        subprocess.run(
            ["kcat", "-b", bootstrap, "-P", "-t", "servicepulse.deadletter"],
            input="hello from kcat\n",
            text=True,
            timeout=30,
            check=True,
        )
        consumed = subprocess.run(
            ["kcat", "-b", bootstrap, "-C", "-t", "servicepulse.deadletter", "-e", "-q"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert "hello from kcat" in consumed.stdout
        status = _cli(env, "status", "--run-dir", str(tmp_path / "stack"))
        assert status.returncode == 0
        assert "running" in status.stdout
        pid = int((tmp_path / "stack" / "kafka.pid").read_text())
    finally:
        down = _cli(env, "down", "--run-dir", str(tmp_path / "stack"))
    assert down.returncode == 0, down.stderr
    assert "stopped kafka" in down.stderr
    for _ in range(50):
        if not stack.pid_alive(pid):
            break
        time.sleep(0.1)
    assert not stack.pid_alive(pid)
    assert not stack.port_open(kafka_port)
    after = _cli(env, "status", "--run-dir", str(tmp_path / "stack"))
    assert after.returncode == 3
