"""Agencies' registered signing keys and their signature policy, kept in SQLite.

Only public keys are stored (the raw 32 bytes, base64url); the file is created with
mode 0600 all the same, because whoever can write it can register a key. A key is
``active`` until it is revoked; rotating registers a new key and revokes the old one at
the end of a grace period (``revoked_at`` in the future), so senders can switch over
without a refused batch. The policy of an agency is ``optional`` (the default: signed
and unsigned batches are accepted, a signed one must verify) or ``required``.

Lookups are cached for ``cache_seconds`` like tokens: a revocation takes effect at once
in the process that made it and within that time in a running API.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from contract.errors import ServicePulseError
from contract.keyfiles import Ed25519PublicKey, public_raw
from contract.signing import b64decode, b64encode, key_id

_SCHEMA: Final = (
    """
CREATE TABLE IF NOT EXISTS signing_keys (
    id          TEXT PRIMARY KEY,
    agency      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    rotated_at  TEXT,
    replaced_by TEXT,
    revoked_at  TEXT
)
""",
    """
CREATE TABLE IF NOT EXISTS signature_policy (
    agency      TEXT PRIMARY KEY,
    policy      TEXT NOT NULL CHECK (policy IN ('optional', 'required')),
    updated_at  TEXT NOT NULL
)
""",
)


class SigningKeyError(ServicePulseError):
    """A key operation failed: unknown id, a key of another agency, unreadable database."""


class Policy(enum.StrEnum):
    """Whether an agency's batches must be signed."""

    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A registered public key."""

    id: str
    agency: str
    public_key: bytes
    name: str
    created_at: str
    rotated_at: str | None
    replaced_by: str | None
    revoked_at: str | None

    def active(self, now: datetime) -> bool:
        """Whether the key may sign at ``now`` (not revoked, or revoked in the future)."""
        return self.revoked_at is None or datetime.fromisoformat(self.revoked_at) > now

    def state(self, now: datetime) -> str:
        """``active`` or ``revoked``."""
        return "active" if self.active(now) else "revoked"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _row(r: tuple[str, ...]) -> KeyInfo:
    raw = b64decode(r[2]) or b""
    return KeyInfo(r[0], r[1], raw, r[3], r[4], r[5], r[6], r[7])


_COLUMNS: Final = "id, agency, public_key, name, created_at, rotated_at, replaced_by, revoked_at"


class KeyStore:
    """Public keys and policies in one SQLite file (mode 0600). Thread-safe.

    Args:
        path: the SQLite file (its directory is created). ``":memory:"`` for tests.
        cache_seconds: how long a lookup is remembered (see the module docstring).
    """

    def __init__(self, path: Path | str, cache_seconds: float = 2.0) -> None:
        self._path = str(path)
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._keys: dict[str, tuple[float, KeyInfo | None]] = {}
        self._policies: dict[str, tuple[float, Policy]] = {}

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                if self._path != ":memory:":
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                    # create it 0600 before SQLite opens it (SQLite would use the umask)
                    os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
                conn = sqlite3.connect(self._path, check_same_thread=False, timeout=5.0)
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.commit()
            except (OSError, sqlite3.Error) as exc:
                raise SigningKeyError(f"cannot open key database {self._path!r}: {exc}") from exc
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connect()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise SigningKeyError(f"key database {self._path!r}: {exc}") from exc

    def close(self) -> None:
        """Close the database connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _forget(self) -> None:
        self._keys.clear()
        self._policies.clear()

    # -- keys ---------------------------------------------------------------------------------

    def register(self, agency: str, public_key: Ed25519PublicKey, name: str = "") -> KeyInfo:
        """Register a public key for ``agency``; returns it (idempotent for the same agency).

        Raises:
            SigningKeyError: the key is registered for another agency already.
        """
        raw = public_raw(public_key)
        kid = key_id(raw)
        created = _now().isoformat()
        with self._db() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM signing_keys WHERE id = ?",  # noqa: S608 - constant
                (kid,),
            ).fetchone()
            if row is not None:
                info = _row(row)
                if info.agency != agency:
                    raise SigningKeyError(f"key {kid} is registered for agency {info.agency!r}")
                return info
            conn.execute(
                "INSERT INTO signing_keys (id, agency, public_key, name, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (kid, agency, b64encode(raw), name, created),
            )
            conn.commit()
        self._forget()
        return KeyInfo(kid, agency, raw, name, created, None, None, None)

    def get(self, kid: str, *, cached: bool = True) -> KeyInfo | None:
        """The key with this id (active or not), or ``None``."""
        now = time.monotonic()
        hit = self._keys.get(kid) if cached else None
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._db() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM signing_keys WHERE id = ?",  # noqa: S608 - constant
                (kid,),
            ).fetchone()
        info = _row(row) if row is not None else None
        if self._cache_seconds > 0:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[kid] = (now + self._cache_seconds, info)
        return info

    def all(self, agency: str | None = None) -> list[KeyInfo]:
        """Every key (of one agency), revoked ones included, oldest first."""
        where, args = ("WHERE agency = ?", (agency,)) if agency else ("", ())
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM signing_keys {where} ORDER BY created_at, id",  # noqa: S608
                args,
            ).fetchall()
        return [_row(r) for r in rows]

    def revoke(self, kid: str, *, at: datetime | None = None) -> KeyInfo:
        """Revoke a key now (or at ``at``); an earlier revocation stays. Raises if unknown."""
        when = (at or _now()).isoformat()
        with self._db() as conn:
            conn.execute(
                "UPDATE signing_keys SET revoked_at = ? "
                "WHERE id = ? AND (revoked_at IS NULL OR revoked_at > ?)",
                (when, kid, when),
            )
            conn.commit()
        self._forget()
        info = self.get(kid, cached=False)
        if info is None:
            raise SigningKeyError(f"no signing key with id {kid!r}")
        return info

    def rotate(
        self, agency: str, new_key: Ed25519PublicKey, grace: timedelta, name: str = ""
    ) -> tuple[KeyInfo, list[KeyInfo]]:
        """Register ``new_key`` and revoke the agency's other active keys after ``grace``.

        Returns the new key and the keys it replaced.
        """
        new = self.register(agency, new_key, name)
        now = _now()
        old = [k for k in self.all(agency) if k.id != new.id and k.active(now)]
        at = (now + grace).isoformat()
        with self._db() as conn:
            for k in old:
                conn.execute(
                    "UPDATE signing_keys SET rotated_at = ?, replaced_by = ?, "
                    "revoked_at = CASE WHEN revoked_at IS NULL OR revoked_at > ? THEN ? "
                    "ELSE revoked_at END WHERE id = ?",
                    (now.isoformat(), new.id, at, at, k.id),
                )
            conn.commit()
        self._forget()
        return new, [i for k in old if (i := self.get(k.id, cached=False)) is not None]

    # -- policy -------------------------------------------------------------------------------

    def set_policy(self, agency: str, policy: Policy) -> None:
        """Set whether ``agency``'s batches must be signed."""
        with self._db() as conn:
            conn.execute(
                "INSERT INTO signature_policy (agency, policy, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(agency) DO UPDATE SET policy = excluded.policy, "
                "updated_at = excluded.updated_at",
                (agency, policy.value, _now().isoformat()),
            )
            conn.commit()
        self._forget()

    def policy(self, agency: str) -> Policy:
        """The agency's policy (``optional`` unless set)."""
        now = time.monotonic()
        hit = self._policies.get(agency)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._db() as conn:
            row = conn.execute(
                "SELECT policy FROM signature_policy WHERE agency = ?", (agency,)
            ).fetchone()
        policy = Policy(row[0]) if row is not None else Policy.OPTIONAL
        if self._cache_seconds > 0:
            self._policies[agency] = (now + self._cache_seconds, policy)
        return policy

    def policies(self) -> dict[str, Policy]:
        """Every agency with a policy set."""
        with self._db() as conn:
            rows = conn.execute("SELECT agency, policy FROM signature_policy").fetchall()
        return {a: Policy(p) for a, p in rows}
