"""``servicepulse up``, ``down`` and ``status``: the local stack without Docker."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contract.errors import ServicePulseError
from servicepulse import stack

console = Console(stderr=True)
# Wide enough that the status table never truncates URLs and log paths in a pipe or CI log.
out = Console(width=200) if not sys.stdout.isatty() else Console()

DEFAULT_RUN_DIR = Path(os.environ.get("SERVICEPULSE_STACK_DIR", ".servicepulse"))


def _port(name: str, default: int) -> int:
    # Ports are fixed by DESIGN.md section 8; the environment can move them so a second
    # stack (a test of `up` itself) can run beside a developer's.
    return int(os.environ.get(f"SERVICEPULSE_STACK_{name}_PORT", default))


KAFKA_PORT = _port("KAFKA", 9092)
CONTROLLER_PORT = _port("CONTROLLER", 9093)
API_PORT = _port("API", 8000)
PROMETHEUS_PORT = _port("PROMETHEUS", 9090)
ALERTMANAGER_PORT = _port("ALERTMANAGER", 9094)  # 9093 is the Kafka controller's here
PROCESSOR_METRICS_PORT = _port("PROCESSOR", 9400)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL
            return bool(resp.status == 200)
    except OSError:
        return False


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "servicepulse", *args]


def plan(
    run_dir: Path,
    *,
    processors: int = 1,
    api: bool = True,
    prometheus: bool = True,
    demo: bool = False,
    demo_rate: float = 40.0,
) -> list[stack.ManagedProcess]:
    """The processes of the local stack, in start order."""
    # Absolute: Prometheus resolves rule_files relative to its config file, and the
    # processes must not depend on the directory they were started from.
    run_dir = run_dir.resolve()
    env = {
        "SERVICEPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PORT}",
        "SERVICEPULSE_STACK_DIR": str(run_dir.resolve()),
        "PYTHONUNBUFFERED": "1",
    }
    parts = [stack.kafka_process(run_dir, KAFKA_PORT, CONTROLLER_PORT)]
    if processors:
        for i in range(processors):
            port = PROCESSOR_METRICS_PORT + i
            parts.append(
                stack.ManagedProcess(
                    name=f"processor-{i + 1}",
                    run_dir=run_dir,
                    env=env,
                    argv=_cli("process", "--metrics-port", str(port), "--instance", str(i + 1)),
                    ready=functools.partial(_http_ok, f"http://127.0.0.1:{port}/metrics"),
                    url=f"http://127.0.0.1:{port}/metrics",
                )
            )
    if api:
        parts.append(
            stack.ManagedProcess(
                name="api",
                run_dir=run_dir,
                env=env,
                argv=_cli("serve", "--port", str(API_PORT)),
                ready=lambda: _http_ok(f"http://127.0.0.1:{API_PORT}/healthz"),
                url=f"http://127.0.0.1:{API_PORT}/docs",
            )
        )
    alertmanagers: list[str] = []
    if prometheus and shutil.which("prometheus-alertmanager"):
        from servicepulse import alertmanager

        parts.append(
            alertmanager.alertmanager_process(
                run_dir,
                ALERTMANAGER_PORT,
                f"http://127.0.0.1:{API_PORT}{alertmanager.WEBHOOK_PATH}",
            )
        )
        alertmanagers.append(f"127.0.0.1:{ALERTMANAGER_PORT}")
    if prometheus and shutil.which("prometheus"):
        from servicepulse import promconfig

        parts.append(
            promconfig.prometheus_process(
                run_dir,
                PROMETHEUS_PORT,
                api_port=API_PORT,
                processor_ports=[PROCESSOR_METRICS_PORT + i for i in range(processors)],
                alertmanagers=alertmanagers,
            )
        )
    if demo:
        parts.append(
            stack.ManagedProcess(
                name="simulator",
                run_dir=run_dir,
                env=env,
                argv=_cli("simulate", "--target", "kafka", "--rate", str(demo_rate), "--quiet"),
                ready_timeout=10,
            )
        )
    return parts


def _topics() -> None:
    import kafkaport
    from contract.settings import CommonSettings
    from contract.topics import Topics
    from kafkaport.topics import align_topic_configs, ensure_topics, topic_config_drift
    from servicepulse.migrate import migrate_with_progress

    settings = CommonSettings(kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}")
    topics = Topics(settings.topic_prefix)
    specs = topics.specs()
    kafka = kafkaport.connect(settings)
    ensure_topics(kafka, specs)
    # topics an older version created in this stack's data keep their configs otherwise
    drift = topic_config_drift(kafka, specs)
    align_topic_configs(kafka, drift)
    for d in drift:
        console.print(f"  set {d.topic} {d.key}={d.wanted} (was {d.actual})", highlight=False)
    # before any processor starts: they refuse to while the old layout's topic exists
    migrate_with_progress(kafka, topics, console)


def _status_table(parts: list[stack.ManagedProcess]) -> Table:
    table = Table("component", "state", "pid", "where", "log")
    for p in parts:
        pid = p.pid()
        state = "[green]running[/]" if pid else "[red]stopped[/]"
        table.add_row(p.name, state, str(pid or "-"), p.url, str(p.log_file))
    return table


def up(
    demo: Annotated[bool, typer.Option(help="also run the traffic simulator (demo data)")] = False,
    processors: Annotated[int, typer.Option(min=0, max=8, help="processor instances")] = 1,
    api: Annotated[bool, typer.Option(help="run the API")] = True,
    prometheus: Annotated[bool, typer.Option(help="run Prometheus (Debian package)")] = True,
    rate: Annotated[float, typer.Option(help="demo events per second")] = 40.0,
    run_dir: Annotated[Path, typer.Option(help="state, logs and pid files")] = DEFAULT_RUN_DIR,
) -> None:
    """Start the local stack in the background and print what runs where.

    Kafka (KRaft, jars from Maven Central), then the topics, then processors, API,
    Prometheus and, with --demo, the simulator. Parts already running are kept.
    Stop everything with `servicepulse down`.
    """
    parts = plan(
        run_dir, processors=processors, api=api, prometheus=prometheus, demo=demo, demo_rate=rate
    )
    started = time.monotonic()
    for p in parts:
        console.print(f"starting {p.name} ...", highlight=False)
        try:
            pid = p.start()
        except ServicePulseError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            console.print("stopping what was started; see the log above")
            for q in reversed(parts):
                q.stop()
            raise typer.Exit(1) from exc
        console.print(f"  {p.name} ready (pid {pid})", highlight=False)
        if p.name == "kafka":
            _topics()
            console.print("  topics ready", highlight=False)
    out.print(_status_table(parts))
    out.print(f"up in {time.monotonic() - started:.1f}s. Stop with: servicepulse down")


def _saved_plan(run_dir: Path) -> list[stack.ManagedProcess]:
    """Every part ``up`` may have started, up to the highest processor with a pid file (>= 8).

    What runs is known from the pid files alone; a part that is not running is skipped
    by ``down`` and ``status``.
    """
    numbers = [p.stem.removeprefix("processor-") for p in run_dir.glob("processor-*.pid")]
    highest = max((int(n) for n in numbers if n.isdigit()), default=0)
    return plan(run_dir, processors=max(highest, 8), api=True, prometheus=True, demo=True)


def down(
    run_dir: Annotated[Path, typer.Option(help="state, logs and pid files")] = DEFAULT_RUN_DIR,
    purge: Annotated[bool, typer.Option(help="also delete Kafka and Prometheus data")] = False,
) -> None:
    """Stop every part of the local stack (reverse order); leaves no process behind."""
    parts = _saved_plan(run_dir)
    stopped = 0
    for p in reversed(parts):
        if p.stop():
            stopped += 1
            console.print(f"stopped {p.name}", highlight=False)
    if purge:
        for sub in ("kafka-data", "prometheus-data", "api-data"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        console.print(f"deleted data under {run_dir}")
    out.print(f"{stopped} process(es) stopped" if stopped else "nothing was running")


def status(
    run_dir: Annotated[Path, typer.Option(help="state, logs and pid files")] = DEFAULT_RUN_DIR,
) -> None:
    """Show which parts of the local stack run, where, and where their logs are."""
    parts = [p for p in _saved_plan(run_dir) if p.running() or p.name in ("kafka",)]
    out.print(_status_table(parts))
    if not any(p.running() for p in parts):
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    """Attach up, down and status."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
