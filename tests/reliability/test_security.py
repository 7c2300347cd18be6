"""Security claims of docs/SECURITY.md that hold without a broker: tokens at rest, the
failed-authentication limiter, placeholder secrets in production.

The claims that need the running stack (no token or personal data in logs or on
/metrics, agency isolation, guessed tokens answered 429, revocation from another
process) are checked over HTTP in test_bad_input.py and test_faults.py.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from api.settings import ApiSettings
from api.tokens import FailureLimiter, Kind, TokenStore
from contract.errors import ConfigError
from contract.settings import CommonSettings
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


def test_failure_limiter_blocks_a_client_and_forgives_slowly() -> None:
    lim = FailureLimiter(burst=3, rate=0.5)
    for i in range(3):
        assert lim.wait("a", now=100.0 + i * 0.01) == 0
        lim.failed("a", now=100.0 + i * 0.01)
    wait = lim.wait("a", now=100.05)
    assert 1.5 < wait <= 2.0  # one failure refills in 2 s
    assert lim.wait("b", now=100.05) == 0  # other clients are not affected
    assert lim.wait("a", now=102.1) == 0


def test_failure_limiter_memory_is_bounded() -> None:
    lim = FailureLimiter(burst=5, rate=1.0, max_clients=100)
    for i in range(10_000):
        lim.failed(f"10.0.{i // 256}.{i % 256}", now=1.0)
    assert len(lim._buckets) <= 100


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
            kafka_sasl_password=password,  # type: ignore[arg-type]
        )
    ok = settings_class(
        mode="production",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_password="a-real-Secret-8f2c",  # type: ignore[arg-type]
    )
    assert ok.kafka_config()["sasl_plain_password"] == "a-real-Secret-8f2c"
