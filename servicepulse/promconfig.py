"""The local Prometheus: configuration, rule files and the managed process.

Prometheus comes from the distribution's package (``apt-get install prometheus``, which
also brings ``promtool``). Everything it needs is rendered into the stack directory:
``prometheus.yml`` scraping the API and each processor, the recording and alert rules
generated from the methodology (the same generator as ``deploy/prometheus/rules``), and
its TSDB under ``prometheus-data``. The test suite starts its Prometheus with the same
code on free ports.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from contract.methodology import load_methodology
from dashboards import artifacts, pipeline, rules
from servicepulse.stack import ManagedProcess, StackError, ready_endpoint

#: 30-day windows need more than the 15-day default retention.
RETENTION = "35d"
#: Where the rendered configuration and rule files go inside the stack directory.
CONFIG_NAME = "prometheus.yml"
RULES_SUBDIR = "prometheus-rules"
DATA_SUBDIR = "prometheus-data"


def render_config(
    jobs: Mapping[str, Sequence[str]],
    rule_files: Sequence[str],
    *,
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
    credentials_files: Mapping[str, str] | None = None,
    alertmanagers: Sequence[str] = (),
) -> str:
    """``prometheus.yml`` text: one static scrape job per entry of ``jobs``.

    Args:
        jobs: job name -> ``host:port`` targets (each scraped at ``/metrics``).
        rule_files: paths or globs of rule files.
        scrape_interval: how often targets are scraped.
        evaluation_interval: how often rule groups without their own interval run.
        credentials_files: job name -> file holding the bearer token its targets want
            (the API's ``SERVICEPULSE_METRICS_TOKEN``).
        alertmanagers: ``host:port`` of Alertmanagers to send firing alerts to.
    """
    credentials_files = credentials_files or {}
    doc = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "scrape_timeout": scrape_interval if _secs(scrape_interval) < 10 else "10s",
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
                **(
                    {"authorization": {"credentials_file": credentials_files[job]}}
                    if job in credentials_files
                    else {}
                ),
            }
            for job, targets in jobs.items()
            if targets
        ],
    }
    if alertmanagers:
        targets = [{"targets": list(alertmanagers)}]
        doc["alerting"] = {"alertmanagers": [{"static_configs": targets}]}
    return yaml.safe_dump(doc, sort_keys=False)


def _secs(duration: str) -> int:
    return rules.seconds(duration)


def prometheus_for(
    run_dir: Path,
    port: int,
    jobs: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
    slow_interval: str | None = "5m",
    methodology: Path | None = None,
    name: str = "prometheus",
    ready_timeout: float = 60.0,
    tokens: Mapping[str, str] | None = None,
    alertmanagers: Sequence[str] = (),
) -> ManagedProcess:
    """A Prometheus on ``127.0.0.1:port`` scraping ``jobs``, with the generated rules.

    The configuration and rule files are (re)written into ``run_dir`` when the process
    starts, from the methodology file (``None``: the shipped one). ``slow_interval`` is
    the evaluation interval of the 7-day and 30-day rule groups (``None``: the global
    one, as tests use to see values within seconds). ``tokens``: job name -> the bearer
    token its targets want, written to a file of mode 0600 beside the configuration.
    """
    binary = shutil.which("prometheus")
    data = run_dir / DATA_SUBDIR
    rules_dir = run_dir / RULES_SUBDIR
    config = run_dir / CONFIG_NAME

    def prepare() -> None:
        if binary is None:
            raise StackError("'prometheus' is not on PATH: apt-get install prometheus")
        m = load_methodology(str(methodology) if methodology else None)
        artifacts.write(rules_dir, rules.render(m, slow_interval=slow_interval))
        data.mkdir(parents=True, exist_ok=True)
        credentials = {}
        for job, token in (tokens or {}).items():
            path = run_dir / f"{job}.token"
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)
            credentials[job] = str(path)
        config.write_text(
            render_config(
                jobs,
                [str(rules_dir / "*.yml")],
                scrape_interval=scrape_interval,
                evaluation_interval=evaluation_interval,
                credentials_files=credentials,
                alertmanagers=alertmanagers,
            )
        )

    argv = [
        binary or "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
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


def prometheus_process(
    run_dir: Path,
    port: int,
    *,
    api_port: int,
    processor_ports: list[int],
    alertmanagers: Sequence[str] = (),
) -> ManagedProcess:
    """The local stack's Prometheus: scrapes the API and every processor on loopback.

    The rules come from ``SERVICEPULSE_METHODOLOGY`` (default: the shipped methodology).
    The API is scraped where its settings serve /metrics: ``SERVICEPULSE_API_METRICS_PORT``
    if set, else ``api_port``, with ``SERVICEPULSE_METRICS_TOKEN`` if set.
    """
    from api.settings import ApiSettings

    api = ApiSettings()
    token = api.metrics_token.get_secret_value() if api.metrics_token else None
    jobs = {
        pipeline.JOB_API: [f"127.0.0.1:{api.api_metrics_port or api_port}"],
        pipeline.JOB_PROCESSOR: [f"127.0.0.1:{p}" for p in processor_ports],
        pipeline.JOB_PROMETHEUS: [f"127.0.0.1:{port}"],
    }
    return prometheus_for(
        run_dir,
        port,
        jobs,
        scrape_interval="5s",
        evaluation_interval="5s",
        methodology=api.methodology,
        tokens={pipeline.JOB_API: token} if token else None,
        alertmanagers=alertmanagers,
    )
