"""``servicepulse simulate`` (traffic simulator) and ``servicepulse import`` (NDJSON to Kafka)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contract.errors import ServicePulseError

console = Console(stderr=True)
logger = logging.getLogger(__name__)

TARGETS = ("kafka", "http", "file")
#: Hours of recent traffic backfilled before a live run, so decisions, feedback and
#: appeals flow from the first minutes.
DEFAULT_WARMUP_HOURS = 2.0


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _parse_when(value: str, tz: Any, what: str) -> datetime:
    """A date (local midnight) or an ISO 8601 date-time (local time if no offset)."""
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=tz)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _fail(f"{what}: {value!r} is not a date (YYYY-MM-DD) or ISO date-time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def simulate(
    target: Annotated[str, typer.Option(help="kafka, http or file")] = "kafka",
    output: Annotated[
        str | None, typer.Option(help="NDJSON file for --target file ('-': stdout)")
    ] = None,
    url: Annotated[str | None, typer.Option(help="API base URL for --target http")] = None,
    token: Annotated[
        str | None, typer.Option(help="bearer token for every agency (--target http)")
    ] = None,
    tokens: Annotated[
        Path | None, typer.Option(help="YAML/JSON file mapping agency code -> token")
    ] = None,
    signing_keys: Annotated[
        Path | None,
        typer.Option(
            help="YAML/JSON file mapping agency code -> private key file: sign its batches"
        ),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="scenario YAML file, or a shipped one by name")
    ] = None,
    catalog: Annotated[Path | None, typer.Option(help="catalog YAML (default: demo)")] = None,
    seed: Annotated[
        int | None, typer.Option(help="random seed (default: random, printed at the end)")
    ] = None,
    rate: Annotated[
        float, typer.Option(help="mean events per second of event time (weekly mean)")
    ] = 20.0,
    from_: Annotated[
        str | None, typer.Option("--from", help="first event time (date or date-time)")
    ] = None,
    to: Annotated[
        str | None, typer.Option(help="stop before this event time (backfill only)")
    ] = None,
    backfill_days: Annotated[
        float | None, typer.Option(help="backfill the last N days (from local midnight)")
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="after a backfill, continue live until stopped")
    ] = False,
    warmup_hours: Annotated[
        float,
        typer.Option(help="live mode: backfill this many recent hours first (0: none)"),
    ] = DEFAULT_WARMUP_HOURS,
    accelerate: Annotated[
        float | None,
        typer.Option(help="event time runs X times faster than the wall clock until it is now"),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many wall-clock seconds")
    ] = None,
    events: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no progress bar; a status log line a minute")
    ] = False,
) -> None:
    """Simulate the public-service traffic of the region and send it somewhere.

    Modes: backfill a past period as fast as possible (--backfill-days N or --from/--to);
    live (the default: the last --warmup-hours first, then events as the clock reaches
    them, at --rate); accelerated (--accelerate X). --backfill-days N --live backfills,
    then goes on live. Same --seed and options give the same events.
    """
    from contract.catalog import load_catalog
    from contract.settings import refuse_placeholder
    from producers.pseudonym import Pseudonymizer
    from producers.settings import ProducerSettings
    from producers.simulator.engine import SIMULATOR_SECRET, Simulation, period
    from producers.simulator.runner import Plan, run
    from producers.simulator.scenario import load_scenario

    if target not in TARGETS:
        raise _fail(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if rate <= 0:
        raise _fail(f"--rate must be positive, got {rate}")
    if accelerate is not None and accelerate < 1:
        raise _fail(f"--accelerate must be at least 1, got {accelerate}")
    settings = ProducerSettings()
    try:
        cat = load_catalog(
            str(catalog or settings.catalog) if (catalog or settings.catalog) else None
        )
        scen = load_scenario(scenario, cat) if scenario else None
    except ServicePulseError as exc:
        raise _fail(str(exc)) from exc
    tz = cat.tz
    now = datetime.now(tz)
    backfill = from_ is not None or to is not None or backfill_days is not None
    if from_ is not None:
        start = _parse_when(from_, tz, "--from")
    elif backfill_days is not None:
        start, _ = period(backfill_days, now)
    elif accelerate is not None:
        span = (accelerate - 1) * duration if duration else 86_400.0
        start = now - timedelta(seconds=span)
    else:
        start = now - timedelta(hours=max(0.0, warmup_hours))
    going_live = live or not backfill
    end: datetime | None = None
    if not going_live:
        end = min(_parse_when(to, tz, "--to"), now) if to else now
        if end <= start:
            raise _fail(f"empty period: {start.isoformat()} .. {end.isoformat()}")
    elif to is not None:
        raise _fail("--to ends a backfill; it cannot be combined with --live")
    if start > now:
        raise _fail(f"--from {start.isoformat()} is in the future; events cannot be")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    secret = settings.pseudonym_secret
    try:
        refuse_placeholder(settings, "pseudonym_secret", secret)
    except ServicePulseError as exc:
        raise _fail(str(exc)) from exc
    pseudonymizer = Pseudonymizer(
        secret if secret is not None and secret.get_secret_value() else SIMULATOR_SECRET
    )
    sim = Simulation(
        cat, seed=seed, start=start, rate=rate, scenario=scen, pseudonymizer=pseudonymizer
    )
    try:
        sink = _sink(target, output, url, token, tokens, settings, cat, signing_keys)
    except ServicePulseError as exc:
        raise _fail(str(exc)) from exc
    plan = Plan(end=end, accelerate=accelerate, max_events=events, duration_s=duration)
    stop = threading.Event()
    _on_signals(stop)
    mode = "backfill" if end is not None else ("accelerated" if accelerate else "live")
    logger.info(
        "simulate: mode=%s target=%s seed=%d rate=%.1f/s start=%s end=%s scenario=%s",
        mode,
        sink.name,
        seed,
        rate,
        start.isoformat(timespec="seconds"),
        end.isoformat(timespec="seconds") if end else "live",
        sim.scenario.name,
    )
    try:
        if quiet:
            stats = run(sim, sink, plan, stop=stop, status_every_s=60.0)
        else:
            stats = _run_with_progress(sim, sink, plan, stop, start, end)
    except ServicePulseError as exc:
        raise _fail(str(exc), 1) from exc
    _summary(stats, sink, seed, start, mode, quiet)
    if sink.stats.rejected:
        raise typer.Exit(1)


def _sink(
    target: str,
    output: str | None,
    url: str | None,
    token: str | None,
    tokens: Path | None,
    settings: Any,
    cat: Any,
    signing_keys: Path | None = None,
) -> Any:
    from producers.producer import EventProducer
    from producers.simulator.sinks import (
        FileSink,
        HttpSink,
        KafkaSink,
        load_signers,
        load_tokens,
    )

    if target == "file":
        if not output:
            raise _fail("--target file needs --output FILE ('-' for standard output)")
        return FileSink(output)
    if target == "http":
        if not url:
            raise _fail("--target http needs --url (the API base URL)")
        mapping = load_tokens(tokens) if tokens else {}
        if not mapping and not token:
            raise _fail("--target http needs --token or --tokens FILE")
        signers = load_signers(signing_keys) if signing_keys else None
        return HttpSink(url, tokens=mapping, default_token=token, signers=signers)
    producer = EventProducer(settings, cat, pseudonym_secret=settings.pseudonym_secret)
    return KafkaSink(producer)


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("simulate: signal %d, finishing", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run_with_progress(
    sim: Any, sink: Any, plan: Any, stop: threading.Event, start: datetime, end: datetime | None
) -> Any:
    from producers.simulator.runner import SimulationStats, run

    t0 = start.timestamp()
    span = (end.timestamp() - t0) if end is not None else None
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[events]:>10,} events  {task.fields[rate]:>8,.0f}/s"),
        TextColumn("event time {task.fields[when]}  {task.fields[lag]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("simulate", total=span or 1.0, events=0, rate=0.0, when="-", lag="")

        def progress(stats: SimulationStats) -> None:
            et = stats.event_time or t0
            when = datetime.fromtimestamp(et, sim.model.tz).strftime("%Y-%m-%d %H:%M:%S")
            done = (et - t0) if span else (1.0 if stats.live else 0.5)
            bar.update(
                task,
                completed=min(done, span or 1.0),
                events=stats.events,
                rate=stats.rate,
                when=when,
                lag=f"live, lag {stats.lag_s:.2f}s" if stats.live else "",
                description="live" if stats.live else "backfill",
            )

        return run(sim, sink, plan, stop=stop, progress=progress)


def _summary(stats: Any, sink: Any, seed: int, start: datetime, mode: str, quiet: bool) -> None:
    rejected = sum(sink.stats.rejected.values())
    line = (
        f"simulate: {stats.events:,} events to {sink.name} in {stats.elapsed_s:.1f}s "
        f"({stats.rate:,.0f}/s), delivered {sink.stats.delivered:,}, rejected {rejected:,}; "
        f"mode {mode}, seed {seed}, from {start.isoformat(timespec='seconds')}"
        + (f", stopped by {stats.stopped_by}" if stats.stopped_by else "")
    )
    if quiet:
        logger.info("%s", line)
        if rejected:
            logger.warning("simulate: rejected by reason %s", dict(sink.stats.rejected))
        return
    table = Table("event type", "events", title="events by type")
    for name, n in sorted(stats.by_type.items()):
        table.add_row(name, f"{n:,}")
    agencies = Table("agency", "events", title="events by agency")
    for name, n in stats.by_agency.most_common():
        agencies.add_row(name, f"{n:,}")
    console.print(table)
    console.print(agencies)
    if rejected:
        bad = Table("reason", "events", title="rejected or not delivered")
        for name, n in sink.stats.rejected.most_common():
            bad.add_row(name, f"{n:,}")
        console.print(bad)
    console.print(line, highlight=False)


def import_events(
    file: Annotated[str, typer.Argument(help="NDJSON file of events; '-' reads stdin")],
    catalog: Annotated[Path | None, typer.Option(help="catalog YAML (default: demo)")] = None,
) -> None:
    """Send an NDJSON file of events to Kafka through the producer library.

    Each line is validated against the contract and the catalog; invalid lines are
    listed with their line number, field and reason, valid ones are sent. A raw
    ``citizen_id`` field is pseudonymised with SERVICEPULSE_PSEUDONYM_SECRET. Exits 0
    only when every line was valid and delivered.
    """
    from contract.catalog import load_catalog
    from producers.backfill import import_ndjson
    from producers.producer import EventProducer
    from producers.settings import ProducerSettings

    settings = ProducerSettings()
    try:
        cat = load_catalog(
            str(catalog or settings.catalog) if (catalog or settings.catalog) else None
        )
        producer = EventProducer(settings, cat)
        with producer:
            source = sys.stdin.buffer if file == "-" else Path(file)
            report = import_ndjson(source, producer)
    except OSError as exc:
        raise _fail(f"cannot read {file!r}: {exc.strerror}") from exc
    except ServicePulseError as exc:
        raise _fail(str(exc), 1) from exc
    for bad in report.invalid:
        for p in bad.problems:
            print(f"line {bad.line}: {p.field or '<event>'}: {p.reason.value}: {p.message}")
    console.print(
        f"{report.lines} events, {report.sent} sent, {report.delivered} delivered, "
        f"{len(report.invalid)} invalid, {report.not_delivered} not delivered",
        highlight=False,
    )
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach ``simulate`` and ``import`` to the CLI."""
    app.command("simulate")(simulate)
    app.command("import")(import_events)
