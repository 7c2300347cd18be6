"""Security claims of docs/SECURITY.md that hold without a broker: tokens at rest, the
failed-authentication limiter, placeholder secrets in production.

The claims that need the running stack (no token or personal data in logs or on
/metrics, agency isolation, guessed tokens answered 429, revocation from another
process) are checked over HTTP in test_bad_input.py and test_faults.py.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from api.ratelimit import TokenBuckets
from api.readmodel import ReadModel
from api.settings import ApiSettings
from api.tokens import Kind, TokenStore
from contract.catalog import load_catalog
from contract.errors import ConfigError
from contract.settings import CommonSettings
from contract.topics import Topics
from processors.settings import ProcessorSettings

pytestmark = pytest.mark.reliability


def test_tokens_are_stored_as_hashes_only(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    store = TokenStore(db, cache_seconds=0)
    tokens = [store.create(Kind.AGENCY, "minsoc", "a")[0], store.create(Kind.INSPECTOR)[0]]
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    rows = sqlite3.connect(db).execute("SELECT id, hash FROM tokens").fetchall()
    for token in tokens:
        secret = token.split("_", 2)[2]
        assert secret.encode() not in raw, "a token secret is stored in clear"
        assert hashlib.sha256(token.encode()).hexdigest() in {h for _, h in rows}
        # 256 random bits: 32 bytes as URL-safe base64
        assert len(secret) >= 43

    store = TokenStore(db, cache_seconds=0)
    good = tokens[0]
    assert store.verify(good) is not None
    assert store.verify(good[:-1] + ("A" if good[-1] != "A" else "B")) is None
    assert store.verify(good + "x") is None
    assert store.verify(good.replace("sp_", "xx_")) is None
    store.revoke(good.split("_")[1])
    assert store.verify(good) is None
    store.close()


def test_token_database_and_snapshot_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Issue 12, item 8: `tokens.db` and the read-model snapshot were mode 0644."""
    old_umask = os.umask(0o022)  # the usual umask, which made them world-readable
    try:
        _check_private_files(tmp_path)
    finally:
        os.umask(old_umask)


def _check_private_files(tmp_path: Path) -> None:
    db = tmp_path / "stack" / "api-data" / "tokens.db"
    store = TokenStore(db, cache_seconds=0)
    token = store.create(Kind.AGENCY, "minsoc")[0]
    assert store.verify(token) is not None
    files = [p for p in db.parent.iterdir() if p.name.startswith("tokens.db")]
    assert db in files
    for p in files:  # the database and SQLite's -wal and -shm beside it
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert db.parent.stat().st_mode & 0o777 == 0o700
    store.close()

    snapshot = tmp_path / "model" / "readmodel.snapshot"
    model = ReadModel(CommonSettings(), Topics("unit"), load_catalog(), snapshot=snapshot)
    model.save_snapshot()
    model.save_snapshot()  # a second time: replaced, still private
    assert snapshot.stat().st_mode & 0o777 == 0o600
    assert snapshot.parent.stat().st_mode & 0o777 == 0o700


def test_failure_limiter_blocks_a_client_and_forgives_slowly() -> None:
    lim = TokenBuckets(burst=3, rate=0.5)
    for i in range(3):
        assert lim.wait("a", now=100.0 + i * 0.01) == 0
        lim.spend("a", now=100.0 + i * 0.01)
    wait = lim.wait("a", now=100.05)
    assert 1.5 < wait <= 2.0  # one failure refills in 2 s
    assert lim.wait("b", now=100.05) == 0  # other clients are not affected
    assert lim.wait("a", now=102.1) == 0


def test_failure_limiter_memory_is_bounded() -> None:
    lim = TokenBuckets(burst=5, rate=1.0, max_keys=100)
    for i in range(10_000):
        lim.spend(f"10.0.{i // 256}.{i % 256}", now=1.0)
    assert 0 < len(lim) <= 100


@pytest.mark.parametrize("settings_class", [CommonSettings, ApiSettings, ProcessorSettings])
@pytest.mark.parametrize("password", [None, "", "changeme", "secret"])
def test_production_refuses_a_placeholder_kafka_password(
    settings_class: type[CommonSettings], password: str | None
) -> None:
    with pytest.raises(ConfigError, match="SERVICEPULSE_KAFKA_SASL_PASSWORD"):
        settings_class(
            mode="production",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="servicepulse-api",
            kafka_sasl_password=password,
        )
    ok = settings_class(
        mode="production",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_password="a-real-Secret-8f2c",
    )
    assert ok.kafka_config()["sasl_plain_password"] == "a-real-Secret-8f2c"
