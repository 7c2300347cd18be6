"""``servicepulse log`` (the hash-chained log of issued numbers) and ``reports verify``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from contract.errors import ServicePulseError

if TYPE_CHECKING:
    from api.ledger import ChainReport
    from api.settings import ApiSettings
    from contract.keyfiles import Ed25519PublicKey

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # long hashes and paths stay on one line

log_app = typer.Typer(
    help="The signed, hash-chained log of issued reports and closed days.", no_args_is_help=True
)
reports_app = typer.Typer(help="Issued reports: verify a file.", no_args_is_help=True)

PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        help="the deployment's public log key (PEM); default: derived from SERVICEPULSE_LEDGER_KEY"
    ),
]
TopicOption = Annotated[
    str | None, typer.Option(help="log topic (default: <SERVICEPULSE_TOPIC_PREFIX>.ledger)")
]


def _error(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _public_key(settings: ApiSettings, path: Path | None) -> Ed25519PublicKey:
    from contract.keyfiles import load_private_key, load_public_key

    if path is not None:
        return load_public_key(path)
    return load_private_key(settings.ledger_key_path).public_key()


def _topic(settings: ApiSettings, topic: str | None) -> str:
    from contract.topics import Topics

    return topic or Topics(settings.topic_prefix).ledger


def _chain(settings: ApiSettings, topic: str, public: Path | None) -> ChainReport:
    from api.ledger import read_records, verify_chain

    return verify_chain(read_records(settings, topic), _public_key(settings, public))


@log_app.command("init-key")
def log_init_key(
    path: Annotated[
        Path | None, typer.Option(help="key file to create (default: SERVICEPULSE_LEDGER_KEY)")
    ] = None,
) -> None:
    """Create the deployment's log signing key (mode 0600) and PATH.pub; never overwrites."""
    from api.settings import ApiSettings
    from contract.keyfiles import create_private_key, key_id_of, public_pem

    target = path or ApiSettings().ledger_key_path
    try:
        key = create_private_key(target)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    pub = target.with_name(target.name + ".pub")
    pub.write_bytes(public_pem(key))
    out.print(
        f"created the log key {target} (mode 0600), key id {key_id_of(key)}; publish {pub} "
        "so anyone can verify the log",
        highlight=False,
    )


@log_app.command("verify")
def log_verify(
    public_key: PublicKeyOption = None,
    topic: TopicOption = None,
    expect: Annotated[
        str | None,
        typer.Option(help="an entry hash published earlier: the log must still hold it"),
    ] = None,
) -> None:
    """Check the whole log: every hash, signature, sequence number and link.

    Exits 0 and prints the head (publish its hash: with --expect HASH, a log cut short
    before that entry then fails), or 1 listing every problem.
    """
    from api.settings import ApiSettings

    settings = ApiSettings()
    try:
        report = _chain(settings, _topic(settings, topic), public_key)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    for p in report.problems:
        console.print(f"[red]broken:[/] {p}", highlight=False)
    head = report.head
    n = len(report.entries)
    if expect is not None and not any(e.hash == expect for e in report.entries):
        report.problems.append(f"no entry has the expected hash {expect}: the log was cut short")
        console.print(f"[red]broken:[/] {report.problems[-1]}", highlight=False)
    if not report.ok:
        raise _error(f"the log does NOT verify: {len(report.problems)} problems in {n} entries")
    if head is None:
        out.print("the log is empty")
        return
    out.print(
        f"the log verifies: {n} entries, head entry {head.seq} at {head.at}, hash {head.hash}",
        highlight=False,
    )


@log_app.command("show")
def log_show(
    limit: Annotated[int, typer.Option(help="the last N entries")] = 20,
    topic: TopicOption = None,
) -> None:
    """List the last entries (sequence, time, kind, what); does not verify (use `verify`)."""
    from api.ledger import Entry, parse, read_records
    from api.settings import ApiSettings

    settings = ApiSettings()
    try:
        entries = [
            e
            for o, v in read_records(settings, _topic(settings, topic))
            if isinstance(e := parse(v, o), Entry)
        ]
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    table = Table("seq", "at", "kind", "what", "hash")
    for e in entries[-limit:]:
        if e.kind == "report":
            p = e.body.get("params", {})
            what = (
                f"{e.body.get('format')} {p.get('scope')} {p.get('code') or ''} "
                f"{p.get('from')}..{p.get('to')} via {e.body.get('via')}"
            )
        else:
            what = f"day {e.body.get('day')}" + (
                f", restates {e.body['restates']}" if "restates" in e.body else ""
            )
        table.add_row(str(e.seq), e.at[:19], e.kind, what, e.hash[:16])
    out.print(table)


@log_app.command("close-days")
def log_close_days(
    timeout: Annotated[float, typer.Option(help="seconds to wait for Kafka")] = 120.0,
) -> None:
    """Append the day-close entries that are due (the API also does this periodically)."""
    from api.checkpoint import ReadModelCheckpoint
    from api.ledger import Ledger, close_days, deployment_key, transactional_id
    from api.readmodel import ReadModel
    from api.settings import ApiSettings
    from contract.catalog import load_catalog
    from contract.topics import Topics

    settings = ApiSettings()
    topics = Topics(settings.topic_prefix)
    try:
        catalog = load_catalog(str(settings.catalog) if settings.catalog else None)
        model = ReadModel(
            settings, topics, catalog, checkpoint=ReadModelCheckpoint(settings, topics)
        )
        model.catch_up(timeout)
        key = deployment_key(settings.ledger_key_path, settings.mode)
        ledger = Ledger(settings, topics.ledger, key, transactional_id(topics.prefix))
        try:
            entries = close_days(ledger, settings, model, catalog, settings.ledger_close_after)
        finally:
            ledger.close()
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    for e in entries:
        extra = f" (restates entry {e.body['restates']})" if "restates" in e.body else ""
        out.print(f"closed day {e.body['day']}: entry {e.seq}{extra}", highlight=False)
    out.print(f"{len(entries)} days closed")


@reports_app.command("verify")
def reports_verify(
    file: Annotated[Path, typer.Argument(help="a report file (JSON, CSV or HTML)")],
    public_key: PublicKeyOption = None,
    topic: TopicOption = None,
) -> None:
    """Say whether FILE is a report that was issued, and when (exit 0), or not (exit 1).

    The log is verified end to end first; a report found only in a broken log is not
    trusted.
    """
    from api.ledger import verify_report
    from api.settings import ApiSettings

    settings = ApiSettings()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _error(f"cannot read {str(file)!r}: {exc.strerror}", 2) from exc
    try:
        chain = _chain(settings, _topic(settings, topic), public_key)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    if not chain.ok:
        raise _error(
            "the log does not verify (run `servicepulse log verify`); cannot vouch for " + str(file)
        )
    check = verify_report(data, chain.entries)
    if check.entry is None:
        raise _error(f"{file} is NOT an issued report: {check.reason} (SHA-256 {check.digest})")
    e = check.entry
    p = e.body.get("params", {})
    out.print(
        f"{file} is an issued report: {e.body.get('format')} {p.get('scope')} "
        f"{p.get('code') or ''} {p.get('from')}..{p.get('to')}, issued {e.at} via "
        f"{e.body.get('via')}; log entry {e.seq} ({e.hash}); SHA-256 {check.digest}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Attach ``log`` and ``reports``."""
    app.add_typer(log_app, name="log")
    app.add_typer(reports_app, name="reports")
