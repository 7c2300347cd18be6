"""Tamper evidence end to end: signed batches through the real API and broker, the log of
issued reports written by the API and the CLI, `reports verify` and `log verify`, and no
secret in logs or Kafka."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.ledger import (
    Ledger,
    LedgerConflict,
    LedgerError,
    read_records,
    seal,
    transactional_id,
    verify_chain,
)
from api.settings import ApiSettings
from contract.keyfiles import Ed25519PrivateKey, load_private_key
from contract.settings import CommonSettings
from contract.signing import RECORD_KEY_ID
from contract.topics import Topics, TopicSpec
from kafkaport import connect
from kafkaport.topics import ensure_topics
from producers.signing import sign_batch
from tests.fixtures.api import (
    api_settings,
    demo_records,
    event,
    running_api,
    write_transactionally,
)
from tests.fixtures.kafka import TopicFactory, read_topic

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servicepulse", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env(common: CommonSettings, tmp: Path) -> dict[str, str]:
    return {
        "SERVICEPULSE_KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "SERVICEPULSE_TOPIC_PREFIX": common.topic_prefix,
        "SERVICEPULSE_TOKEN_DB": str(tmp / "tokens.db"),
        "SERVICEPULSE_STACK_DIR": str(tmp),
        "SERVICEPULSE_READMODEL_SNAPSHOT": "",
        "SERVICEPULSE_LOG_LEVEL": "DEBUG",
    }


def _records(settings: CommonSettings, topic: str) -> list[Any]:
    """Every committed record of a topic (with headers)."""
    return read_topic(settings, topic, timeout=30)


def _secrets_of(key_file: Path) -> list[str]:
    """Ways a private key could leak as text: its PEM body, raw bytes as base64/hex."""
    from cryptography.hazmat.primitives import serialization

    key = load_private_key(key_file)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem_body = key_file.read_text().splitlines()[1]
    return [
        pem_body,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
    ]


def _assert_nowhere(secrets: list[str], texts: list[str], settings: CommonSettings) -> None:
    topics = Topics(settings.topic_prefix)
    blobs = list(texts)
    for spec in topics.specs():
        for r in _records(settings, spec.name):
            blobs.append(repr((r.key, r.value, r.headers)))
    assert len(blobs) > len(texts)
    for s in secrets:
        assert s and not any(s in b for b in blobs), "a secret reached logs or Kafka"


def _post(
    client: httpx.Client, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    h = {"Content-Type": "application/json", **(headers or {})}
    return client.post("/v1/events", content=body, headers=h)


def test_signed_batches_through_the_api(
    topic_factory: TopicFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    topics, common = topic_factory(3)
    env = _env(common, tmp_path)
    ours, theirs = tmp_path / "minsoc.pem", tmp_path / "minzdrav.pem"
    outputs: list[str] = []
    for agency, path in (("minsoc", ours), ("minzdrav", theirs)):
        made = cli("keys", "create", "--agency", agency, "-o", str(path), env=env)
        assert made.returncode == 0, made.stderr
        outputs += [made.stdout, made.stderr]
    assert oct(ours.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "keys.db").stat().st_mode & 0o777) == "0o600"
    policy = cli("keys", "policy", "--agency", "minsoc", "required", env=env)
    assert policy.returncode == 0 and "required" in policy.stdout, policy.stderr
    key, other = load_private_key(ours), load_private_key(theirs)

    settings = api_settings(common, tmp_path)
    with running_api(settings) as api:
        api.wait_ready()
        token = api.agency_token("minsoc")
        with api.client(token) as c:

            def batch() -> tuple[list[str], bytes]:
                evs = [event(), event()]
                return [e["event_id"] for e in evs], json.dumps(evs).encode()

            good_ids, body = batch()
            signed = sign_batch(body, key)
            r = _post(c, body, signed)
            assert r.status_code == 200 and r.json()["accepted"] == 2, r.text

            refused: dict[str, list[str]] = {}

            def refuse(
                name: str,
                status: int,
                code: str,
                body: bytes,
                ids: list[str],
                h: dict[str, str] | None,
            ) -> None:
                resp = _post(c, body, h)
                assert resp.status_code == status, (name, resp.text)
                assert resp.json()["error"]["code"] == code, (name, resp.text)
                refused[name] = ids

            ids, body2 = batch()
            refuse("unsigned", 401, "signature_required", body2, ids, None)
            ids, body3 = batch()
            # the signature of one body on a changed body: one event's id differs
            changed = body3.replace(ids[1].encode(), str(uuid.uuid4()).encode())
            refuse("changed body", 401, "bad_signature", changed, ids, sign_batch(body3, key))
            resp = _post(c, body, signed)  # the accepted batch again, as is
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["code"] == "replayed_signature"
            ids, body4 = batch()
            refuse("another agency's key", 403, "foreign_key", body4, ids, sign_batch(body4, other))
            ids, body5 = batch()
            stale = sign_batch(body5, key, timestamp=int(time.time()) - 3600)
            refuse("stale", 401, "stale_signature", body5, ids, stale)

            kid = signed["X-ServicePulse-Key-Id"]
            listed = cli("keys", "list", env=env)
            assert kid in listed.stdout and "active" in listed.stdout
            revoked = cli("keys", "revoke", kid, env=env)
            assert revoked.returncode == 0, revoked.stderr
            outputs += [listed.stdout, revoked.stdout, revoked.stderr]
            ids, body6 = batch()
            refuse("revoked key", 401, "revoked_key", body6, ids, sign_batch(body6, key))

            metrics = c.get("/metrics").text
            assert 'servicepulse_api_signature_checks_total{result="verified"} 1.0' in metrics

    records = _records(common, topics.events)
    written = {json.loads(r.value)["event_id"]: r for r in records}
    assert set(written) == set(good_ids), "only the verified batch was produced"
    assert len(records) == len(good_ids), "the replay produced nothing"
    for r in written.values():
        assert (RECORD_KEY_ID, kid.encode()) in list(r.headers)
        assert kid not in r.value.decode(), "the key id rides in headers, not the body"
    for name, ids in refused.items():
        assert not set(ids) & set(written), name

    secrets = [*_secrets_of(ours), *_secrets_of(theirs), token, token.split("_", 2)[2]]
    _assert_nowhere(secrets, [caplog.text, *outputs], common)


def _copy_topic(common: CommonSettings, source: str, target: str, order: list[int]) -> None:
    kafka = connect(common)
    ensure_topics(kafka, [TopicSpec(target, 1)])
    values = [v for _o, v in read_records(common, source)]
    producer = kafka.producer(client_id="test-copy")
    try:
        for i in order:
            producer.send(target, values[i], partition=0)
        assert producer.flush(30) == 0
    finally:
        producer.close(5)


def test_issued_reports_are_logged_and_verifiable(
    topic_factory: TopicFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    topics, common = topic_factory(3)
    write_transactionally(common, topics.aggregates, demo_records(["2026-11-02", "2026-11-03"]))
    env = _env(common, tmp_path)
    settings = api_settings(common, tmp_path, ledger_close_interval="PT0S")
    params = {"from": "2026-11-01", "to": "2026-11-30"}
    files: dict[str, Path] = {}
    with running_api(settings) as api:
        api.wait_ready()
        token = api.inspector_token()
        with api.client(token) as c:
            for fmt in ("html", "json", "csv"):
                r = c.get("/v1/reports/period", params={**params, "format": fmt})
                assert r.status_code == 200, r.text
                assert r.headers["X-ServicePulse-Log-Seq"].isdigit()
                files[fmt] = tmp_path / f"report.{fmt}"
                files[fmt].write_bytes(r.content)
            metrics = c.get("/metrics").text
            assert 'servicepulse_api_reports_issued_total{format="html"} 1.0' in metrics
    page = files["html"].read_bytes()
    assert b"servicepulse reports verify" in page and b"SHA-256" in page

    for fmt, path in files.items():
        ok = cli("reports", "verify", str(path), env=env)
        assert ok.returncode == 0, (fmt, ok.stdout, ok.stderr)
        assert "is an issued report" in ok.stdout and "via api" in ok.stdout
        data = path.read_bytes()
        pos = len(data) // 2
        bad = tmp_path / f"changed.{fmt}"
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x20]) + data[pos + 1 :])
        refused = cli("reports", "verify", str(bad), env=env)
        assert refused.returncode == 1 and "NOT an issued report" in refused.stderr, fmt

    out = tmp_path / "cli.csv"
    made = cli(
        "report",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--format",
        "csv",
        "-o",
        str(out),
        env=env,
    )
    assert made.returncode == 0, made.stderr
    by_cli = cli("reports", "verify", str(out), env=env)
    assert by_cli.returncode == 0 and "via cli" in by_cli.stdout, by_cli.stderr

    closed = cli("log", "close-days", env=env)
    assert closed.returncode == 0 and "2 days closed" in closed.stdout, (
        closed.stdout + closed.stderr
    )
    again = cli("log", "close-days", env=env)
    assert again.returncode == 0 and "0 days closed" in again.stdout, again.stderr

    verified = cli("log", "verify", env=env)
    assert verified.returncode == 0 and "6 entries" in verified.stdout, (
        verified.stdout + verified.stderr
    )
    head = verified.stdout.split("hash ")[-1].strip()
    assert cli("log", "verify", "--expect", head, env=env).returncode == 0
    shown = cli("log", "show", env=env)
    assert "day_close" in shown.stdout and "report" in shown.stdout

    n = 6
    for name, order in (
        ("removed", [i for i in range(n) if i != 2]),
        ("reordered", [0, 2, 1, 3, 4, 5]),
        ("cut at the start", list(range(1, n))),
    ):
        target = f"{topics.prefix}.ledger-{name.replace(' ', '-')}"
        _copy_topic(common, topics.ledger, target, order)
        broken = cli("log", "verify", "--topic", target, env=env)
        assert broken.returncode == 1 and "does NOT verify" in broken.stderr, name
        # a report recorded in a tampered log is not vouched for
        doubt = cli("reports", "verify", str(files["json"]), "--topic", target, env=env)
        assert doubt.returncode == 1, name

    # the last entry dropped: the chain itself is sound, the published head is missing
    cut = f"{topics.prefix}.ledger-cut-at-the-end"
    _copy_topic(common, topics.ledger, cut, list(range(n - 1)))
    assert cli("log", "verify", "--topic", cut, env=env).returncode == 0
    short = cli("log", "verify", "--topic", cut, "--expect", head, env=env)
    assert short.returncode == 1 and "cut short" in short.stderr

    key_file = ApiSettings(token_db=tmp_path / "tokens.db").ledger_key_path
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    texts = [caplog.text, made.stdout, made.stderr, closed.stdout, closed.stderr, verified.stdout]
    _assert_nowhere([*_secrets_of(key_file), token], texts, common)


def test_two_writers_never_fork_the_chain(topic_factory: TopicFactory) -> None:
    topics, common = topic_factory(3)
    key = Ed25519PrivateKey.generate()
    txn = transactional_id(topics.prefix)
    a = Ledger(common, topics.ledger, key, txn)
    b = Ledger(common, topics.ledger, key, txn)
    try:
        for i in range(3):
            # each writer's append fences the other, which must reopen and reread the tail
            a.append("report", {"sha256": f"{2 * i:064x}"})
            b.append("report", {"sha256": f"{2 * i + 1:064x}"})
        chain = verify_chain(read_records(common, topics.ledger), key.public_key())
        assert chain.ok, chain.problems
        assert [e.seq for e in chain.entries] == list(range(6))
        assert [e.body["sha256"] for e in chain.entries] == [f"{i:064x}" for i in range(6)]
        # a decision taken on a tail that another writer extended meanwhile is refused
        head = chain.entries[-1].hash
        a.append("report", {"sha256": "a" * 64}, after=head)
        with pytest.raises(LedgerConflict):
            b.append("day_close", {"day": "2026-11-02"}, after=head)
    finally:
        a.close()
        b.close()
    chain = verify_chain(read_records(common, topics.ledger), key.public_key())
    assert chain.ok and [e.kind for e in chain.entries][-1] == "report"
    assert len(chain.entries) == 7

    # an entry someone with write access but without the key appended: nobody chains on
    forger = Ed25519PrivateKey.generate()
    last = chain.entries[-1]
    _entry, forged = seal(
        forger, last.seq + 1, last.hash, "report", {"sha256": "b" * 64}, datetime.now(UTC)
    )
    producer = connect(common).producer(client_id="test-forger")
    producer.send(topics.ledger, forged, partition=0)
    assert producer.flush(30) == 0
    producer.close(5)
    c = Ledger(common, topics.ledger, key, txn)
    try:
        with pytest.raises(LedgerError, match="broken at offset"):
            c.append("report", {"sha256": "c" * 64})
    finally:
        c.close()


def test_the_api_closes_due_days_in_the_log(topic_factory: TopicFactory, tmp_path: Path) -> None:
    topics, common = topic_factory(3)
    write_transactionally(common, topics.aggregates, demo_records(["2026-11-02", "2026-11-03"]))
    settings = api_settings(common, tmp_path, ledger_close_interval="PT1S")
    with running_api(settings):
        deadline = time.monotonic() + 60
        days: list[str] = []
        while time.monotonic() < deadline and len(days) < 2:
            time.sleep(0.5)
            chain = verify_chain(
                read_records(common, topics.ledger),
                load_private_key(settings.ledger_key_path).public_key(),
            )
            assert chain.ok, chain.problems
            days = [e.body["day"] for e in chain.entries if e.kind == "day_close"]
        time.sleep(2.5)  # two more rounds: a day already closed is not closed again
    chain = verify_chain(
        read_records(common, topics.ledger), load_private_key(settings.ledger_key_path).public_key()
    )
    assert [e.body["day"] for e in chain.entries] == ["2026-11-02", "2026-11-03"]


def test_the_producer_librarys_https_sink_signs_batches(
    topic_factory: TopicFactory, tmp_path: Path
) -> None:
    from api.keys import KeyStore, Policy
    from producers.signing import BatchSigner
    from producers.simulator.sinks import HttpSink

    _topics, common = topic_factory(3)
    settings = api_settings(common, tmp_path)
    key = Ed25519PrivateKey.generate()
    store = KeyStore(settings.key_db_path, cache_seconds=0)
    store.register("minsoc", key.public_key())
    store.set_policy("minsoc", Policy.REQUIRED)
    store.close()
    with running_api(settings) as api:
        api.wait_ready()
        token = api.agency_token("minsoc")
        signed = HttpSink(api.url, default_token=token, signers={"minsoc": BatchSigner(key)})
        unsigned = HttpSink(api.url, default_token=token)
        for sink in (signed, unsigned):
            for _ in range(3):
                sink.send(event())
            sink.close()
    assert signed.stats.delivered == 3 and not signed.stats.rejected
    assert unsigned.stats.delivered == 0 and unsigned.stats.rejected["http_401"] == 3


def test_without_kafka_a_report_is_not_issued(tmp_path: Path) -> None:
    from api.ledger import LedgerError, issue
    from servicepulse.stack import free_port

    nowhere = CommonSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    timeout = 2.0
    ledger = Ledger(nowhere, "x.ledger", Ed25519PrivateKey.generate(), "t", timeout=timeout)
    start = time.monotonic()
    with pytest.raises(LedgerError):
        issue(ledger, b"{}", "json", {}, "cli")
    ledger.close()
    # one attempt bounded by the timeout, then the deadline (a bound, not a speed: x10)
    assert time.monotonic() - start < 10 * timeout, "an unreachable Kafka held the request"
