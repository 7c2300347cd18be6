"""``servicepulse keys``: agencies' Ed25519 signing keys and their signature policy.

A private key is written once, to a file created with mode 0600, and never printed or
logged; only its public half is registered (in the key database next to the tokens).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from contract.errors import ServicePulseError

if TYPE_CHECKING:
    from api.keys import KeyInfo, KeyStore

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # long hashes and paths stay on one line

keys_app = typer.Typer(
    help="Agencies' signing keys: create, register, rotate, revoke, list; signature policy.",
    no_args_is_help=True,
)

KeyDbOption = Annotated[
    Path | None,
    typer.Option(help="key database (default: SERVICEPULSE_KEY_DB, else next to the tokens)"),
]
AgencyOption = Annotated[str, typer.Option(help="agency code from the catalog")]


def _error(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _store(db: Path | None) -> KeyStore:
    from api.keys import KeyStore
    from api.settings import ApiSettings

    return KeyStore(db or ApiSettings().key_db_path, cache_seconds=0)


def _check_agency(agency: str) -> None:
    from api.settings import ApiSettings
    from contract.catalog import load_catalog

    settings = ApiSettings()
    catalog = load_catalog(str(settings.catalog) if settings.catalog else None)
    if agency not in catalog.agencies:
        known = ", ".join(sorted(catalog.agencies))
        raise _error(f"unknown agency {agency!r} (catalog has: {known})", 2)


def _new_key_file(path: Path) -> tuple[bytes, Path]:
    """Create a private key at ``path`` (0600) and its public key at ``path.pub``."""
    from contract.keyfiles import create_private_key, public_pem

    key = create_private_key(path)
    pub = path.with_name(path.name + ".pub")
    pem = public_pem(key)
    pub.write_bytes(pem)
    return pem, pub


def _show(info: KeyInfo, what: str) -> None:
    out.print(f"{what} key {info.id} of agency {info.agency}", highlight=False)


@keys_app.command("create")
def keys_create(
    agency: AgencyOption,
    output: Annotated[
        Path, typer.Option("-o", "--out", help="private key file to create (mode 0600)")
    ],
    name: Annotated[str, typer.Option(help="which system holds it, for `keys list`")] = "",
    register: Annotated[
        bool, typer.Option(help="register the public key at once (--no-register: only create)")
    ] = True,
    db: KeyDbOption = None,
) -> None:
    """Create a key pair: the private key in OUT (0600), the public key in OUT.pub.

    Give OUT to the agency's system only; the private key is never printed. Agencies
    that make their own key register just the public half with `keys register`.
    """
    from contract.keyfiles import load_public_key

    _check_agency(agency)
    try:
        _pem, pub = _new_key_file(output)
        if not register:
            out.print(f"created {output} (private, 0600) and {pub}; not registered")
            return
        store = _store(db)
        try:
            info = store.register(agency, load_public_key(pub), name)
        finally:
            store.close()
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    _show(info, f"created {output} (private, mode 0600) and {pub}; registered")


@keys_app.command("register")
def keys_register(
    agency: AgencyOption,
    public_key: Annotated[Path, typer.Option(help="public key file (PEM or base64url raw)")],
    name: Annotated[str, typer.Option(help="which system holds it, for `keys list`")] = "",
    db: KeyDbOption = None,
) -> None:
    """Register a public key an agency made itself."""
    from contract.keyfiles import load_public_key

    _check_agency(agency)
    store = _store(db)
    try:
        info = store.register(agency, load_public_key(public_key), name)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    finally:
        store.close()
    _show(info, "registered")


@keys_app.command("rotate")
def keys_rotate(
    agency: AgencyOption,
    output: Annotated[
        Path | None, typer.Option("-o", "--out", help="new private key file to create (0600)")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="or: a new public key the agency made itself")
    ] = None,
    grace: Annotated[
        str, typer.Option(help="old keys stay valid this long (ISO 8601, e.g. PT1H, PT0S)")
    ] = "PT1H",
    name: Annotated[str, typer.Option(help="which system holds it")] = "",
    db: KeyDbOption = None,
) -> None:
    """Register a new key and revoke the agency's other keys after the grace period."""
    from pydantic import TypeAdapter, ValidationError

    from contract.keyfiles import load_public_key

    if (output is None) == (public_key is None):
        raise _error("give exactly one of --out FILE and --public-key FILE", 2)
    try:
        period = TypeAdapter(timedelta).validate_python(grace)
    except ValidationError as exc:
        raise _error(f"--grace {grace!r} is not an ISO 8601 duration", 2) from exc
    _check_agency(agency)
    store = _store(db)
    try:
        if output is not None:
            _pem, public_key = _new_key_file(output)
        assert public_key is not None  # noqa: S101 - one of the two is given
        new, old = store.rotate(agency, load_public_key(public_key), period, name)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    finally:
        store.close()
    _show(new, "registered")
    for k in old:
        out.print(f"key {k.id} replaced; revoked at {k.revoked_at}", highlight=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="key id from `keys list`")],
    db: KeyDbOption = None,
) -> None:
    """Revoke a key now: batches signed with it are refused (within a few seconds)."""
    store = _store(db)
    try:
        info = store.revoke(key_id)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    finally:
        store.close()
    out.print(f"key {info.id} of agency {info.agency} revoked at {info.revoked_at}")


@keys_app.command("list")
def keys_list(
    agency: Annotated[str | None, typer.Option(help="only this agency's keys")] = None,
    db: KeyDbOption = None,
) -> None:
    """List keys (id, agency, state, name, created, rotated, revoked) and the policies."""
    store = _store(db)
    try:
        infos = store.all(agency)
        policies = store.policies()
    finally:
        store.close()
    now = datetime.now(UTC)
    table = Table()
    table.add_column("id", no_wrap=True, min_width=16)  # ids are copied from here: never cut
    for column in ("agency", "state", "name", "created", "rotated", "revoked"):
        table.add_column(column)
    for i in infos:
        table.add_row(
            i.id,
            i.agency,
            i.state(now),
            i.name,
            i.created_at,
            i.rotated_at or "",
            i.revoked_at or "",
        )
    out.print(table)
    for a, p in sorted(policies.items()):
        if agency is None or a == agency:
            out.print(f"policy of {a}: signatures {p.value}", highlight=False)


@keys_app.command("policy")
def keys_policy(
    agency: AgencyOption,
    policy: Annotated[
        str | None, typer.Argument(help="optional or required; omitted: show it")
    ] = None,
    db: KeyDbOption = None,
) -> None:
    """Show or set whether the agency's batches must be signed."""
    from api.keys import Policy

    if policy is not None and policy not in ("optional", "required"):
        raise _error(f"policy must be optional or required, not {policy!r}", 2)
    _check_agency(agency)
    store = _store(db)
    try:
        if policy is not None:
            store.set_policy(agency, Policy(policy))
        current = store.policy(agency)
    except ServicePulseError as exc:
        raise _error(str(exc)) from exc
    finally:
        store.close()
    out.print(f"policy of {agency}: signatures {current.value}", highlight=False)


def register(app: typer.Typer) -> None:
    """Attach ``keys``."""
    app.add_typer(keys_app, name="keys")
