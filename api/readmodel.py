"""The read model: the aggregates and dead-letter topics materialised in memory.

A background thread reads both topics ``read_committed`` from the beginning (or from a
local snapshot) and keeps the latest value of every aggregates key (the record format is
in :mod:`contract.aggregates`). Rollups are cumulative per input partition, so the truth
for a cell and day is the sum over partitions of the latest records; the model keeps
that sum per (day, cell) and over all days per cell, updated by difference when a key is
rewritten, so /metrics and period queries never re-read Kafka.

Dead-letter records (from the API and the processor) are counted by (receive day,
agency, reason); their bodies are never kept.

Readiness: the model is ready once it has read up to the end offsets it saw at start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NamedTuple, TypeVar

import msgspec

from api.exposition import LiveExposition
from contract import aggregates as agg
from contract import deadletter as dl
from contract.aggregates import (
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

logger = logging.getLogger(__name__)


class Group(NamedTuple):
    """What scorecards and reports group a day's rollups by (summed over municipalities)."""

    agency: str
    service: str
    life_situation: str
    channel: str


K = TypeVar("K", bound=Hashable)

UNKNOWN: Final = "unknown"
_REASONS: Final = frozenset(r.value for r in Reason)
_SNAPSHOT_VERSION: Final = 1
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


class _Snapshot(msgspec.Struct):
    version: int
    topics: list[str]
    offsets: list[tuple[str, int, int]]
    records: list[tuple[bytes, bytes]]
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


class ReadModel:
    """The materialised aggregates and dead-letter counts. Thread-safe.

    Args:
        settings: where Kafka is.
        topics: which topics to read.
        catalog: its time zone gives the receive day of dead letters.
        snapshot: file to restore from and save to; ``None`` for none.
        snapshot_interval: seconds between snapshots while records keep coming.
    """

    def __init__(
        self,
        settings: CommonSettings,
        topics: Topics,
        catalog: Catalog,
        snapshot: Path | None = None,
        snapshot_interval: float = 30.0,
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
        # the latest value of each r| key as its record bytes: a few hundred bytes
        # where the decoded Rollup costs ~1.7 KB; decoded again only when rewritten
        self._raw: dict[bytes, bytes] = {}
        # per day only by Group: periods of a year stay cheap to sum (municipality is
        # summed over already; /metrics uses the totals by full cell)
        self._day_groups: dict[str, dict[Group, Rollup]] = {}
        self._totals: dict[Dims, Rollup] = {}
        self._gauges: dict[GaugeKey, Gauges] = {}
        self._restatements: dict[RestatementKey, Restatement] = {}
        self._watermarks: dict[int, Watermark] = {}
        self._dead: dict[tuple[str, str, str], int] = {}
        self._offsets: dict[tuple[str, int], int] = {}

    # -- applying records ------------------------------------------------------------

    def apply_aggregate(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the aggregates topic (caller holds the lock)."""
        k = agg.decode_key(key)
        if isinstance(k, RollupKey):
            day, cell = k.day, k.dims
            new = agg.decode_rollup(value) if value is not None else None
            old_value = self._raw.pop(key, None)
            if old_value == value:
                if value is not None:
                    self._raw[key] = value
                return
            old = agg.decode_rollup(old_value) if old_value is not None else None
            if value is not None:
                self._raw[key] = value
            group = Group(cell.agency, cell.service, cell.life_situation, cell.channel)
            delta = difference(new, old)
            if delta is not None:
                # totals first: they copy; the day's sum may then keep ``delta`` itself
                # (difference() always returns a fresh object, referenced nowhere else)
                _accumulate(self._totals, cell, delta)
                _accumulate(self._day_groups.setdefault(day, {}), group, delta, owned=True)
                if self._exposition is not None:
                    self._exposition.add_rollup(cell, delta)
        elif isinstance(k, GaugeKey):
            if value is None:
                gold = self._gauges.pop(k, None)
                gnew = None
            else:
                gold = self._gauges.get(k)
                gnew = self._gauges[k] = agg.decode_gauges(value)
            if self._exposition is not None:
                self._exposition.gauges_changed(k.dims, gold, gnew)
        elif isinstance(k, RestatementKey):
            if value is None:
                self._restatements.pop(k, None)
            else:
                self._restatements[k] = agg.decode_restatement(value)
        elif isinstance(k, WatermarkKey):
            if value is None:
                self._watermarks.pop(k.partition, None)
            else:
                self._watermarks[k.partition] = agg.decode_watermark(value)
        else:
            raise ValueError(f"not an aggregates key {key[:80]!r}")

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
                live.gauges_changed(gkey.dims, None, g)
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
        delay = 0.5
        while not self._stop.is_set():
            try:
                consumer = self._open_consumer(None)
            except BusError as exc:
                self.status.error = str(exc)
                logger.warning("read model not connected (retry in %.1fs): %s", delay, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            last_snapshot = time.monotonic()
            saved_version = self.version
            try:
                while not self._stop.is_set():
                    self._poll_once(consumer)
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
            except KafkaError as exc:
                self.status.error = f"consumer failed: {exc}"
                logger.warning("read model consumer failed, reconnecting: %s", exc)
            finally:
                self.status.connected = False
                with contextlib.suppress(Exception):
                    consumer.close()
        if self.status.ready:
            self.save_snapshot()

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
            for topic in (self._topics.aggregates, self._topics.deadletter):
                parts = consumer.partitions_for(topic, 10.0)
                while not parts:
                    late = deadline is not None and time.monotonic() > deadline
                    if self._stop.is_set() or late:
                        raise BusError(f"topic {topic!r} does not exist on the broker")
                    self.status.error = f"waiting for topic {topic!r} to be created"
                    time.sleep(1.0)
                    parts = consumer.partitions_for(topic, 10.0)
                tps.extend(TopicPartition(topic, p) for p in sorted(parts))
            ends = {tp: end for tp, (_, end) in consumer.watermarks(tps, 30.0).items()}
            with self.lock:
                if not self._offsets:
                    self._restore(ends)
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

    def save_snapshot(self) -> None:
        """Write the model to the snapshot file (atomically); no-op without one."""
        path = self._snapshot_path
        if path is None:
            return
        with self.lock:
            snap = _Snapshot(
                version=_SNAPSHOT_VERSION,
                topics=[self._topics.aggregates, self._topics.deadletter],
                offsets=[(t, p, o) for (t, p), o in self._offsets.items()],
                records=self._records(),
                dead=[(d, a, r, n) for (d, a, r), n in self._dead.items()],
                saved_at=time.time(),
            )
        data = msgspec.msgpack.encode(snap)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            # every agency's numbers: readable by the API's user only
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot write read-model snapshot %s: %s", path, exc.strerror)
            return
        logger.debug("read model snapshot saved: %s (%d bytes)", path, len(data))

    def _records(self) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = list(self._raw.items())
        out.extend((k.encode(), agg.encode(v)) for k, v in self._gauges.items())
        out.extend((k.encode(), agg.encode(v)) for k, v in self._restatements.items())
        out.extend((WatermarkKey(p).encode(), agg.encode(v)) for p, v in self._watermarks.items())
        return out

    def _restore(self, ends: dict[TopicPartition, int]) -> None:
        """Load the snapshot if it belongs to these topics and is not ahead of them."""
        path = self._snapshot_path
        if path is None or not path.exists():
            return
        try:
            snap = msgspec.msgpack.decode(path.read_bytes(), type=_Snapshot)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.warning("ignoring unreadable read-model snapshot %s: %s", path, exc)
            return
        topics = [self._topics.aggregates, self._topics.deadletter]
        if snap.version != _SNAPSHOT_VERSION or snap.topics != topics:
            logger.info("ignoring read-model snapshot %s of other topics", path)
            return
        for t, p, o in snap.offsets:
            end = ends.get(TopicPartition(t, p))
            if end is None or o > end:
                # the topic was recreated: its offsets start again below ours
                logger.warning("ignoring read-model snapshot %s: %s[%d] is behind it", path, t, p)
                return
        for k, v in snap.records:
            self._apply(self._topics.aggregates, k, v, 0)
        self._dead = {(d, a, r): n for d, a, r, n in snap.dead}
        self._exposition = None  # rebuilt from what was restored
        self._offsets = {(t, p): o for t, p, o in snap.offsets}
        self.status.restored_from_snapshot = True
        logger.info(
            "read model restored from %s: %d records, saved %.0fs ago",
            path,
            len(snap.records),
            time.time() - snap.saved_at,
        )

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
            return sorted(self._day_groups)

    def period(
        self, day_from: str, day_to: str, group: Callable[[Group], K | None]
    ) -> dict[K, Rollup]:
        """Rollups of days ``day_from..day_to`` (ISO, inclusive) summed by ``group(g)``.

        ``g`` is (agency, service, life_situation, channel); groups for which ``group`` returns
        ``None`` are left out.
        """
        out: dict[K, Rollup] = {}
        memo: dict[Group, K | None] = {}
        with self.lock:
            for day, groups in self._day_groups.items():
                if not day_from <= day <= day_to:
                    continue
                for g, r in groups.items():
                    k = memo[g] if g in memo else memo.setdefault(g, group(g))
                    if k is None:
                        continue
                    acc = out.get(k)
                    if acc is None:
                        acc = out[k] = Rollup()
                    acc.add(r)
        return out

    def gauges(self) -> list[tuple[GaugeDims, Gauges]]:
        """Live gauges summed over partitions, by gauge cell."""
        out: dict[GaugeDims, Gauges] = {}
        with self.lock:
            for k, g in self._gauges.items():
                acc = out.setdefault(k.dims, Gauges())
                for f in Gauges.__struct_fields__:
                    setattr(acc, f, getattr(acc, f) + getattr(g, f))
        return list(out.items())

    def restatements(self, day_from: str, day_to: str) -> list[tuple[str, str, Restatement]]:
        """(day, agency, restatement summed over partitions) of the period, by day."""
        out: dict[tuple[str, str], Restatement] = {}
        with self.lock:
            for k, r in self._restatements.items():
                if not day_from <= k.day <= day_to:
                    continue
                acc = out.setdefault((k.day, k.agency), Restatement())
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
