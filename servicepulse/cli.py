"""The ``servicepulse`` command: one entry point, one subcommand per job.

This is the composition root: it reads settings, configures logging and builds the
components. Components never import this package.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contract.errors import ServicePulseError

app = typer.Typer(
    name="servicepulse",
    help="ServicePulse: live service-quality metrics for public services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(
    help="The event contract: JSON Schema and validation.", no_args_is_help=True
)
catalog_app = typer.Typer(help="The service catalog: show or check one.", no_args_is_help=True)
kafka_app = typer.Typer(
    help="Kafka helpers: fetch the broker jars, create topics.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
app.add_typer(catalog_app, name="catalog")
app.add_typer(kafka_app, name="kafka")

console = Console(stderr=True)
out = Console()


def configure_logging(level: str = "INFO") -> None:
    """Logging for every command: one line per record, to stderr."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=lvl,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # a command configures again with its settings' level (basicConfig only sets it once)
    logging.getLogger().setLevel(lvl)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python warns when its I/O loop is slow under CPU load; not actionable for users.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error in red and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


# -- events ----------------------------------------------------------------------------


@events_app.command("schema")
def events_schema() -> None:
    """Print the JSON Schema of event contract v1."""
    from contract.events import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))


@events_app.command("validate")
def events_validate(
    file: Annotated[str, typer.Argument(help="NDJSON file of events; '-' reads stdin")],
    catalog: Annotated[Path | None, typer.Option(help="catalog YAML (default: demo)")] = None,
    no_future_check: Annotated[
        bool, typer.Option("--no-future-check", help="skip the 5-minute future limit")
    ] = False,
) -> None:
    """Validate events (one JSON object per line) against the contract and the catalog.

    Prints one line per invalid event (line, field, reason, message) and a summary.
    Exits 0 only when every event is valid, 1 otherwise, 2 on a usage error.
    """
    from datetime import UTC, datetime

    from contract.catalog import load_catalog
    from contract.events import Event, decode_event

    try:
        cat = load_catalog(str(catalog) if catalog else None)
    except ServicePulseError as exc:
        raise fail(str(exc), 2) from exc
    try:
        stream = sys.stdin.buffer if file == "-" else Path(file).open("rb")  # noqa: SIM115
    except OSError as exc:
        raise fail(f"cannot open {file!r}: {exc.strerror}", 2) from exc
    total = bad = 0
    by_reason: dict[str, int] = {}
    now = None if no_future_check else datetime.now(UTC)
    with stream:
        for lineno, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            total += 1
            result = decode_event(line.rstrip(b"\r\n"), now)
            problems = cat.check(result) if isinstance(result, Event) else result
            if problems:
                bad += 1
                for p in problems:
                    by_reason[p.reason.value] = by_reason.get(p.reason.value, 0) + 1
                    print(f"line {lineno}: {p.field or '<event>'}: {p.reason.value}: {p.message}")
    summary = f"{total} events, {total - bad} valid, {bad} invalid"
    if by_reason:
        summary += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items())) + ")"
    console.print(summary, highlight=False)
    if bad:
        raise typer.Exit(1)


# -- catalog ---------------------------------------------------------------------------


@catalog_app.command("show")
def catalog_show(
    catalog: Annotated[Path | None, typer.Option(help="catalog YAML (default: demo)")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the whole catalog as JSON")
    ] = False,
) -> None:
    """Print the loaded catalog: a summary table, or everything with --json."""
    import msgspec
    from rich.table import Table

    from contract.catalog import load_catalog

    try:
        cat = load_catalog(str(catalog) if catalog else None)
    except ServicePulseError as exc:
        raise fail(str(exc), 2) from exc
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(cat.file), indent=2).decode())
        sys.stdout.write("\n")
        return
    f = cat.file
    out.print(
        f"[bold]{f.region.name}[/] ({f.region.code}), time zone {f.region.timezone}; "
        f"source {cat.source}"
    )
    out.print(
        f"{len(f.agencies)} agencies, {len(f.services)} services, "
        f"{len(f.municipalities)} municipalities, {len(f.offices)} offices, "
        f"{len(f.life_situations)} life situations, calendar {sorted(cat.years)}"
    )
    table = Table("service", "agency", "name", "steps", "deadline", "channels")
    for s in f.services:
        table.add_row(
            s.code, s.agency, s.name, str(len(s.steps)), s.deadline.describe(), ",".join(s.channels)
        )
    out.print(table)


@catalog_app.command("check")
def catalog_check(file: Annotated[Path, typer.Argument(help="catalog YAML to check")]) -> None:
    """Validate a catalog file; exit 1 with the path of the first problem if broken."""
    from contract.catalog import Catalog

    try:
        cat = Catalog.from_file(file)
    except ServicePulseError as exc:
        raise fail(str(exc)) from exc
    f = cat.file
    out.print(
        f"{file}: OK - {len(f.agencies)} agencies, {len(f.services)} services, "
        f"{len(f.municipalities)} municipalities, {len(f.offices)} offices, "
        f"{len(f.life_situations)} life situations, calendar {sorted(cat.years)}"
    )
    until = cat.calendar_until
    out.print(
        f"production calendar horizon: {until.isoformat() if until else 'none'}; deadlines "
        "after it count Monday-Friday as working days and are counted in "
        "servicepulse_deadlines_beyond_calendar_total (alert ServicePulseDeadlinesBeyondCalendar)"
    )


# -- kafka -----------------------------------------------------------------------------


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the Apache Kafka broker jars from Maven Central into the cache."""
    from servicepulse.stack import KAFKA_VERSION, StackError, kafka_libs

    try:
        libs = kafka_libs(quiet=False)
    except StackError as exc:
        raise fail(str(exc)) from exc
    out.print(f"Apache Kafka {KAFKA_VERSION} jars in {libs}")


@kafka_app.command("topics")
def kafka_topics(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    prefix: Annotated[str | None, typer.Option(help="topic name prefix")] = None,
    fix: Annotated[
        bool,
        typer.Option("--fix", help="set configs of existing topics that differ from the project's"),
    ] = False,
) -> None:
    """Create the project's topics (idempotent), list them and their config drift.

    Existing topics are never altered unless --fix is given (a topic created by an older
    version keeps its configs: e.g. the events topic's message.timestamp.type).

    The aggregates topic of versions before 2026-12 (`<prefix>.aggregates`) is moved to
    `<prefix>.aggregates.v2` and deleted; stop processors of those versions first.
    Processors refuse to start while it exists.
    """
    import kafkaport
    from contract.settings import CommonSettings
    from contract.topics import Topics
    from kafkaport.topics import align_topic_configs, ensure_topics, topic_config_drift
    from servicepulse.migrate import migrate_with_progress

    overrides = {
        k: v
        for k, v in {"kafka_bootstrap": bootstrap, "topic_prefix": prefix}.items()
        if v is not None
    }
    settings = CommonSettings(**overrides)  # type: ignore[arg-type]
    topics = Topics(settings.topic_prefix)
    specs = topics.specs()
    try:
        kafka = kafkaport.connect(settings)
        created = ensure_topics(kafka, specs)
        drift = topic_config_drift(kafka, specs)
        if fix:
            align_topic_configs(kafka, drift)
        migrate_with_progress(kafka, topics, console)
    except ServicePulseError as exc:
        raise fail(str(exc)) from exc
    for s in specs:
        mark = "created" if s.name in created else "exists"
        out.print(f"{s.name:32} {s.partitions:3} partitions  {mark}  {s.configs}")
    for d in drift:
        if fix:
            out.print(f"set {d.topic} {d.key}={d.wanted} (was {d.actual})")
        else:
            console.print(f"[yellow]drift:[/] {d}", markup=True, highlight=False)
    if drift and not fix:
        console.print("run with --fix to set them", highlight=False)
        raise typer.Exit(3)


# -- the local stack -------------------------------------------------------------------


def _register_optional_commands() -> None:
    """Attach the commands of the components (each lives in its own module)."""
    from servicepulse import commands

    commands.register(app)


_register_optional_commands()


def main() -> None:
    """Console entry point."""
    configure_logging()
    try:
        app()
    except ServicePulseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
