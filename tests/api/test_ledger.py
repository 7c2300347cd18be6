"""The log of issued numbers, pure logic: chain verification, report digests, day closes.

Entries are sealed with a real Ed25519 key and verified as `servicepulse log verify`
does; the Kafka writer and the commands are exercised in test_tamper.py.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.issuing import IssuingService
from api.ledger import (
    GENESIS,
    Entry,
    day_close_bodies,
    deployment_key,
    html_digest,
    issue,
    seal,
    verify_chain,
    verify_report,
)
from api.readmodel import ReadModel
from api.report_render import render
from api.reports import build_report
from api.scorecard import Scorer
from api.settings import ApiSettings
from contract import aggregates as agg
from contract.catalog import load_catalog
from contract.errors import ConfigError
from contract.keyfiles import Ed25519PrivateKey
from contract.methodology import load_methodology
from contract.settings import CommonSettings
from contract.topics import Topics
from tests.fixtures.api import demo_records

KEY = Ed25519PrivateKey.generate()
CATALOG = load_catalog()


class MemoryLog:
    """Appends sealed entries to a list, as Ledger does to the topic (no Kafka)."""

    def __init__(self, key: Ed25519PrivateKey = KEY) -> None:
        self.key = key
        self.records: list[tuple[int, bytes]] = []
        self.entries: list[Entry] = []

    def append(self, kind: str, body: dict[str, Any], now: datetime | None = None) -> Entry:
        tail = self.entries[-1] if self.entries else None
        seq, prev = (tail.seq + 1, tail.hash) if tail else (0, GENESIS)
        entry, value = seal(self.key, seq, prev, kind, body, now or datetime.now(UTC))
        self.records.append((2 * len(self.records), value))  # commit markers take offsets
        self.entries.append(entry)
        return entry


def _log(n: int) -> MemoryLog:
    log = MemoryLog()
    for i in range(n):
        log.append("report", {"sha256": f"{i:064x}", "format": "json", "params": {}})
    return log


def test_an_untouched_log_verifies() -> None:
    log = _log(5)
    report = verify_chain(log.records, KEY.public_key())
    assert report.ok, report.problems
    assert report.head is not None and report.head.seq == 4


@pytest.mark.parametrize(
    "tamper",
    ["remove_middle", "remove_first", "swap", "change_body", "foreign_key", "duplicate"],
)
def test_log_verify_detects_tampering(tamper: str) -> None:
    log = _log(5)
    recs = list(log.records)
    if tamper == "remove_middle":
        del recs[2]
    elif tamper == "remove_first":
        del recs[0]
    elif tamper == "swap":
        recs[1], recs[2] = recs[2], recs[1]
    elif tamper == "change_body":
        off, value = recs[3]
        recs[3] = (off, value.replace(f"{3:064x}".encode(), f"{9:064x}".encode()))
    elif tamper == "foreign_key":
        # a well-formed chain re-sealed by someone without the deployment's key
        other = MemoryLog(Ed25519PrivateKey.generate())
        for e in log.entries:
            other.append(e.kind, e.body)
        recs = other.records
    elif tamper == "duplicate":
        # a second writer that extended the same entry: a fork
        fork = MemoryLog()
        fork.entries = log.entries[:3]
        fork.append("report", {"sha256": "f" * 64})
        recs = [*recs, fork.records[-1]]
    report = verify_chain(recs, KEY.public_key())
    assert not report.ok


def _report_html(now: datetime) -> bytes:
    model = ReadModel(CommonSettings(), Topics("unit"), CATALOG)
    for k, v in demo_records(["2026-11-02", "2026-11-03"]):
        model.apply_aggregate(k, v)
    scorer = Scorer(model, CATALOG, load_methodology())
    rep = build_report(scorer, "region", None, date(2026, 11, 1), date(2026, 11, 30), now)
    return render(rep, "html")[0]


def test_an_issued_printable_report_carries_its_place_and_any_changed_byte_shows() -> None:
    log = MemoryLog()
    log.append("report", {"sha256": "0" * 64})
    page, entry = issue(log, _report_html(datetime.now(UTC)), "html", {"scope": "region"}, "api")  # type: ignore[arg-type]
    assert entry.seq == 1
    assert entry.body["sha256"].encode() in page and b"servicepulse reports verify" in page
    assert f"№ {entry.seq}".encode() in page
    ok = verify_report(page, log.entries)
    assert ok.entry == entry, ok.reason
    # every byte of the integrity block and of the footer, and 300 others anywhere
    start = page.index(b"<footer>")
    rng = random.Random(7)
    positions = [*range(start, len(page)), *rng.sample(range(len(page)), 300)]
    for pos in positions:
        changed = page[:pos] + bytes([page[pos] ^ 0x01]) + page[pos + 1 :]
        assert verify_report(changed, log.entries).entry is None, pos
    # a byte added or removed, and the block cut out
    assert verify_report(page + b"\n", log.entries).entry is None
    assert verify_report(page[:-1], log.entries).entry is None
    cut = page.replace(page[page.index(b"<!--sp-integrity-->") : page.index(b"</footer>")], b"")
    assert verify_report(cut, log.entries).entry is None


def test_the_hash_of_a_page_is_that_of_its_bytes_with_the_slot_emptied() -> None:
    page = b"<p>a</p><!--sp-integrity-->anything<!--/sp-integrity--><p>b</p>"
    want = hashlib.sha256(b"<p>a</p><!--sp-integrity--><!--/sp-integrity--><p>b</p>").hexdigest()
    assert html_digest(page) == want
    assert html_digest(page + b"<!--sp-integrity--><!--/sp-integrity-->") is None


def test_json_and_csv_reports_are_hashed_as_they_are() -> None:
    log = MemoryLog()
    body = b'{"title": "x"}'
    out, entry = issue(log, body, "json", {}, "cli")  # type: ignore[arg-type]
    assert out == body and entry.body["sha256"] == hashlib.sha256(body).hexdigest()
    assert verify_report(body, log.entries).entry == entry
    assert verify_report(b'{"title": "y"}', log.entries).entry is None


def test_a_restated_day_is_a_new_entry_never_a_silent_change() -> None:
    model = ReadModel(CommonSettings(), Topics("unit"), CATALOG)
    for k, v in demo_records(["2026-11-02", "2026-11-03"]):
        model.apply_aggregate(k, v)
    log = MemoryLog()
    # watermark of the demo records: 2026-12-01, so both days are past a 2-day horizon
    due = day_close_bodies(model, CATALOG, log.entries, timedelta(days=2))
    assert [b["day"] for b in due] == ["2026-11-02", "2026-11-03"]
    assert "minsoc" in due[0]["agencies"]
    for b in due:
        log.append("day_close", b)
    assert day_close_bodies(model, CATALOG, log.entries, timedelta(days=2)) == []
    # a late event restates 2026-11-02: one more started journey for minsoc
    r = agg.Rollup(events=1, started=1)
    key = agg.RollupKey(
        5, "2026-11-02", agg.Dims("minsoc", "large_family_status", "75701000", "portal", "")
    )
    model.apply_aggregate(key.encode(), agg.encode(r))
    again = day_close_bodies(model, CATALOG, log.entries, timedelta(days=2))
    assert [b["day"] for b in again] == ["2026-11-02"]
    assert again[0]["restates"] == log.entries[0].seq
    before = log.entries[0].body["agencies"]["minsoc"]["started"]
    assert again[0]["agencies"]["minsoc"]["started"] == before + 1
    # not yet past the horizon: nothing is closed
    assert day_close_bodies(model, CATALOG, [], timedelta(days=60)) == []


def test_a_missing_log_key_is_created_in_local_mode_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    with pytest.raises(ConfigError, match="log init-key"):
        deployment_key(path, "production")
    settings = ApiSettings(mode="production", token_db=tmp_path / "tokens.db")
    service = IssuingService(settings, Topics("unit"), None, CATALOG)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SERVICEPULSE_LEDGER_KEY"):
        service.check()
    key = deployment_key(path, "local")
    assert path.exists() and deployment_key(path, "production").public_key() == key.public_key()
    service.check()  # the key exists now: production may start
