"""The hash-chained log of issued numbers: every report issued and every day closed.

The log is the Kafka topic ``<prefix>.ledger`` (one partition, never compacted, no time
or size retention; :meth:`contract.topics.Topics.specs`). Each record's value is the
canonical JSON (sorted keys, no spaces, UTF-8) of::

    {"entry": {"v": 1, "seq": N, "prev": "<hash of entry N-1, or 64 zeros>",
               "at": "<UTC ISO time>", "kind": "report" | "day_close",
               "key_id": "<id of the deployment key>", "body": {...}},
     "hash": "<SHA-256 hex of the canonical JSON of entry>",
     "sig": "<base64url Ed25519 signature of 'servicepulse-ledger-v1\\n' + hash>"}

so every entry names the one before it, and the deployment's key signs each link. A
``report`` body holds the SHA-256 of the issued bytes (of HTML: see :func:`html_digest`),
the format, the parameters, how it was issued (``api`` or ``cli``) and its size; a
``day_close`` body the totals per agency of one day once the restatement horizon has
passed (:func:`day_close_bodies`); a later restatement of that day is a new entry that
names the one it restates.

**One writer at a time.** Every appender (each API replica, the CLI) uses the same
Kafka transactional id, ``servicepulse-ledger-<prefix>``. Opening a writer
(``init_transactions``) fences every other writer with that id and completes its open
transaction; the new writer then reads the log to its end and appends in transactions.
A writer that was fenced meanwhile fails its next commit (the broker knows its epoch is
old), reopens, rereads the tail and retries. So two appenders can never both extend the
same entry, and the chain cannot fork silently; :func:`verify_chain` still checks that
sequence numbers and links run without a gap, a repeat or a reorder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidSignature
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from api.readmodel import ReadModel
from contract.catalog import Catalog
from contract.errors import BusError, ConfigError, ServicePulseError
from contract.keyfiles import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    create_private_key,
    key_id_of,
    load_private_key,
)
from contract.settings import CommonSettings
from contract.signing import b64decode, b64encode
from kafkaport import KafkaError, KafkaTimeoutError, TopicPartition, TransactionalProducer, connect

logger = logging.getLogger(__name__)

GENESIS: Final = "0" * 64
SIGNED_PREFIX: Final = b"servicepulse-ledger-v1\n"
#: The slot of the printable report that carries its place in the log (see html_digest).
SLOT_OPEN: Final = b"<!--sp-integrity-->"
SLOT_CLOSE: Final = b"<!--/sp-integrity-->"
_SLOT: Final = re.compile(re.escape(SLOT_OPEN) + b"(.*?)" + re.escape(SLOT_CLOSE), re.DOTALL)


class LedgerError(ServicePulseError):
    """The log could not be read or appended to, or a report could not be recorded."""


class LedgerConflict(LedgerError):
    """Another writer appended after the entry an append was based on (see ``after``)."""


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no insignificant spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def transactional_id(prefix: str) -> str:
    """The one transactional id every writer of a deployment's log uses."""
    return f"servicepulse-ledger-{prefix}"


# -- the deployment key --------------------------------------------------------------------


def deployment_key(path: Path, mode: str) -> Ed25519PrivateKey:
    """The deployment's log key at ``path``; in local mode it is created when missing.

    Raises:
        ConfigError: missing outside local mode, unreadable, or not an Ed25519 key.
    """
    if not path.exists():
        if mode != "local":
            raise ConfigError(
                f"the log signing key {str(path)!r} does not exist; create it with "
                "`servicepulse log init-key` (only local mode creates one by itself)"
            )
        key = create_private_key(path)
        logger.info("created the log signing key path=%s key_id=%s", path, key_id_of(key))
        return key
    return load_private_key(path)


# -- entries ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the log as stored (``offset`` is its Kafka offset, -1 if not read)."""

    seq: int
    prev: str
    at: str
    kind: str
    key_id: str
    body: dict[str, Any]
    hash: str
    sig: str
    offset: int = -1

    def payload(self) -> dict[str, Any]:
        """The signed part."""
        return {
            "v": 1,
            "seq": self.seq,
            "prev": self.prev,
            "at": self.at,
            "kind": self.kind,
            "key_id": self.key_id,
            "body": self.body,
        }


def seal(
    key: Ed25519PrivateKey, seq: int, prev: str, kind: str, body: dict[str, Any], at: datetime
) -> tuple[Entry, bytes]:
    """Build, hash and sign an entry; returns it and its record value."""
    when = at.astimezone(UTC).isoformat(timespec="microseconds")
    entry = Entry(seq, prev, when, kind, key_id_of(key), body, "", "")
    payload = entry.payload()
    digest = hashlib.sha256(canonical(payload)).hexdigest()
    sig = b64encode(key.sign(SIGNED_PREFIX + digest.encode()))
    entry = dataclasses.replace(entry, hash=digest, sig=sig)
    return entry, canonical({"entry": payload, "hash": digest, "sig": sig})


def parse(value: bytes | None, offset: int = -1) -> Entry | str:
    """An entry from a record value, or what is wrong with it (its hash is not checked)."""
    try:
        doc = json.loads(value or b"")
        e = doc["entry"]
        entry = Entry(
            int(e["seq"]),
            str(e["prev"]),
            str(e["at"]),
            str(e["kind"]),
            str(e["key_id"]),
            dict(e["body"]),
            str(doc["hash"]),
            str(doc["sig"]),
            offset,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not a log entry"
    if e.get("v") != 1:
        return f"unknown entry version {e.get('v')!r}"
    return entry


# -- verification ------------------------------------------------------------------------


@dataclass(slots=True)
class ChainReport:
    """What :func:`verify_chain` found."""

    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the whole chain verified."""
        return not self.problems

    @property
    def head(self) -> Entry | None:
        """The last entry."""
        return self.entries[-1] if self.entries else None


def verify_chain(
    records: Iterable[tuple[int, bytes | None]], public: Ed25519PublicKey
) -> ChainReport:
    """Check a log end to end: every hash, signature, sequence number and link.

    ``records`` are (offset, value) in offset order. A removed entry shows as a gap in
    the sequence and a broken link, a reordered one as a wrong sequence number and link,
    a changed one as a wrong hash or signature, a second writer's fork as a repeated
    sequence number. Checking continues after a problem, so every one is listed.
    """
    out = ChainReport()
    before: Entry | None = None
    for offset, value in records:
        entry = parse(value, offset)
        if isinstance(entry, str):
            out.problems.append(f"offset {offset}: {entry}")
            continue
        out.problems.extend(link_problems(entry, before, public))
        out.entries.append(entry)
        before = entry
    return out


def link_problems(entry: Entry, before: Entry | None, public: Ed25519PublicKey) -> list[str]:
    """What is wrong with ``entry`` as the successor of ``before`` (``None``: the first)."""
    problems: list[str] = []
    where = f"offset {entry.offset} (entry {entry.seq})"
    if hashlib.sha256(canonical(entry.payload())).hexdigest() != entry.hash:
        problems.append(f"{where}: the entry does not match its hash (changed)")
    expected_key = key_id_of(public)
    sig = b64decode(entry.sig)
    try:
        if sig is None or entry.key_id != expected_key:
            raise InvalidSignature
        public.verify(sig, SIGNED_PREFIX + entry.hash.encode())
    except InvalidSignature:
        problems.append(
            f"{where}: the signature does not verify with the deployment key {expected_key}"
        )
    prev, seq = (before.hash, before.seq + 1) if before else (GENESIS, 0)
    if entry.seq != seq:
        problems.append(f"{where}: sequence number {entry.seq}, expected {seq}")
    if entry.prev != prev:
        problems.append(
            f"{where}: names {entry.prev[:16]}… as the previous entry, but it is "
            f"{prev[:16]}… (an entry was removed, reordered or forked)"
        )
    return problems


# -- the Kafka log -------------------------------------------------------------------------


def read_records(
    settings: CommonSettings, topic: str, start: int = 0, timeout: float = 30.0
) -> Iterator[tuple[int, bytes | None]]:
    """Every committed record of the log from offset ``start`` to its current end."""
    try:
        consumer = connect(settings).consumer(client_id="servicepulse-ledger")
    except KafkaError as exc:
        raise LedgerError(f"cannot read the log topic {topic!r}: {exc}") from exc
    try:
        tp = TopicPartition(topic, 0)
        if not consumer.partitions_for(topic, timeout):
            raise LedgerError(f"the log topic {topic!r} does not exist (servicepulse kafka topics)")
        _first, end = consumer.watermarks([tp], timeout)[tp]
        consumer.assign({tp: start})
        deadline = time.monotonic() + timeout
        # the position passes transaction markers once read (None before the first fetch)
        while (consumer.position(tp) or start) < end:
            if time.monotonic() > deadline:
                raise LedgerError(f"could not read the log topic {topic!r} within {timeout:g} s")
            for r in consumer.poll(0.5, 500):
                yield r.offset, r.value
    except KafkaError as exc:
        raise LedgerError(f"cannot read the log topic {topic!r}: {exc}") from exc
    finally:
        consumer.close()


#: Errors after which a writer is reopened: fenced by another writer, transaction state
#: lost, Kafka unreachable.
_RETRIED: Final = (KafkaError, TimeoutError)

#: How long a transaction of a writer that died may stay open before Kafka aborts it (a
#: new writer aborts it at once when it fences the old one).
_TRANSACTION_TIMEOUT_MS: Final = 60_000


class Ledger:
    """Appends entries to the log as its single writer (see the module docstring).

    Thread-safe; the Kafka clients are opened on the first append.

    Args:
        settings: Kafka connection.
        topic: the log topic.
        key: the deployment's signing key.
        txn_id: the transactional id shared by every writer of this log.
        timeout: seconds an append may take (per attempt).
    """

    def __init__(
        self,
        settings: CommonSettings,
        topic: str,
        key: Ed25519PrivateKey,
        txn_id: str,
        timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self.topic = topic
        self._key = key
        self.key_id = key_id_of(key)
        self._txn_id = txn_id
        self._timeout = timeout
        self._lock = threading.Lock()
        self._producer: TransactionalProducer | None = None
        self._tail: Entry | None = None
        self._next_offset = 0

    def __repr__(self) -> str:
        return f"Ledger(topic={self.topic!r}, key_id={self.key_id!r})"

    def _open(self) -> TransactionalProducer:
        producer = connect(self._settings).transactional_producer(
            client_id="servicepulse-ledger",
            transactional_id=self._txn_id,
            transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS,
            linger_ms=0,
            report_deliveries=True,  # the entry's offset is part of what append returns
        )
        try:
            producer.init_transactions(self._timeout)
            # every earlier writer is fenced and its transaction done: read to the end
            for offset, value in read_records(
                self._settings, self.topic, self._next_offset, self._timeout
            ):
                entry = parse(value, offset)
                problems = (
                    [entry]
                    if isinstance(entry, str)
                    else link_problems(entry, self._tail, self._key.public_key())
                )
                if problems:
                    # an entry this deployment did not write, or a broken chain: appending
                    # would vouch for it; fail closed (`servicepulse log verify` tells more)
                    raise LedgerError(
                        f"the log topic {self.topic!r} is broken at offset {offset} "
                        f"({problems[0]}); nothing is appended to a broken log"
                    )
                assert isinstance(entry, Entry)  # noqa: S101 - no problems, so parsed
                self._tail = entry
                self._next_offset = offset + 1
        except BaseException:
            producer.close(1.0)
            raise
        return producer

    def append(
        self,
        kind: str,
        body: dict[str, Any],
        now: datetime | None = None,
        *,
        after: str | None = None,
    ) -> Entry:
        """Append one entry; returns it once Kafka committed it.

        ``after``: append only if the log's last entry has this hash (``GENESIS`` for an
        empty log), i.e. nobody appended since the caller read it; else raise
        :class:`LedgerConflict` and append nothing. What the single writer checks under
        its epoch, so two processes deciding from the same tail cannot both append.

        Raises:
            LedgerConflict: the last entry is not ``after``.
            LedgerError: Kafka did not commit it (after retries) or the log is broken.
        """
        with self._lock:
            tail = self._tail.hash if self._tail else GENESIS
            if after is not None and after != tail:
                # our view may be stale (another writer fenced us): reread before refusing
                self._discard()
            # a fenced writer needs one more attempt per competing writer; Kafka being
            # away is not worth more than the timeout
            retrying = Retrying(
                stop=stop_after_attempt(4) | stop_after_delay(self._timeout),
                retry=retry_if_exception_type((*_RETRIED, BusError)),
                after=self._reopen,
                reraise=True,
            )
            try:
                return retrying(self._append_open, kind, body, now, after)
            except (*_RETRIED, BusError) as exc:
                raise LedgerError(
                    f"could not append to the log topic {self.topic!r}: {exc}"
                ) from exc

    def _append_open(
        self, kind: str, body: dict[str, Any], now: datetime | None, after: str | None
    ) -> Entry:
        if self._producer is None:
            self._producer = self._open()
        return self._append(self._producer, kind, body, now, after)

    def _reopen(self, state: RetryCallState) -> None:
        """After a failed append: log it and drop the writer (the next attempt reopens)."""
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "log append failed (attempt %d; reopening the writer): %s: %s",
            state.attempt_number,
            type(exc).__name__,
            exc,
        )
        self._discard()

    def _append(
        self,
        producer: TransactionalProducer,
        kind: str,
        body: dict[str, Any],
        now: datetime | None,
        after: str | None,
    ) -> Entry:
        tail = self._tail
        seq, prev = (tail.seq + 1, tail.hash) if tail else (0, GENESIS)
        if after is not None and after != prev:
            raise LedgerConflict(f"the log moved on: its last entry is {prev[:16]}…")
        entry, value = seal(self._key, seq, prev, kind, body, now or datetime.now(UTC))
        offsets: list[int] = []
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, _partition: int, offset: int) -> None:
            if err is None:
                offsets.append(offset)
            else:
                failures.append(err)

        producer.begin_transaction()
        producer.send(self.topic, value, partition=0, on_delivery=delivered)
        # the report comes while flushing, on this thread
        if producer.flush(self._timeout) or not offsets:
            if failures:
                raise failures[0]
            raise KafkaTimeoutError(f"the entry was not written within {self._timeout:g} s")
        producer.commit_transaction(self._timeout)
        offset = offsets[0]
        entry = dataclasses.replace(entry, offset=offset)
        self._tail = entry
        self._next_offset = offset + 1
        logger.info("log entry appended seq=%d kind=%s offset=%d", seq, kind, offset)
        return entry

    def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(1.0)
            except KafkaError as exc:
                logger.debug("closing the log writer: %s", exc)

    def close(self) -> None:
        """Close the writer."""
        with self._lock:
            self._discard()


# -- reports -------------------------------------------------------------------------------


def html_digest(page: bytes) -> str | None:
    """SHA-256 of a printable report with its integrity slot emptied, or ``None`` without
    exactly one slot.

    What is hashed: the page's bytes with everything between ``<!--sp-integrity-->`` and
    ``<!--/sp-integrity-->`` removed (the two markers stay). The slot's own content is
    not hashed, because it carries the hash; :func:`verify_report` checks it by
    rendering it again from the log entry and comparing bytes.
    """
    matches = list(_SLOT.finditer(page))
    if len(matches) != 1:
        return None
    m = matches[0]
    return hashlib.sha256(page[: m.start(1)] + page[m.end(1) :]).hexdigest()


def slot_html(entry: Entry) -> bytes:
    """The integrity block of a printable report, from its log entry."""
    e = html.escape
    at = entry.at[:19].replace("T", " ")
    text = (
        '<div class="integrity">SHA-256: <code>'
        + e(str(entry.body.get("sha256", "")))
        + "</code> · запись № "
        + str(entry.seq)
        + " журнала выданных отчётов от "
        + e(at)
        + " UTC, хеш записи <code>"
        + e(entry.hash[:16])
        + "</code>, предыдущей <code>"
        + e(entry.prev[:16])
        + "</code>. Проверка: <code>servicepulse reports verify ФАЙЛ</code> "
        "(хеш считается по файлу без этого блока).</div>"
    )
    return text.encode()


def issue(
    ledger: Ledger, body: bytes, fmt: str, params: dict[str, Any], via: str
) -> tuple[bytes, Entry]:
    """Record a report in the log; returns the bytes to hand out and the entry.

    JSON and CSV are handed out as they are and their SHA-256 is recorded; HTML must
    hold one empty integrity slot, which is filled with the entry (:func:`slot_html`).

    Raises:
        LedgerError: the entry could not be appended; the report must not be handed out.
    """
    if fmt == "html":
        digest = html_digest(body)
        if digest is None:
            raise LedgerError("the printable report has no integrity slot")
    else:
        digest = hashlib.sha256(body).hexdigest()
    record = {"sha256": digest, "format": fmt, "params": params, "via": via, "bytes": len(body)}
    entry = ledger.append("report", record)
    if fmt == "html":
        m = _SLOT.search(body)
        assert m is not None  # noqa: S101 - html_digest found exactly one
        body = body[: m.start(1)] + slot_html(entry) + body[m.end(1) :]
    return body, entry


def issued_headers(entry: Entry) -> dict[str, str]:
    """Response headers that name a report's log entry."""
    return {
        "X-ServicePulse-Report-Sha256": str(entry.body["sha256"]),
        "X-ServicePulse-Log-Seq": str(entry.seq),
        "X-ServicePulse-Log-Entry": entry.hash,
    }


@dataclass(frozen=True, slots=True)
class ReportCheck:
    """What :func:`verify_report` found: the matching entry, or why there is none."""

    entry: Entry | None
    digest: str
    reason: str = ""


def verify_report(data: bytes, entries: Iterable[Entry]) -> ReportCheck:
    """Whether ``data`` is a report recorded in (verified) ``entries``, and which one."""
    slot = _SLOT.search(data)
    if slot is not None:
        digest = html_digest(data)
        if digest is None:
            return ReportCheck(None, "", "the page has more than one integrity slot")
    else:
        digest = hashlib.sha256(data).hexdigest()
    matches = [e for e in entries if e.kind == "report" and e.body.get("sha256") == digest]
    if not matches:
        return ReportCheck(None, digest, "no issued report has this SHA-256")
    if slot is None:
        if any(m.body.get("format") == "html" for m in matches):
            return ReportCheck(None, digest, "the page's integrity slot is missing")
        return ReportCheck(matches[-1], digest)
    for m in matches:
        if slot_html(m) == slot.group(1):
            return ReportCheck(m, digest)
    return ReportCheck(None, digest, "the integrity block differs from the log entry")


# -- closing days ------------------------------------------------------------------------


def _totals(r: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(r)
    return {
        "events": r.events,
        "started": r.started,
        "submitted": r.submitted,
        "decisions": sum(r.decisions.values()),
        "sha256": hashlib.sha256(canonical(data)).hexdigest(),
    }


def day_close_bodies(
    model: ReadModel,
    catalog: Catalog,
    entries: Iterable[Entry],
    close_after: timedelta,
) -> list[dict[str, Any]]:
    """The ``day_close`` entries due: days past the horizon not closed yet, or changed.

    A day is closed once the read model's watermark (data complete up to) has passed
    the day's end in the catalog's time zone plus ``close_after``; its entry holds per
    agency the events, journeys started and submitted, decisions and the SHA-256 of the
    canonical rollup. When a closed day's totals differ later (a restatement), a new
    entry names the sequence number of the one it restates.
    """
    watermark = model.watermark()
    if watermark is None:
        return []
    last: dict[str, Entry] = {}
    for e in entries:
        if e.kind == "day_close":
            last[str(e.body.get("day"))] = e
    out: list[dict[str, Any]] = []
    for day in model.days():
        d = date.fromisoformat(day)
        end = datetime.combine(d + timedelta(days=1), datetime.min.time(), catalog.tz)
        if watermark < end + close_after:
            continue
        per_agency = model.period(day, day, lambda g: g[0])
        agencies = {a: _totals(r) for a, r in sorted(per_agency.items())}
        digest = hashlib.sha256(canonical(agencies)).hexdigest()
        before = last.get(day)
        if before is not None and before.body.get("digest") == digest:
            continue
        body: dict[str, Any] = {"day": day, "agencies": agencies, "digest": digest}
        if before is not None:
            body["restates"] = before.seq
        out.append(body)
    return out


def close_days(
    ledger: Ledger,
    settings: CommonSettings,
    model: ReadModel,
    catalog: Catalog,
    close_after: timedelta,
) -> list[Entry]:
    """Append the due ``day_close`` entries (see :func:`day_close_bodies`).

    Each append names the entry the decision was based on (``after``); when another
    writer (an API replica) appended meanwhile, the log is read again and what is due
    computed again, so a day is never closed twice with the same totals.
    """
    done: list[Entry] = []

    def close_due() -> list[Entry]:
        parsed = (parse(v) for _offset, v in read_records(settings, ledger.topic))
        entries = [e for e in parsed if isinstance(e, Entry)]
        head = entries[-1].hash if entries else GENESIS
        for body in day_close_bodies(model, catalog, entries, close_after):
            entry = ledger.append("day_close", body, after=head)
            done.append(entry)
            head = entry.hash
        return done

    retrying = Retrying(
        stop=stop_after_attempt(5), retry=retry_if_exception_type(LedgerConflict), reraise=True
    )
    try:
        return retrying(close_due)
    except LedgerConflict as exc:
        raise LedgerError(
            "the log kept moving while days were being closed; retried later"
        ) from exc
