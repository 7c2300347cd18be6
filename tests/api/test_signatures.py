"""Signed batches: the signer (producers/signing.py) against the verifier (api/signatures.py).

Pure logic with a real SQLite key store in memory and an injected clock; the HTTP path
through the real API and broker is in test_tamper.py.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from api.errors import Unavailable
from api.keys import KeyStore, Policy, SigningKeyError
from api.signatures import (
    BadSignature,
    ForeignKey,
    MalformedSignature,
    ReplayedSignature,
    RevokedKey,
    SignatureRequired,
    StaleSignature,
    UnknownKey,
    Verifier,
    build_signature_metrics,
)
from contract.errors import ConfigError
from contract.keyfiles import (
    Ed25519PrivateKey,
    create_private_key,
    key_id_of,
    load_private_key,
    public_pem,
)
from contract.signing import KEY_ID_HEADER, NONCE_HEADER, RECORD_KEY_ID, message
from producers.signing import BatchSigner, sign_batch

NOW = 1_796_000_000.0
BODY = json.dumps(
    [{"event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b", "agency": "minsoc"}]
).encode()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


Setup = tuple[Verifier, KeyStore, Clock, CollectorRegistry]


@pytest.fixture
def setup() -> Setup:
    store = KeyStore(":memory:", cache_seconds=0)
    registry = CollectorRegistry()
    clock = Clock()
    verifier = Verifier(store, 300.0, 1000, build_signature_metrics(registry), clock)
    return verifier, store, clock, registry


def _headers(body: bytes, key: Ed25519PrivateKey) -> dict[str, str]:
    h = sign_batch(body, key, timestamp=int(NOW))
    return {k.lower(): v for k, v in {**h, "Content-Type": "application/json"}.items()}


def _count(registry: CollectorRegistry, result: str) -> float:
    v = registry.get_sample_value("servicepulse_api_signature_checks_total", {"result": result})
    return v or 0.0


def test_the_signed_message_is_exactly_as_documented() -> None:
    msg = message(
        "0123456789abcdef", 1796000000, "n" * 22, "Application/JSON; charset=utf-8", "ab" * 32
    )
    assert msg == (
        b"servicepulse-batch-v1\n0123456789abcdef\n1796000000\n"
        + b"n" * 22
        + b"\napplication/json\n"
        + b"ab" * 32
    )


def test_a_signed_batch_verifies_and_names_its_key(setup: Setup) -> None:
    verifier, store, _clock, registry = setup
    key = Ed25519PrivateKey.generate()
    store.register("minsoc", key.public_key())
    ok = verifier.check(_headers(BODY, key), BODY, "minsoc")
    assert ok is not None and ok.key_id == key_id_of(key)
    assert ok.record_headers == [(RECORD_KEY_ID, key_id_of(key).encode())]
    assert _count(registry, "verified") == 1


def test_a_changed_body_a_changed_header_or_content_type_is_refused(setup: Setup) -> None:
    verifier, store, _clock, registry = setup
    key = Ed25519PrivateKey.generate()
    store.register("minsoc", key.public_key())
    headers = _headers(BODY, key)
    changed = BODY.replace(b"minsoc", b"minsod")
    with pytest.raises(BadSignature):
        verifier.check(headers, changed, "minsoc")
    for name, value in (
        ("x-servicepulse-timestamp", str(int(NOW) - 1)),
        ("x-servicepulse-nonce", "A" * 22),
        ("content-type", "application/x-ndjson"),
    ):
        with pytest.raises(BadSignature):
            verifier.check({**headers, name: value}, BODY, "minsoc")
    assert _count(registry, "bad_signature") == 4
    # the refused attempts did not use up the nonce: the genuine batch still passes once
    assert verifier.check(headers, BODY, "minsoc") is not None


def test_a_replayed_batch_is_refused(setup: Setup) -> None:
    verifier, store, clock, _ = setup
    key = Ed25519PrivateKey.generate()
    store.register("minsoc", key.public_key())
    headers = _headers(BODY, key)
    assert verifier.check(headers, BODY, "minsoc") is not None
    clock.now += 299
    with pytest.raises(ReplayedSignature):
        verifier.check(headers, BODY, "minsoc")
    clock.now += 2  # now outside the window: refused as stale, still not accepted
    with pytest.raises(StaleSignature):
        verifier.check(headers, BODY, "minsoc")


def test_a_batch_answered_503_may_be_resent_as_is(setup: Setup) -> None:
    verifier, store, _clock, _ = setup
    key = Ed25519PrivateKey.generate()
    store.register("minsoc", key.public_key())
    headers = _headers(BODY, key)
    with pytest.raises(Unavailable), verifier.verified(headers, BODY, "minsoc"):
        raise Unavailable("Kafka down", retry_after=5)
    with verifier.verified(headers, BODY, "minsoc") as ok:
        assert ok is not None
    with pytest.raises(ReplayedSignature), verifier.verified(headers, BODY, "minsoc"):
        pass


def test_revoked_unknown_and_another_agencys_keys_are_refused(setup: Setup) -> None:
    verifier, store, _clock, registry = setup
    ours, theirs, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    store.register("minsoc", ours.public_key())
    store.register("minzdrav", theirs.public_key())
    store.revoke(key_id_of(ours), at=datetime.fromtimestamp(NOW - 1, UTC))
    with pytest.raises(RevokedKey):
        verifier.check(_headers(BODY, ours), BODY, "minsoc")
    with pytest.raises(ForeignKey) as foreign:
        verifier.check(_headers(BODY, theirs), BODY, "minsoc")
    assert foreign.value.status == 403
    with pytest.raises(UnknownKey):
        verifier.check(_headers(BODY, stranger), BODY, "minsoc")
    assert [_count(registry, r) for r in ("revoked_key", "foreign_key", "unknown_key")] == [1, 1, 1]


def test_rotation_keeps_the_old_key_for_the_grace_period(setup: Setup) -> None:
    _verifier, store, _clock, _ = setup
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    store.register("minsoc", old.public_key())
    info, replaced = store.rotate("minsoc", new.public_key(), timedelta(hours=1))
    assert [k.id for k in replaced] == [key_id_of(old)]
    now = datetime.now(UTC)
    got = store.get(key_id_of(old))
    assert got is not None and got.active(now) and not got.active(now + timedelta(hours=2))
    assert got.replaced_by == info.id and got.rotated_at is not None
    with pytest.raises(SigningKeyError):
        store.register("minzdrav", new.public_key())  # one key, one agency


def test_policy_required_refuses_unsigned_and_optional_allows_it(setup: Setup) -> None:
    verifier, store, _clock, registry = setup
    assert verifier.check({"content-type": "application/json"}, BODY, "minsoc") is None
    store.set_policy("minsoc", Policy.REQUIRED)
    with pytest.raises(SignatureRequired):
        verifier.check({"content-type": "application/json"}, BODY, "minsoc")
    assert verifier.check({}, BODY, "minzdrav") is None  # another agency's policy
    assert _count(registry, "unsigned") == 2 and _count(registry, "signature_required") == 1


def test_partial_or_malformed_headers_are_refused(setup: Setup) -> None:
    verifier, store, _clock, _ = setup
    key = Ed25519PrivateKey.generate()
    store.register("minsoc", key.public_key())
    headers = _headers(BODY, key)
    partial = {k: v for k, v in headers.items() if k != NONCE_HEADER.lower()}
    for bad in (
        partial,
        {**headers, KEY_ID_HEADER.lower(): "XYZ"},
        {**headers, "x-servicepulse-signature": "!!"},
        {**headers, "x-servicepulse-timestamp": "-5"},
    ):
        with pytest.raises(MalformedSignature):
            verifier.check(bad, BODY, "minsoc")


def test_the_nonce_memory_is_bounded_and_fails_closed() -> None:
    store = KeyStore(":memory:", cache_seconds=0)
    clock = Clock()
    verifier = Verifier(store, 300.0, 3, build_signature_metrics(CollectorRegistry()), clock)
    key = Ed25519PrivateKey.generate()
    store.register("minsoc", key.public_key())
    for _ in range(3):
        verifier.check(_headers(BODY, key), BODY, "minsoc")
    with pytest.raises(Unavailable):
        verifier.check(_headers(BODY, key), BODY, "minsoc")
    clock.now += 601  # remembered nonces expired: room again
    h = {k.lower(): v for k, v in sign_batch(BODY, key, timestamp=int(clock.now)).items()}
    assert verifier.check({**h, "content-type": "application/json"}, BODY, "minsoc") is not None


def test_key_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k" / "minsoc.pem"
    key = create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id_of(load_private_key(path)) == key_id_of(key)
    with pytest.raises(ConfigError):
        create_private_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_private_key(path)
    signer = BatchSigner(key)
    assert "PRIVATE" not in repr(signer) and key_id_of(key) in repr(signer)
    assert b"PUBLIC KEY" in public_pem(key)


@pytest.mark.slow
def test_keys_command_creates_rotates_and_revokes(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "SERVICEPULSE_TOKEN_DB": str(tmp_path / "tokens.db")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "servicepulse", "keys", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = tmp_path / "k1.pem"
    assert cli("create", "--agency", "minsoc", "-o", str(first)).returncode == 0
    assert cli("create", "--agency", "minsoc", "-o", str(first)).returncode == 1  # kept
    assert cli("create", "--agency", "nosuch", "-o", str(tmp_path / "x.pem")).returncode == 2
    rotated = cli("rotate", "--agency", "minsoc", "-o", str(tmp_path / "k2.pem"), "--grace", "PT0S")
    assert rotated.returncode == 0, rotated.stderr
    store = KeyStore(tmp_path / "keys.db", cache_seconds=0)
    old, new = (store.get(key_id_of(load_private_key(p))) for p in (first, tmp_path / "k2.pem"))
    assert old is not None and new is not None
    assert old.replaced_by == new.id and not old.active(datetime.now(UTC) + timedelta(seconds=1))
    assert new.active(datetime.now(UTC))
    assert cli("policy", "--agency", "minsoc").stdout.strip().endswith("optional")
    assert cli("policy", "--agency", "minsoc", "required").returncode == 0
    assert store.policy("minsoc") is Policy.REQUIRED
    assert cli("revoke", new.id).returncode == 0
    assert cli("revoke", "0" * 16).returncode == 1
    store.close()
    new_after = KeyStore(tmp_path / "keys.db", cache_seconds=0).get(new.id)
    assert new_after is not None and not new_after.active(datetime.now(UTC) + timedelta(seconds=1))
