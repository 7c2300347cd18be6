"""``servicepulse process``: run one stream processor instance."""

from __future__ import annotations

import faulthandler
import logging
import signal
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from contract.errors import ServicePulseError

console = Console(stderr=True)
logger = logging.getLogger(__name__)


def process(
    metrics_port: Annotated[
        int | None, typer.Option(help="port of /metrics (default SERVICEPULSE_METRICS_PORT, 9400)")
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option(help="stable instance id (transactional id suffix); default: hostname"),
    ] = None,
) -> None:
    """Run a stream processor: events -> state, daily rollups and gauges, exactly once.

    Any number of instances share the work through one consumer group. SIGTERM or
    Ctrl-C commits the current transaction and leaves the group cleanly.
    """
    from prometheus_client import REGISTRY, start_http_server

    import kafkaport
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from contract.topics import Topics
    from kafkaport.topics import ensure_topics, topic_config_drift
    from processors.metrics import build_metrics
    from processors.runner import Processor, tune_collector
    from processors.settings import ProcessorSettings
    from servicepulse.cli import configure_logging
    from servicepulse.migrate import layout_problem

    overrides: dict[str, object] = {}
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if instance is not None:
        overrides["instance_id"] = instance
    settings = ProcessorSettings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    try:
        catalog = load_catalog(str(settings.catalog) if settings.catalog else None)
        methodology = load_methodology(str(settings.methodology) if settings.methodology else None)
    except ServicePulseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    metrics = build_metrics(REGISTRY)
    start_http_server(settings.metrics_port, registry=REGISTRY)
    logger.info(
        "processor %s: metrics on :%d, group %s, topics %s.*",
        settings.instance_id,
        settings.metrics_port,
        settings.group_id,
        settings.topic_prefix,
    )
    tune_collector()
    proc = Processor(settings, catalog, methodology.standards, metrics)

    def _stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: committing and leaving the group", signum)
        proc.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: a hung loop shows where
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    topics = Topics(settings.topic_prefix)
    specs = topics.specs()
    problem = None
    try:
        kafka = kafkaport.connect(settings)
        ensure_topics(kafka, specs)
        for d in topic_config_drift(kafka, specs):
            logger.warning("%s; `servicepulse kafka topics --fix` sets it", d)
        problem = layout_problem(kafka, topics)
    except ServicePulseError as exc:
        logger.warning("could not ensure topics (%s); continuing", exc)
    if problem is not None:
        # starting would restore from (and write) the new layout beside the state of
        # the old one: the old state would be lost to the restores
        logger.error("not starting: %s", problem)
        raise typer.Exit(2)
    stats = proc.run()
    logger.info(
        "stopped: %d events, %d transactions, %d records written",
        stats.events,
        stats.transactions,
        stats.records_out,
    )
    if stats.retention_lost:
        logger.error(
            "%d input events were deleted by retention before they were processed",
            stats.retention_lost,
        )


def register(app: typer.Typer) -> None:
    """Attach ``process``."""
    app.command("process")(process)
