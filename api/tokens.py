"""API tokens: agency tokens (ingest) and inspector tokens (read-only), kept in SQLite.

A token looks like ``sp_<id>_<secret>``: the id is public (it names the token in
``tokens list`` and in logs), the secret is 32 random bytes. Only the SHA-256 of the
whole token is stored; the token itself is shown once, when it is created. Checking a
token looks the row up by id and compares hashes with :func:`hmac.compare_digest`, so
the time taken does not depend on how much of a guess was right. Tokens are never
logged; log the id.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from contract.errors import ServicePulseError

PREFIX: Final = "sp_"
_ID_BYTES: Final = 6
_SECRET_BYTES: Final = 32

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('agency', 'inspector')),
    agency      TEXT,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
)
"""


class TokenError(ServicePulseError):
    """A token operation failed: unknown id, bad arguments, unreadable database."""


class MissingDatabase(TokenError):
    """There is no token database at the path, and creating one was not asked for."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no token database at {path}")
        self.path = path


class Kind(enum.StrEnum):
    """What a token may do."""

    AGENCY = "agency"  # push events of one agency
    INSPECTOR = "inspector"  # read scorecards and reports of every agency


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token, without its secret."""

    id: str
    kind: Kind
    agency: str | None
    name: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        """Whether the token has not been revoked."""
        return self.revoked_at is None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _parse(token: str) -> str | None:
    """The id part of a well-formed token, else ``None``."""
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(token_id) != 2 * _ID_BYTES or not secret:
        return None
    return token_id


def create_private(path: Path) -> None:
    """Create an empty file readable by its owner only (0600), and its directory (0700)
    if that is missing; an existing file is left as it is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class TokenStore:
    """Tokens in one SQLite file. Thread-safe; the file is opened on first use.

    A missing file is created (mode 0600; SQLite gives its ``-wal`` and ``-shm`` files
    the same mode) only with ``create=True``, so a command run from the wrong directory
    does not quietly start a new, empty database.

    Args:
        path: the SQLite file. ``":memory:"`` for tests.
        cache_seconds: how long a successful :meth:`verify` is remembered, so the hot
            path does not touch SQLite on every request. A revocation takes effect
            within this time in other processes, and at once in this one.
        create: whether a missing file is created (with its directory).
    """

    def __init__(
        self, path: Path | str, cache_seconds: float = 2.0, *, create: bool = True
    ) -> None:
        self._path = str(path)
        self._create = create
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._cache: dict[str, tuple[float, TokenInfo]] = {}

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._path != ":memory:" and not Path(self._path).exists():
                if not self._create:
                    raise MissingDatabase(self._path)
                try:
                    create_private(Path(self._path))
                except OSError as exc:
                    raise TokenError(
                        f"cannot create token database {self._path!r}: {exc.strerror}"
                    ) from exc
            try:
                conn = sqlite3.connect(self._path, check_same_thread=False, timeout=5.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                conn.commit()
            except sqlite3.Error as exc:
                raise TokenError(f"cannot open token database {self._path!r}: {exc}") from exc
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connect()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise TokenError(f"token database {self._path!r}: {exc}") from exc

    def open(self) -> None:
        """Open (with ``create``: make) the database now rather than on first use."""
        with self._db():
            pass

    def close(self) -> None:
        """Close the database connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def create(
        self, kind: Kind, agency: str | None = None, name: str = ""
    ) -> tuple[str, TokenInfo]:
        """Create a token; returns the token (show it once, store it nowhere) and its info.

        Raises:
            TokenError: an agency token without an agency, or an inspector token with one.
        """
        if kind is Kind.AGENCY and not agency:
            raise TokenError("an agency token needs the agency code (--agency CODE)")
        if kind is Kind.INSPECTOR and agency:
            raise TokenError(f"an inspector token reads every agency; drop agency {agency!r}")
        token_id = secrets.token_hex(_ID_BYTES)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        info = TokenInfo(
            id=token_id,
            kind=kind,
            agency=agency,
            name=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            revoked_at=None,
        )
        with self._db() as conn:
            conn.execute(
                "INSERT INTO tokens (id, hash, kind, agency, name, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, _hash(token), kind.value, agency, name, info.created_at),
            )
            conn.commit()
        return token, info

    def list(self) -> list[TokenInfo]:
        """Every token, revoked ones included, oldest first."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT id, kind, agency, name, created_at, revoked_at FROM tokens "
                "ORDER BY created_at, id"
            ).fetchall()
        return [TokenInfo(r[0], Kind(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token by id (idempotent). Raises :class:`TokenError` if unknown."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._db() as conn:
            conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            )
            conn.commit()
            row = conn.execute(
                "SELECT id, kind, agency, name, created_at, revoked_at FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
        if row is None:
            raise TokenError(f"no token with id {token_id!r}")
        self._cache = {k: v for k, v in self._cache.items() if v[1].id != token_id}
        return TokenInfo(row[0], Kind(row[1]), row[2], row[3], row[4], row[5])

    def verify(self, token: str) -> TokenInfo | None:
        """The active token's info, or ``None`` for a malformed, unknown or revoked token."""
        token_id = _parse(token)
        if token_id is None:
            return None
        digest = _hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._db() as conn:
            row = conn.execute(
                "SELECT id, hash, kind, agency, name, created_at, revoked_at "
                "FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[1], digest) or row[6] is not None:
            return None
        info = TokenInfo(row[0], Kind(row[2]), row[3], row[4], row[5], row[6])
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._cache_seconds, info)
        return info
