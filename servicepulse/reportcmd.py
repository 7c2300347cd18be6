"""``servicepulse report``: a period report straight from Kafka, without the API."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console

from contract.errors import ServicePulseError

if TYPE_CHECKING:
    from api.ledger import Entry
    from api.settings import ApiSettings

console = Console(stderr=True)


def report(
    date_from: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="first day (default: 29 days ago)"),
    ] = None,
    date_to: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="last day, inclusive (default: today)"),
    ] = None,
    scope: Annotated[
        str, typer.Option(help="region, agency, service or life_situation")
    ] = "region",
    code: Annotated[str | None, typer.Option(help="catalog code of the scope")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html")] = "html",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file to write (default: stdout)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for Kafka")] = 120.0,
) -> None:
    """Build the period report from the aggregates topic and write it.

    Reads the aggregates and dead-letter topics from the beginning (like the API's read
    model), so it needs Kafka but not a running API. Same numbers as GET /v1/reports/period.
    The report is recorded in the log of issued reports (SERVICEPULSE_LEDGER_ENABLED)
    before it is written; `servicepulse reports verify FILE` checks it later.
    """
    from api.checkpoint import ReadModelCheckpoint
    from api.readmodel import ReadModel
    from api.report_render import Format, render
    from api.reports import build_report
    from api.scorecard import Scope, Scorer, period_bounds
    from api.settings import ApiSettings
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from contract.topics import Topics

    if scope not in ("region", "agency", "service", "life_situation"):
        console.print(f"[bold red]error:[/] unknown scope {scope!r}", highlight=False)
        raise typer.Exit(2)
    if fmt not in ("json", "csv", "html"):
        console.print(f"[bold red]error:[/] unknown format {fmt!r}", highlight=False)
        raise typer.Exit(2)
    try:
        settings = ApiSettings()
        catalog = load_catalog(str(settings.catalog) if settings.catalog else None)
        methodology = load_methodology(str(settings.methodology) if settings.methodology else None)
        start, end = period_bounds(
            catalog,
            date_from.date() if date_from else None,
            date_to.date() if date_to else None,
        )
        topics = Topics(settings.topic_prefix)
        # no snapshot of its own: it starts from the API's checkpoint, if there is one
        model = ReadModel(
            settings, topics, catalog, checkpoint=ReadModelCheckpoint(settings, topics)
        )
        model.catch_up(timeout)
        scorer = Scorer(model, catalog, methodology)
        rep = build_report(scorer, cast(Scope, scope), code, start, end, datetime.now(UTC))
        body, _media = render(rep, cast(Format, fmt))
        entry = None
        if settings.ledger_enabled:
            body, entry = _record(settings, body, fmt, scope, code, start, end)
    except ServicePulseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        output.write_bytes(body)
        console.print(f"report {start}..{end} ({scope}) written to {output}", highlight=False)
    if entry is not None:
        console.print(
            f"recorded as entry {entry.seq} of the log, SHA-256 {entry.body['sha256']}",
            highlight=False,
        )


def _record(
    settings: ApiSettings,
    body: bytes,
    fmt: str,
    scope: str,
    code: str | None,
    start: date,
    end: date,
) -> tuple[bytes, Entry]:
    """Record the report in the log; the bytes to write (HTML gets its integrity block)."""
    from api.ledger import Ledger, deployment_key, issue, transactional_id
    from contract.topics import Topics

    topics = Topics(settings.topic_prefix)
    key = deployment_key(settings.ledger_key_path, settings.mode)
    ledger = Ledger(settings, topics.ledger, key, transactional_id(topics.prefix))
    try:
        params = {"scope": scope, "code": code, "from": start.isoformat(), "to": end.isoformat()}
        return issue(ledger, body, fmt, params, "cli")
    finally:
        ledger.close()


def register(app: typer.Typer) -> None:
    """Attach ``report``."""
    app.command("report")(report)
