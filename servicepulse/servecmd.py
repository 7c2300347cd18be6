"""``servicepulse serve`` (the API under uvicorn) and ``servicepulse tokens``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from contract.errors import ServicePulseError

if TYPE_CHECKING:
    from api.tokens import TokenStore

console = Console(stderr=True)
out = Console()

tokens_app = typer.Typer(
    help="API tokens: create (shown once), list, revoke.", no_args_is_help=True
)


def serve(
    port: Annotated[
        int | None, typer.Option(help="port (default 8000, or SERVICEPULSE_API_PORT)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="address (default 127.0.0.1, or SERVICEPULSE_API_HOST)")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Run the API (ingest, /metrics, scorecards, reports) with uvicorn, one worker."""
    import prometheus_client
    import uvicorn

    from api.app import create_app
    from api.server import server_options
    from api.settings import ApiSettings
    from servicepulse.cli import configure_logging

    overrides: dict[str, object] = {}
    if port is not None:
        overrides["api_port"] = port
    if host is not None:
        overrides["api_host"] = host
    try:
        settings = ApiSettings(**overrides)  # type: ignore[arg-type]
        configure_logging(settings.log_level)
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        app = create_app(settings, registry=prometheus_client.REGISTRY)
    except ServicePulseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        workers=1,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        **server_options(settings),
    )


def _store(db: Path | None, *, init: bool = False) -> TokenStore:
    """The token store; a missing database is an error unless ``init`` (exit 1, saying
    where it looked and what to do)."""
    from api.settings import ApiSettings
    from api.tokens import MissingDatabase, TokenError, TokenStore

    path = db or ApiSettings().token_db
    store = TokenStore(path, cache_seconds=0, create=init)
    try:
        store.open()
    except MissingDatabase as exc:
        where = "--db" if db else "SERVICEPULSE_TOKEN_DB, else $SERVICEPULSE_STACK_DIR/api-data"
        console.print(
            f"[bold red]error:[/] no token database at {path.resolve()} (from {where}). Run "
            "the command where the stack runs, or set SERVICEPULSE_TOKEN_DB (or --db) to the "
            "API's database; to start a new, empty one there, add --init.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from exc
    except TokenError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    return store


TokenDbOption = Annotated[
    Path | None, typer.Option(help="token database (default: SERVICEPULSE_TOKEN_DB)")
]


@tokens_app.command("create")
def tokens_create(
    agency: Annotated[
        str | None, typer.Option(help="agency code from the catalog: a token to push events")
    ] = None,
    inspector: Annotated[
        bool, typer.Option("--inspector", help="a read-only token for scorecards and reports")
    ] = False,
    name: Annotated[str, typer.Option(help="who holds it, for `tokens list`")] = "",
    db: TokenDbOption = None,
    init: Annotated[
        bool, typer.Option("--init", help="start a new token database if there is none")
    ] = False,
) -> None:
    """Create a token and print it once: it is stored only as a hash."""
    from api.tokens import Kind, TokenError
    from contract.catalog import load_catalog

    if bool(agency) == inspector:
        console.print("[bold red]error:[/] give exactly one of --agency CODE and --inspector")
        raise typer.Exit(2)
    if agency:
        from api.settings import ApiSettings

        settings = ApiSettings()
        catalog = load_catalog(str(settings.catalog) if settings.catalog else None)
        if agency not in catalog.agencies:
            known = ", ".join(sorted(catalog.agencies))
            console.print(
                f"[bold red]error:[/] unknown agency {agency!r} (catalog has: {known})",
                highlight=False,
            )
            raise typer.Exit(2)
    store = _store(db, init=init)
    try:
        token, info = store.create(Kind.AGENCY if agency else Kind.INSPECTOR, agency, name)
    except TokenError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        store.close()
    who = f"agency {info.agency}" if info.agency else "inspector (read-only)"
    console.print(f"created token {info.id} for {who}; it is shown once, keep it secret:")
    print(token)


@tokens_app.command("list")
def tokens_list(db: TokenDbOption = None) -> None:
    """List tokens (ids, kind, agency, name, created, revoked); never the secrets."""
    store = _store(db)
    try:
        infos = store.list()
    finally:
        store.close()
    table = Table("id", "kind", "agency", "name", "created", "revoked")
    for i in infos:
        table.add_row(i.id, i.kind.value, i.agency or "", i.name, i.created_at, i.revoked_at or "")
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="the token id from `tokens list`")],
    db: TokenDbOption = None,
) -> None:
    """Revoke a token; the API refuses it within a few seconds."""
    from api.tokens import TokenError

    store = _store(db)
    try:
        info = store.revoke(token_id)
    except TokenError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        store.close()
    out.print(f"token {info.id} revoked at {info.revoked_at}")


def register(app: typer.Typer) -> None:
    """Attach ``serve`` and ``tokens``."""
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")
