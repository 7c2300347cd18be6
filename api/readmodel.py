"""The read model: the aggregates, closed-days and dead-letter topics materialised in memory.

A background thread reads the three topics ``read_committed`` from the beginning (or
from a local snapshot) and keeps the latest value of every live aggregates key (the
record format is in :mod:`contract.aggregates`). Rollups are cumulative per input
partition, so the truth for a cell and day is the sum over partitions of the latest
records; the model keeps that sum per (day, group) and over all days per cell, updated
by difference when a key is rewritten, so /metrics and period queries never re-read Kafka.

Closed days (docs/AGGREGATES.md, "Bounded history"): once a day is final for an input
partition the processor writes one :class:`~contract.aggregates.ClosedDay` per (day,
partition, agency) to ``<prefix>.days`` and tombstones the ``r|``/``s|`` keys it replaces,
in one transaction. The two topics are read independently, so the record and the
tombstones arrive in either order (and compaction may have removed either). The rule,
exact in every order:

- an ``r|`` tombstone is never a subtraction: the key's held value is set aside
  (*pending close*) and leaves the live map;
- a ``d|`` record applies, per cell, ``final - (held or pending value)`` to the sums
  (zero when both sides agree, so /metrics does not move), subtracts what is held for
  the (day, partition, agency) but not in the record, drops every held and pending value
  of it and adds it to the closed set;
- any later ``r|`` or ``s|`` record of a closed (day, partition, agency) is ignored.

Memory stays bounded by the live window: a closed day is a per-day summary by group,
kept encoded (msgpack) once untouched for a while and decoded only to be summed.

Dead-letter records (from the API and the processor) are counted by (receive day,
agency, reason); their bodies are never kept.

Readiness: the model is ready once it has read up to the end offsets it saw at start.

Restarts: the model starts from its local snapshot if it has a usable one, else from the
newest checkpoint on ``<prefix>.readmodel`` (:mod:`api.checkpoint`: the same snapshot,
published by the API every ``SERVICEPULSE_CHECKPOINT_INTERVAL``), else from the
beginning of the topics; either way it then reads only what is newer than it.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, TypeVar

import msgspec

from api.checkpoint import ReadModelCheckpoint
from api.exposition import LiveExposition
from contract import aggregates as agg
from contract import deadletter as dl
from contract.aggregates import (
    ClosedDay,
    ClosedDayKey,
    Dims,
    GaugeDims,
    GaugeKey,
    Gauges,
    Hist,
    Restatement,
    RestatementKey,
    Rollup,
    RollupKey,
    Watermark,
    WatermarkKey,
)
from contract.catalog import Catalog
from contract.errors import BusError
from contract.events import Reason
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import BEGINNING, Consumer, KafkaError, TopicPartition, connect
from kafkaport.reconnect import Reconnect

logger = logging.getLogger(__name__)


class Group(NamedTuple):
    """What scorecards and reports group a day's rollups by (summed over municipalities)."""

    agency: str
    service: str
    life_situation: str
    channel: str


#: (partition, agency, service, municipality, channel)
PartitionGaugeCell = tuple[int, str, str, str, str]
#: (day, partition, agency): what one ClosedDay record closes
DayPart = tuple[str, int, str]
K = TypeVar("K", bound=Hashable)

UNKNOWN: Final = "unknown"
_REASONS: Final = frozenset(r.value for r in Reason)
_SNAPSHOT_VERSION: Final = 2
#: seconds a day's summary stays decoded after its last change before it is re-encoded
_FREEZE_AFTER_S: Final = 10.0
_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def negated(r: Rollup) -> Rollup:
    """A rollup with every counter of ``r`` negated (to subtract it with :meth:`Rollup.add`)."""
    out = Rollup()
    for f in agg.INT_FIELDS:
        v = getattr(r, f)
        if v:
            setattr(out, f, -v)
    for f in agg.MAP_FIELDS:
        src: dict[str, int] = getattr(r, f)
        if src:
            setattr(out, f, {k: -v for k, v in src.items()})
    for f in agg.HIST_FIELDS:
        h: Hist | None = getattr(r, f)
        if h is not None:
            setattr(out, f, Hist([-c for c in h.counts], -h.sum_ms))
    return out


def difference(new: Rollup | None, old: Rollup | None) -> Rollup | None:
    """``new - old``, holding only what changed (``None`` if nothing did).

    The processor rewrites a key with its cumulative value, usually after a few
    counters moved: adding this sparse difference to the sums is much cheaper than
    subtracting the old value and adding the new one.
    """
    if old is None:
        return new
    if new is None:
        return negated(old)
    out = Rollup()
    changed = False
    for f in agg.INT_FIELDS:
        d = getattr(new, f) - getattr(old, f)
        if d:
            setattr(out, f, d)
            changed = True
    for f in agg.MAP_FIELDS:
        a: dict[str, int] = getattr(new, f)
        b: dict[str, int] = getattr(old, f)
        if a == b:
            continue
        md = {k: a.get(k, 0) - b.get(k, 0) for k in a.keys() | b.keys()}
        md = {k: v for k, v in md.items() if v}
        if md:
            setattr(out, f, md)
            changed = True
    for f in agg.HIST_FIELDS:
        ha: Hist | None = getattr(new, f)
        hb: Hist | None = getattr(old, f)
        if ha == hb:
            continue
        if hb is None:
            setattr(out, f, ha)
        elif ha is None:
            setattr(out, f, Hist([-c for c in hb.counts], -hb.sum_ms))
        else:
            n = max(len(ha.counts), len(hb.counts))
            ca = ha.counts + [0] * (n - len(ha.counts))
            cb = hb.counts + [0] * (n - len(hb.counts))
            setattr(
                out, f, Hist([x - y for x, y in zip(ca, cb, strict=True)], ha.sum_ms - hb.sum_ms)
            )
        changed = True
    return out if changed else None


_day_enc: Final = msgspec.msgpack.Encoder()
_day_dec: Final = msgspec.msgpack.Decoder(list[tuple[Group, Rollup]])
_totals_dec: Final = msgspec.msgpack.Decoder(list[tuple[Dims, Rollup]])


def _freeze(groups: dict[Group, Rollup]) -> bytes:
    """A day's summary as compact bytes (msgpack: about a fifth of the decoded objects)."""
    return _day_enc.encode(list(groups.items()))


def _thaw(data: bytes) -> dict[Group, Rollup]:
    return dict(_day_dec.decode(data))


_raw_dec: Final = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]])


def _freeze_raw(held: dict[bytes, bytes]) -> bytes:
    """Live values of one (day, partition, agency), compressed together (JSON values
    repeat their field names: zlib's fastest level keeps about a tenth)."""
    return zlib.compress(_day_enc.encode(list(held.items())), 1)


_frozen_dec: Final = msgspec.msgpack.Decoder(tuple[str, int, str, bytes])


def _rollup_key(key: bytes) -> RollupKey:
    """The typed key of an ``r|`` record (ValueError for any other key)."""
    k = agg.decode_key(key)
    if not isinstance(k, RollupKey):
        raise ValueError(f"not a rollup key {key[:80]!r}")
    return k


def _write_frame(f: BinaryIO, data: bytes) -> int:
    f.write(len(data).to_bytes(8, "big"))
    f.write(data)
    return 8 + len(data)


def _read_frame(f: BinaryIO) -> bytes:
    """One frame of a snapshot file (ValueError when the file ends inside it)."""
    head = f.read(8)
    n = int.from_bytes(head, "big") if len(head) == 8 else -1
    if n < 0 or n > 1 << 34:
        raise ValueError("truncated or not a read-model snapshot")
    data = f.read(n)
    if len(data) != n:
        raise ValueError("truncated read-model snapshot")
    return data


class _Snapshot(msgspec.Struct):
    version: int
    topics: list[str]
    offsets: list[tuple[str, int, int]]
    #: live r| values, and the values set aside by a tombstone awaiting their d| record
    raw: list[tuple[bytes, bytes]]
    #: the frozen live values follow the header in the file, one frame each
    raw_cold_frames: int
    pending: list[tuple[bytes, bytes]]
    #: g|, s| (live and closed) and w| records
    records: list[tuple[bytes, bytes]]
    #: (day, partition, agency, digest of the d| value)
    closed: list[tuple[str, int, str, bytes]]
    #: totals by cell and the per-day summaries, encoded as the model keeps them
    totals: bytes
    days: list[tuple[str, bytes]]
    months: list[tuple[str, bytes]]
    dead: list[tuple[str, str, str, int]]
    saved_at: float


@dataclass(slots=True)
class Status:
    """Progress of the read model, for /readyz and the API's metrics."""

    ready: bool = False
    connected: bool = False
    records: int = 0
    lag: int = -1
    error: str = ""
    caught_up_at: float | None = None
    started_at: float = field(default_factory=time.time)
    restored_from_snapshot: bool = False
    #: started from the checkpoint on Kafka (no usable local snapshot)
    restored_from_checkpoint: bool = False


class ReadModel:
    """The materialised aggregates and dead-letter counts. Thread-safe.

    Args:
        settings: where Kafka is.
        topics: which topics to read.
        catalog: its time zone gives the receive day of dead letters.
        snapshot: file to restore from and save to; ``None`` for none.
        snapshot_interval: seconds between snapshots while records keep coming.
        checkpoint: the shared checkpoint: fetched at start when there is no usable
            snapshot; published (the snapshot file) when there is a snapshot file.
        checkpoint_interval: seconds between two publishes; 0: never publish.
    """

    def __init__(
        self,
        settings: CommonSettings,
        topics: Topics,
        catalog: Catalog,
        snapshot: Path | None = None,
        snapshot_interval: float = 30.0,
        checkpoint: ReadModelCheckpoint | None = None,
        checkpoint_interval: float = 600.0,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._tz = catalog.tz
        self._catalog = catalog
        #: the business families of /metrics: built from the totals on first use (after
        #: the catch-up, when they are served), then kept up to date record by record
        self._exposition: LiveExposition | None = None
        self._snapshot_path = snapshot
        self._snapshot_interval = snapshot_interval
        self.checkpoint = checkpoint
        self._checkpoint_interval = checkpoint_interval
        self._last_publish = time.monotonic()
        #: the model version of the last snapshot saved, and of the last one published
        self._saved_version: int | None = None
        self._published_version: int | None = None
        self.lock = threading.RLock()
        self.status = Status()
        #: increases with every applied batch; caches of derived views key on it
        self.version = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bad_records = 0
        self._targets: dict[TopicPartition, int] = {}
        self._assigned: list[TopicPartition] = []
        self._clear()

    def _clear(self) -> None:
        # the latest value of each live r| key as its record bytes (a few hundred bytes
        # where the decoded Rollup costs ~1.7 KB; decoded again only when rewritten), by
        # the (day, partition, agency) a ClosedDay record replaces at once
        self._raw: dict[DayPart, dict[bytes, bytes]] = {}
        # ... and those untouched for _FREEZE_AFTER_S, compressed together (a day's keys
        # are rewritten while the day is recent, then rarely: by late events only)
        self._raw_cold: dict[DayPart, bytes] = {}
        self._raw_touched: dict[DayPart, float] = {}
        # values whose r| key was tombstoned before its d| record was read
        self._pending: dict[DayPart, dict[bytes, bytes]] = {}
        # closed (day, partition, agency) -> digest of the d| value that closed it
        self._closed: dict[DayPart, bytes] = {}
        self._conflicting_days = 0
        # per day only by Group: periods of a year stay cheap to sum (municipality is
        # summed over already; /metrics uses the totals by full cell). A day untouched
        # for _FREEZE_AFTER_S is kept encoded in _cold_days instead
        self._day_groups: dict[str, dict[Group, Rollup]] = {}
        self._cold_days: dict[str, bytes] = {}
        # the same by month ("YYYY-MM"), so a period of a year sums a dozen months and
        # the days of its partial months, not 365 days
        self._months: dict[str, dict[Group, Rollup]] = {}
        # sums of frozen days by group, for the queries of one report (see _cold_sum)
        self._cold_sums: dict[tuple[str, ...], tuple[list[bytes], dict[Group, Rollup]]] = {}
        self._touched: dict[str, float] = {}
        self._last_freeze = time.monotonic()
        self._totals: dict[Dims, Rollup] = {}
        self._gauges: dict[PartitionGaugeCell, Gauges] = {}
        self._restatements: dict[tuple[int, str, str], Restatement] = {}
        self._watermarks: dict[int, Watermark] = {}
        self._dead: dict[tuple[str, str, str], int] = {}
        self._offsets: dict[tuple[str, int], int] = {}

    # -- applying records ------------------------------------------------------------

    def apply_aggregate(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the aggregates topic (caller holds the lock)."""
        k = agg.decode_key(key)
        if isinstance(k, RollupKey):
            dkey: DayPart = (k.day, k.partition, k.dims.agency)
            if dkey in self._closed:
                return  # its ClosedDay record holds the final value
            held = self._held(dkey)
            if value is None:
                # closing the day, never a subtraction: kept aside for the d| record
                old_value = held.pop(key, None) if held is not None else None
                if old_value is not None:
                    self._pending.setdefault(dkey, {})[key] = old_value
                    if not held:
                        del self._raw[dkey]
                return
            old_value = held.get(key) if held is not None else None
            if old_value is None:
                pend = self._pending.get(dkey)
                if pend is not None:
                    old_value = pend.pop(key, None)
                    if not pend:
                        del self._pending[dkey]
            if held is None:
                held = self._raw[dkey] = {}
                self._raw_touched[dkey] = time.monotonic()
            held[key] = value
            if old_value == value:
                return
            new = agg.decode_rollup(value)
            old = agg.decode_rollup(old_value) if old_value is not None else None
            delta = difference(new, old)
            if delta is not None:
                self._add(k.day, k.dims, delta)
        elif isinstance(k, GaugeKey):
            gkey: PartitionGaugeCell = (k.partition, *k.dims)
            if value is None:
                gold = self._gauges.pop(gkey, None)
                gnew = None
            else:
                gold = self._gauges.get(gkey)
                gnew = self._gauges[gkey] = agg.decode_gauges(value)
            if self._exposition is not None:
                self._exposition.gauges_changed(k.dims, gold, gnew)
        elif isinstance(k, RestatementKey):
            skey = (k.partition, k.day, k.agency)
            # a tombstone closes the day: the log stays until the d| record replaces it
            if value is not None and (k.day, k.partition, k.agency) not in self._closed:
                self._restatements[skey] = agg.decode_restatement(value)
        elif isinstance(k, WatermarkKey):
            if value is None:
                self._watermarks.pop(k.partition, None)
            else:
                self._watermarks[k.partition] = agg.decode_watermark(value)
        else:
            raise ValueError(f"not an aggregates key {key[:80]!r}")

    def _add(self, day: str, cell: Dims, delta: Rollup) -> None:
        """Add ``delta`` (a fresh object, referenced nowhere else) to the sums."""
        # totals first: they copy; the day's sum may then keep ``delta`` itself
        _accumulate(self._totals, cell, delta)
        group = Group(cell.agency, cell.service, cell.life_situation, cell.channel)
        _accumulate(self._months.setdefault(day[:7], {}), group, delta)
        _accumulate(self._day(day), group, delta, owned=True)
        if self._exposition is not None:
            self._exposition.add_rollup(cell, delta)

    def _day(self, day: str) -> dict[Group, Rollup]:
        """The decoded summary of ``day`` to change (decoded again if it was frozen)."""
        self._touched[day] = time.monotonic()
        groups = self._day_groups.get(day)
        if groups is None:
            cold = self._cold_days.pop(day, None)
            groups = self._day_groups[day] = _thaw(cold) if cold is not None else {}
        return groups

    def _held(self, dkey: DayPart) -> dict[bytes, bytes] | None:
        """The live values of (day, partition, agency) to change, decompressed if frozen."""
        held = self._raw.get(dkey)
        if held is None:
            cold = self._raw_cold.pop(dkey, None)
            if cold is None:
                return None
            held = self._raw[dkey] = dict(_raw_dec.decode(zlib.decompress(cold)))
        self._raw_touched[dkey] = time.monotonic()
        return held

    def freeze(self, older_than: float = _FREEZE_AFTER_S) -> int:
        """Encode what has not changed for ``older_than`` s (lock held): the live values
        of a (day, partition, agency) compressed together, a day's summary as msgpack.

        Returns how many day summaries were frozen. The consumer thread calls it every
        few seconds.
        """
        now = time.monotonic()
        for dkey in list(self._raw):
            if now - self._raw_touched.get(dkey, 0.0) >= older_than:
                self._raw_cold[dkey] = _freeze_raw(self._raw.pop(dkey))
                self._raw_touched.pop(dkey, None)
        frozen = 0
        for day in list(self._day_groups):
            if now - self._touched.get(day, 0.0) >= older_than:
                self._cold_days[day] = _freeze(self._day_groups.pop(day))
                self._touched.pop(day, None)
                frozen += 1
        self._last_freeze = now
        return frozen

    def apply_closed_day(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the closed-days topic (caller holds the lock)."""
        if value is None:
            return  # closed days are kept for ever; a tombstone would be an operator's
        ck = agg.decode_key(key)
        if not isinstance(ck, ClosedDayKey):
            raise ValueError(f"not a closed-days key {key[:80]!r}")
        cd: ClosedDay = agg.decode_closed_day(value)
        dkey: DayPart = (cd.day, cd.partition, cd.agency)
        if dkey != (ck.day, ck.partition, ck.agency):
            raise ValueError(f"closed-days key {key[:80]!r} does not match its value")
        digest = hashlib.blake2b(value, digest_size=8).digest()
        before = self._closed.get(dkey)
        if before is not None:
            if before != digest:
                # a final day cannot change: keep the first, say so
                self._conflicting_days += 1
                logger.warning("ignored a second, different closed-day record %s", key[:80])
            return
        held = self._held(dkey) or {}
        self._raw.pop(dkey, None)
        self._raw_touched.pop(dkey, None)
        pend = self._pending.pop(dkey, {})
        for c in cd.cells:
            dims = Dims(cd.agency, c.service, c.municipality, c.channel, c.life_situation)
            k = RollupKey(cd.partition, cd.day, dims).encode()
            old_value = held.pop(k, None)
            if old_value is None:
                old_value = pend.pop(k, None)
            old = agg.decode_rollup(old_value) if old_value is not None else None
            delta = difference(c.rollup, old)
            if delta is not None:
                self._add(cd.day, dims, delta)
        # held for the day but not in its final record: the final says nothing there
        for k, v in (*held.items(), *pend.items()):
            self._add(cd.day, _rollup_key(k).dims, negated(agg.decode_rollup(v)))
        self._closed[dkey] = digest
        skey = (cd.partition, cd.day, cd.agency)
        if cd.restatement is not None and cd.restatement.count:
            self._restatements[skey] = cd.restatement
        else:
            self._restatements.pop(skey, None)

    def apply_dead_letter(self, value: bytes | None, timestamp_ms: int) -> None:
        """Count one dead-letter record by receive day, agency and reason (lock held)."""
        if value is None:
            return
        rec = dl.decode_view(value)
        reason = rec.reason if rec.reason in _REASONS else "other"
        agency = rec.agency if isinstance(rec.agency, str) and rec.agency else UNKNOWN
        if not _LABEL_RE.match(agency):
            agency = UNKNOWN
        day = None
        if isinstance(rec.received_at, str):
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(rec.received_at)
                if when.tzinfo is not None:
                    day = when.astimezone(self._tz).date().isoformat()
        if day is None:
            day = datetime.fromtimestamp(timestamp_ms / 1000, self._tz).date().isoformat()
        k = (day, agency, reason)
        self._dead[k] = self._dead.get(k, 0) + 1
        if self._exposition is not None:
            self._exposition.add_dead_letter(agency, reason)

    def _apply(self, topic: str, key: bytes | None, value: bytes | None, ts: int) -> None:
        try:
            if topic == self._topics.aggregates:
                if key is None:
                    raise ValueError("aggregates record without a key")
                self.apply_aggregate(key, value)
            elif topic == self._topics.days:
                if key is None:
                    raise ValueError("closed-days record without a key")
                self.apply_closed_day(key, value)
            else:
                self.apply_dead_letter(value, ts)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._bad_records += 1
            if self._bad_records <= 10 or self._bad_records % 1000 == 0:
                logger.warning(
                    "skipped a malformed record topic=%s (%d so far): %s",
                    topic,
                    self._bad_records,
                    exc,
                )

    @property
    def exposition(self) -> LiveExposition:
        """The business families of /metrics (caller holds the lock).

        Built from the totals on first use and kept up to date from then on, so a
        catch-up (which /metrics withholds anyway) does not pay for it record by record.
        """
        live = self._exposition
        if live is None:
            live = LiveExposition(self._catalog)
            for cell, r in self._totals.items():
                live.add_rollup(cell, r)
            for gkey, g in self._gauges.items():
                live.gauges_changed(GaugeDims(*gkey[1:]), None, g)
            for (_day, agency, reason), n in self._dead.items():
                live.add_dead_letter(agency, reason, n)
            self._exposition = live
        return live

    @property
    def unknown_cells(self) -> int:
        """Cells /metrics leaves out (unknown to the catalog); 0 before it is built."""
        live = self._exposition
        return live.unknown_cells if live is not None else 0

    @property
    def bad_records(self) -> int:
        """Records that could not be decoded and were skipped."""
        return self._bad_records

    @property
    def conflicting_days(self) -> int:
        """Second ClosedDay records of a closed (day, partition, agency) that differed."""
        return self._conflicting_days

    def memory(self) -> dict[str, int]:
        """What the model holds, by kind (for the benchmark and tests: it decompresses
        every frozen group of live values to count them)."""
        with self.lock:
            return {
                "live_keys": sum(len(v) for v in self._raw.values())
                + sum(len(_raw_dec.decode(zlib.decompress(c))) for c in self._raw_cold.values()),
                "live_keys_decoded": sum(len(v) for v in self._raw.values()),
                "live_encoded_bytes": sum(len(c) for c in self._raw_cold.values()),
                "pending_keys": sum(len(v) for v in self._pending.values()),
                "closed": len(self._closed),
                "days_decoded": len(self._day_groups),
                "days_encoded": len(self._cold_days),
                "days_encoded_bytes": sum(len(v) for v in self._cold_days.values()),
                "cells": len(self._totals),
            }

    # -- the consumer thread -----------------------------------------------------------

    def start(self) -> None:
        """Start reading in a background thread (returns at once)."""
        self._thread = threading.Thread(target=self._run, name="api-readmodel", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and save a last snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.checkpoint is not None:
            self.checkpoint.close()

    def catch_up(self, timeout: float) -> None:
        """Read in the calling thread until caught up (the CLI report uses this).

        Raises:
            BusError: Kafka unreachable, or not caught up within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        consumer = self._open_consumer(deadline)
        try:
            while not self.status.ready:
                if time.monotonic() > deadline:
                    raise BusError(
                        f"read model not caught up within {timeout:g}s "
                        f"(lag {self.status.lag} records)"
                    )
                self._poll_once(consumer)
        finally:
            consumer.close()

    def _run(self) -> None:
        reconnect = Reconnect("read model consumer", self._stop, retry_on=(BusError,))
        reconnect.run(lambda: self._consume(reconnect))
        if self.status.ready:
            self.save_snapshot()

    def _consume(self, reconnect: Reconnect) -> None:
        """Connect and read until stopped; raises :class:`BusError` (KafkaError included)
        when connecting or reading fails, for the caller to retry."""
        try:
            consumer = self._open_consumer(None)
        except BusError as exc:
            self.status.error = str(exc)
            raise
        last_snapshot = time.monotonic()
        saved_version = self.version
        try:
            while not self._stop.is_set():
                self._poll_once(consumer)
                reconnect.progressed()
                if self.status.ready and self._exposition is None:
                    with self.lock:  # built here rather than by the first scrape
                        self.exposition  # noqa: B018
                if (
                    self.status.ready
                    and self.version != saved_version
                    and time.monotonic() - last_snapshot > self._snapshot_interval
                ):
                    self.save_snapshot()
                    last_snapshot = time.monotonic()
                    saved_version = self.version
                # a snapshot saved before the period ended is published once it has
                self._maybe_publish()
        except KafkaError as exc:
            self.status.error = f"consumer failed: {exc}"
            raise
        finally:
            self.status.connected = False
            with contextlib.suppress(Exception):
                consumer.close()

    def _open_consumer(self, deadline: float | None) -> Consumer:
        """Connect, assign every partition of both topics and seek; sets the targets."""
        try:
            consumer = connect(self._settings).consumer(
                client_id="servicepulse-api-readmodel", fetch_max_wait_ms=200
            )
        except KafkaError as exc:
            raise BusError(f"read model cannot connect to Kafka: {exc}") from exc
        try:
            tps: list[TopicPartition] = []
            for topic in self._topic_names():
                parts = consumer.partitions_for(topic, 10.0)
                while not parts:
                    late = deadline is not None and time.monotonic() > deadline
                    if self._stop.is_set() or late:
                        raise BusError(f"topic {topic!r} does not exist on the broker")
                    self.status.error = f"waiting for topic {topic!r} to be created"
                    self._stop.wait(1.0)  # a condition, until the deadline or a stop
                    parts = consumer.partitions_for(topic, 10.0)
                tps.extend(TopicPartition(topic, p) for p in sorted(parts))
            ends = {tp: end for tp, (_, end) in consumer.watermarks(tps, 30.0).items()}
            if not self._offsets:
                self._start_from_saved(ends)
            with self.lock:
                starts = {}
                for tp in tps:
                    pos = self._offsets.get((tp.topic, tp.partition))
                    starts[tp] = BEGINNING if pos is None else pos
            consumer.assign(starts)
            self._targets = {tp: ends.get(tp, 0) for tp in tps}
            self._assigned = tps
            self.status.connected = True
            self.status.error = ""
            self._update_lag(consumer)
            return consumer
        except KafkaError as exc:
            consumer.close()
            raise BusError(
                f"read model cannot read from {self._settings.kafka_bootstrap}: {exc}"
            ) from exc
        except BaseException:
            consumer.close()
            raise

    def _topic_names(self) -> list[str]:
        return [self._topics.aggregates, self._topics.days, self._topics.deadletter]

    def _poll_once(self, consumer: Consumer) -> None:
        records = consumer.poll(0.2, 5000)
        if records:
            with self.lock:
                offsets = self._offsets
                for rec in records:
                    self._apply(rec.topic, rec.key, rec.value, rec.timestamp)
                    offsets[(rec.topic, rec.partition)] = rec.offset + 1
                self.version += 1
            self.status.records += len(records)
        if time.monotonic() - self._last_freeze > _FREEZE_AFTER_S / 2:
            with self.lock:
                self.freeze()
        self._update_lag(consumer)

    def _update_lag(self, consumer: Consumer) -> None:
        lag = 0
        for tp in self._assigned:
            pos = consumer.position(tp)
            with self.lock:
                if pos is None:  # nothing read yet: where it was assigned to start
                    pos = self._offsets.get((tp.topic, tp.partition), 0)
                else:
                    self._offsets[(tp.topic, tp.partition)] = pos
            lag += max(0, self._targets[tp] - pos)
        self.status.lag = lag
        if lag == 0 and not self.status.ready:
            self.status.ready = True
            self.status.caught_up_at = time.time()
            logger.info(
                "read model caught up: %d records in %.1fs",
                self.status.records,
                self.status.caught_up_at - self.status.started_at,
            )

    # -- snapshot --------------------------------------------------------------------------

    def _maybe_publish(self) -> None:
        """Publish the snapshot just saved as the checkpoint, once per interval."""
        cp, path = self.checkpoint, self._snapshot_path
        if cp is None or path is None or self._checkpoint_interval <= 0:
            return
        if time.monotonic() - self._last_publish < self._checkpoint_interval:
            return
        version = self._saved_version
        if version is None or version == self._published_version:
            return  # nothing saved since the last publish
        try:
            started = cp.publish_async(path)
        except OSError as exc:
            logger.warning("cannot read the snapshot to publish it: %s", exc.strerror)
            return
        if started:
            self._last_publish = time.monotonic()
            self._published_version = version

    def save_snapshot(self) -> bool:
        """Write the model to the snapshot file (atomically); whether it was written
        (``False`` without a snapshot file or when writing failed)."""
        path = self._snapshot_path
        if path is None:
            return False
        with self.lock:
            days = dict(self._cold_days)
            days.update((d, _freeze(g)) for d, g in self._day_groups.items())
            snap = _Snapshot(
                version=_SNAPSHOT_VERSION,
                topics=self._topic_names(),
                offsets=[(t, p, o) for (t, p), o in self._offsets.items()],
                raw=[kv for held in self._raw.values() for kv in held.items()],
                raw_cold_frames=len(self._raw_cold),
                pending=[kv for held in self._pending.values() for kv in held.items()],
                records=self._records(),
                closed=[(d, p, a, h) for (d, p, a), h in self._closed.items()],
                totals=_day_enc.encode(list(self._totals.items())),
                days=sorted(days.items()),
                months=[(m, _freeze(g)) for m, g in sorted(self._months.items())],
                dead=[(d, a, r, n) for (d, a, r), n in self._dead.items()],
                saved_at=time.time(),
            )
            frozen = list(self._raw_cold.items())  # bytes: written outside the lock
            version = self.version
        data = msgspec.msgpack.encode(snap)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            # every agency's numbers: readable by the API's user only
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                # frames (length, msgpack): the header, then each frozen group of live
                # values, so neither writing nor reading holds the whole file at once
                size = _write_frame(f, data)
                del data
                for (d, p, a), c in frozen:
                    size += _write_frame(f, _day_enc.encode((d, p, a, c)))
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot write read-model snapshot %s: %s", path, exc.strerror)
            return False
        logger.debug("read model snapshot saved: %s (%d bytes)", path, size)
        self._saved_version = version
        return True

    def _records(self) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        out.extend(
            (GaugeKey(k[0], GaugeDims(*k[1:])).encode(), agg.encode(v))
            for k, v in self._gauges.items()
        )
        out.extend((agg.restatement_key(*k), agg.encode(v)) for k, v in self._restatements.items())
        out.extend((WatermarkKey(p).encode(), agg.encode(v)) for p, v in self._watermarks.items())
        return out

    def _start_from_saved(self, ends: dict[TopicPartition, int]) -> None:
        """Before the first read: load the local snapshot, else the checkpoint."""
        path = self._snapshot_path
        if path is not None and path.exists():
            with self.lock:
                if self._restore(path, ends):
                    self.status.restored_from_snapshot = True
                    return
        cp = self.checkpoint
        if cp is None:
            return
        if path is not None:
            target, scratch = path, None
        else:
            scratch = Path(tempfile.mkdtemp(prefix="servicepulse-checkpoint-"))
            target = scratch / "readmodel.snapshot"
        try:
            self.status.error = f"reading the checkpoint on {cp.topic}"
            started = time.monotonic()
            try:
                head = cp.fetch(target)
            except (KafkaError, TimeoutError, OSError) as exc:
                logger.warning("read-model checkpoint on %s not read: %s", cp.topic, exc)
                return
            finally:
                self.status.error = ""
            if head is None:
                logger.info("no read-model checkpoint on %s: reading the topics", cp.topic)
                return
            logger.info(
                "read-model checkpoint fetched from %s: %d bytes in %.1fs",
                cp.topic,
                head.size,
                time.monotonic() - started,
            )
            with self.lock:
                if self._restore(target, ends):
                    self.status.restored_from_checkpoint = True
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _restore(self, path: Path, ends: dict[TopicPartition, int]) -> bool:
        """Load the snapshot at ``path`` if it belongs to these topics and is not ahead
        of them (caller holds the lock); whether it was loaded."""
        try:
            with path.open("rb") as f:
                snap = msgspec.msgpack.decode(_read_frame(f), type=_Snapshot)
                raw_cold = {}
                for _ in range(snap.raw_cold_frames):
                    d, p, a, c = _frozen_dec.decode(_read_frame(f))
                    raw_cold[(d, p, a)] = c
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.warning("ignoring unreadable read-model snapshot %s: %s", path, exc)
            return False
        topics = self._topic_names()
        if snap.version != _SNAPSHOT_VERSION or snap.topics != topics:
            logger.info("ignoring read-model snapshot %s of other topics", path)
            return False
        for t, p, o in snap.offsets:
            end = ends.get(TopicPartition(t, p))
            if end is None or o > end:
                # the topic was recreated: its offsets start again below ours
                logger.warning("ignoring read-model snapshot %s: %s[%d] is behind it", path, t, p)
                return False
        self._closed = {(d, p, a): h for d, p, a, h in snap.closed}
        for target, items in ((self._raw, snap.raw), (self._pending, snap.pending)):
            for k, v in items:
                rk = _rollup_key(k)
                target.setdefault((rk.day, rk.partition, rk.dims.agency), {})[k] = v
        self._raw_cold = raw_cold
        for k, v in snap.records:
            sk = agg.decode_key(k)
            if isinstance(sk, RestatementKey):  # closed days' logs too: set, not filtered
                self._restatements[(sk.partition, sk.day, sk.agency)] = agg.decode_restatement(v)
            else:
                self._apply(self._topics.aggregates, k, v, 0)
        self._totals = dict(_totals_dec.decode(snap.totals))
        self._cold_days = dict(snap.days)
        self._months = {m: _thaw(g) for m, g in snap.months}
        self._dead = {(d, a, r): n for d, a, r, n in snap.dead}
        self._exposition = None  # rebuilt from what was restored
        self._offsets = {(t, p): o for t, p, o in snap.offsets}
        logger.info(
            "read model restored from %s: %d live keys, %d days, saved %.0fs ago",
            path,
            len(snap.raw),
            len(snap.days),
            time.time() - snap.saved_at,
        )
        return True

    # -- queries (each takes the lock) --------------------------------------------------------

    def totals(self) -> list[tuple[Dims, Rollup]]:
        """Every cell with its rollup summed over all days and partitions (copies)."""
        with self.lock:
            return [(c, _copy(r)) for c, r in self._totals.items()]

    def totals_view(self) -> Iterable[tuple[Dims, Rollup]]:
        """The live totals by cell, not copied: iterate while holding :attr:`lock`."""
        return self._totals.items()

    def days(self) -> list[str]:
        """The days that have rollups, ascending."""
        with self.lock:
            return sorted(self._day_groups.keys() | self._cold_days.keys())

    def period(
        self, day_from: str, day_to: str, group: Callable[[Group], K | None]
    ) -> dict[K, Rollup]:
        """Rollups of days ``day_from..day_to`` (ISO, inclusive) summed by ``group(g)``.

        ``g`` is (agency, service, life_situation, channel); groups for which ``group`` returns
        ``None`` are left out.
        """
        out: dict[K, Rollup] = {}
        memo: dict[Group, K | None] = {}
        # one hold of the lock, so the sum is of one moment; a frozen day is decoded
        # here and summed (``acc.add`` copies: nothing decoded is kept)
        with self.lock:
            whole = {m for m in self._months if _month_within(m, day_from, day_to)}
            for m in whole:
                self._sum_into(out, memo, self._months[m].items(), group)
            for day, groups in self._day_groups.items():
                if day_from <= day <= day_to and day[:7] not in whole:
                    self._sum_into(out, memo, groups.items(), group)
            cold = sorted(
                (day, data)
                for day, data in self._cold_days.items()
                if day_from <= day <= day_to and day[:7] not in whole
            )
            self._sum_into(out, memo, self._cold_sum(cold).items(), group)
        return out

    def _cold_sum(self, cold: list[tuple[str, bytes]]) -> dict[Group, Rollup]:
        """The frozen days ``cold`` summed by group, remembered for the next query.

        A report asks several groupings of one period: the frozen days (whose bytes do
        not change while frozen: a change thaws a day, its next freeze makes new bytes)
        are decoded and summed once for all of them. A hit is the same days with the
        very same bytes objects.
        """
        days = tuple(day for day, _ in cold)
        hit = self._cold_sums.get(days)
        if hit is not None and all(a is b for a, (_, b) in zip(hit[0], cold, strict=True)):
            return hit[1]
        out: dict[Group, Rollup] = {}
        for _day, data in cold:
            for g, r in _day_dec.decode(data):
                _accumulate(out, g, r, owned=True)
        self._cold_sums.pop(days, None)
        if len(self._cold_sums) >= 4:
            self._cold_sums.pop(next(iter(self._cold_sums)))
        self._cold_sums[days] = ([data for _, data in cold], out)
        return out

    @staticmethod
    def _sum_into(
        out: dict[K, Rollup],
        memo: dict[Group, K | None],
        items: Iterable[tuple[Group, Rollup]],
        group: Callable[[Group], K | None],
    ) -> None:
        for g, r in items:
            k = memo[g] if g in memo else memo.setdefault(g, group(g))
            if k is None:
                continue
            acc = out.get(k)
            if acc is None:
                acc = out[k] = Rollup()
            acc.add(r)

    def gauges(self) -> list[tuple[GaugeDims, Gauges]]:
        """Live gauges summed over partitions, by gauge cell."""
        out: dict[GaugeDims, Gauges] = {}
        with self.lock:
            for (_p, a, s, m, c), g in self._gauges.items():
                acc = out.setdefault(GaugeDims(a, s, m, c), Gauges())
                for f in Gauges.__struct_fields__:
                    setattr(acc, f, getattr(acc, f) + getattr(g, f))
        return list(out.items())

    def restatements(self, day_from: str, day_to: str) -> list[tuple[str, str, Restatement]]:
        """(day, agency, restatement summed over partitions) of the period, by day."""
        out: dict[tuple[str, str], Restatement] = {}
        with self.lock:
            for (_p, day, agency), r in self._restatements.items():
                if not day_from <= day <= day_to:
                    continue
                acc = out.setdefault((day, agency), Restatement())
                acc.count += r.count
                acc.first_at = min(filter(None, (acc.first_at, r.first_at)), default="")
                acc.last_at = max(acc.last_at, r.last_at)
                acc.recent = sorted([*acc.recent, *r.recent], key=lambda e: e.at)[-20:]
        return [(d, a, r) for (d, a), r in sorted(out.items())]

    def dead_letters(
        self, day_from: str | None = None, day_to: str | None = None
    ) -> dict[tuple[str, str], int]:
        """Dead letters by (agency, reason), of the period (receive day) or of all time."""
        out: dict[tuple[str, str], int] = {}
        with self.lock:
            for (day, agency, reason), n in self._dead.items():
                if day_from is not None and day_to is not None and not day_from <= day <= day_to:
                    continue
                out[(agency, reason)] = out.get((agency, reason), 0) + n
        return out

    def watermark(self) -> datetime | None:
        """The lowest event-time watermark over input partitions: data complete up to it."""
        with self.lock:
            if not self._watermarks:
                return None
            low = min(w.watermark for w in self._watermarks.values())
        return datetime.fromtimestamp(low, UTC)


def _month_within(month: str, day_from: str, day_to: str) -> bool:
    """Whether every day of ``month`` ("YYYY-MM") is in ``day_from..day_to``."""
    try:
        last = calendar.monthrange(int(month[:4]), int(month[5:7]))[1]
    except ValueError:  # a malformed day in a key: summed day by day instead
        return False
    return day_from <= f"{month}-01" and f"{month}-{last:02d}" <= day_to


def _accumulate(target: dict[K, Rollup], key: K, delta: Rollup, owned: bool = False) -> None:
    """Add ``delta`` into ``target[key]``; with ``owned`` a new entry is ``delta`` itself."""
    acc = target.get(key)
    if acc is None:
        # a msgspec round trip copies in microseconds; Rollup.add field by field is ~10x slower
        target[key] = delta if owned else agg.decode_rollup(agg.encode(delta))
    else:
        acc.add(delta)


def _copy(r: Rollup) -> Rollup:
    out = Rollup()
    out.add(r)
    return out
