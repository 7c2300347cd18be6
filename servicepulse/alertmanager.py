"""The local Alertmanager: its configuration and the managed process.

Alertmanager comes from the distribution's package (``apt-get install
prometheus-alertmanager``, binary ``prometheus-alertmanager``). Prometheus sends it the
alerts it fires (``alerting:`` in ``prometheus.yml``); Alertmanager groups them by alert
and agency, holds back a warning while the critical alert of the same name and agency
fires (inhibition), and posts every notification to the API's webhook, which shows them
on the inspectors' alerts page. ``deploy/alertmanager/alertmanager.yml`` is the same
configuration rendered for docker compose (the API at ``http://api:8000``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from servicepulse.stack import ManagedProcess, StackError, ready_endpoint

BINARY = "prometheus-alertmanager"
CONFIG_NAME = "alertmanager.yml"
DATA_SUBDIR = "alertmanager-data"
WEBHOOK_PATH = "/v1/alerts/webhook"
#: The compose file's configuration points at the API service by its name.
COMPOSE_WEBHOOK = "http://api:8000" + WEBHOOK_PATH


def render_config(
    webhook_url: str,
    *,
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
) -> str:
    """``alertmanager.yml``: one route to the API's webhook, grouping and inhibition."""
    doc = {
        "route": {
            "receiver": "servicepulse-api",
            "group_by": ["alertname", "agency"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "servicepulse-api",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
        "inhibit_rules": [
            {
                # the critical (short-window) alert says it already: no warning beside it
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "agency"],
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def alertmanager_process(
    run_dir: Path,
    port: int,
    webhook_url: str,
    *,
    name: str = "alertmanager",
    group_wait: str = "30s",
    group_interval: str = "5m",
    ready_timeout: float = 30.0,
) -> ManagedProcess:
    """An Alertmanager on ``127.0.0.1:port`` (no cluster) posting to ``webhook_url``."""
    binary = shutil.which(BINARY)
    config = run_dir / CONFIG_NAME
    data = run_dir / DATA_SUBDIR

    def prepare() -> None:
        if binary is None:
            raise StackError(f"{BINARY!r} is not on PATH: apt-get install prometheus-alertmanager")
        data.mkdir(parents=True, exist_ok=True)
        config.write_text(
            render_config(webhook_url, group_wait=group_wait, group_interval=group_interval)
        )

    argv = [
        binary or BINARY,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # a single instance: no gossip port
    ]
    return ManagedProcess(
        name=name,
        run_dir=run_dir,
        argv=argv,
        ready=ready_endpoint(port),
        ready_timeout=ready_timeout,
        prepare=prepare,
        url=f"http://127.0.0.1:{port}",
    )
