"""Daily rollups, restatements and live gauges of one partition, with dirty tracking.

Every counter lands in the cell of one event-time day (catalog time zone) and one set
of dimensions. Cells touched since the last flush are written once per transaction,
whole and cumulative (the format is :mod:`contract.aggregates`). A change to a day the
watermark had closed before it (day end <= watermark) is also logged as a restatement.
Once the watermark passed a day's end plus the restatement horizon, the day is final:
its cells leave memory and go to ``<prefix>.days`` as one record per agency
(docs/AGGREGATES.md, "Bounded history"). Until then the cells of a closed day (only a
late event changes them) are held packed: per (day, agency) zstd-compressed MessagePack
maps of their record bytes, unpacked when an event touches that group. A restore stages
the records of closed days as their bytes in a :class:`Stage`, bounded over all the
partitions it restores, and packs them in bulk, so it never holds them loose.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
import zstandard

from contract import aggregates as agg
from contract.aggregates import (
    Dims,
    GaugeDims,
    GaugeKey,
    Gauges,
    Restatement,
    RestatementEntry,
    RestatementKey,
    Rollup,
    RollupKey,
)
from contract.topics import DAYS_MAX_BYTES
from processors.context import iso
from processors.state import Intern

logger = logging.getLogger(__name__)

#: cells of one closed (day, agency): the ``r|`` key's last four parts
#: (``service|municipality|channel|life_situation``) -> the record's bytes, ``b""`` for a
#: tombstone (a value is never empty: JSON is at least ``{}``). A packed group is one or
#: more of these, each a zstd frame, read in order: a later one's values win.
_Group = dict[str, bytes]
_pack_encode: Final = msgspec.msgpack.Encoder().encode
_unpack: Final = msgspec.msgpack.Decoder(_Group).decode
#: zstd level of packed groups: level 1 is about 7x smaller than the records, and
#: compresses several times faster than zlib's level 1
PACK_LEVEL: Final = 1
#: Raw bytes (keys' tails plus values) a restore stages before it packs them: bounds
#: what a restore holds of closed days, whatever their number
STAGE_LIMIT: Final = 64 * 1024 * 1024
#: A ClosedDay record larger than this is logged: half the days topic's record limit.
#: At the demo's rate the largest is about 1.4 MB (docs/PROCESSOR.md, "Limits")
DAYS_WARN_BYTES: Final = DAYS_MAX_BYTES // 2


def _compress(data: bytes, zc: zstandard.ZstdCompressor | None = None) -> bytes:
    """``data`` as one zstd frame (level :data:`PACK_LEVEL`), held in exactly its size.

    python-zstandard returns the frame in a buffer of the worst-case size
    (``ZSTD_compressBound``, a little over the input's) and never shrinks it: seven to
    ten times the frame here, kept for as long as the group stays packed. The copy is
    what makes it small (tests/processors/test_packed_days.py measures it).
    """
    frame = zc.compress(data) if zc is not None else zstandard.compress(data, PACK_LEVEL)
    return bytes(memoryview(frame))


#: Indexes into a gauge cell's counts, in the order of :class:`contract.aggregates.Gauges`.
OPEN_JOURNEYS: Final = 0
PENDING: Final = 1
OVERDUE: Final = 2
APPEALS_OPEN: Final = 3
APPEALS_OVERDUE: Final = 4
INTERAGENCY_OPEN: Final = 5
_GAUGE_FIELDS: Final = tuple(Gauges.__struct_fields__)

Records = list[tuple[bytes, bytes | None]]


class RollupBook:
    """The cumulative rollups of one partition, by day and dims.

    Only the live window is held: once a day is final (:meth:`finalize`), its cells
    leave memory and the next flush writes them as :class:`contract.aggregates.ClosedDay`
    records and tombstones their ``r|`` and ``s|`` keys.

    Args:
        partition: the input partition (part of every record key).
    """

    __slots__ = (
        "_closed",
        "_noted",
        "_restate_dirty",
        "_retired",
        "cells",
        "dirty",
        "final_day",
        "intern",
        "open_day",
        "packed",
        "partition",
        "restatements",
        "staged",
    )

    def __init__(self, partition: int, intern: Intern | None = None) -> None:
        self.partition = partition
        #: per day, per dims; a restored cell stays the record's bytes (a few hundred
        #: bytes, where a decoded Rollup costs ~1.7 KB) until an event changes it. A day
        #: held packed keeps its (then empty) row.
        self.cells: dict[str, dict[Dims, Rollup | bytes]] = {}
        #: closed days' cells by (day, agency): (how many, compressed parts in order); a
        #: group is either packed here or loose in ``cells``, never both (after a restore)
        self.packed: dict[tuple[str, str], tuple[int, tuple[bytes, ...]]] = {}
        #: a restore's records of closed days by (day, agency), not packed yet (the
        #: :class:`Stage` of the restore packs them; empty once it finished)
        self.staged: dict[tuple[str, str], _Group] = {}
        #: shared dimension tuples (the engine's), for the cells of unpacked groups
        self.intern: Intern = {} if intern is None else intern
        #: the cells changed since the last flush, by day (no tuple per change)
        self.dirty: dict[str, set[Dims]] = {}
        #: Days before this ISO date are closed (their end is at or before the watermark).
        self.open_day = ""
        #: Days before this ISO date are final: written to ``<prefix>.days``, not held.
        self.final_day = ""
        self.restatements: dict[tuple[str, str], Restatement] = {}
        self._restate_dirty: set[tuple[str, str]] = set()
        self._noted: dict[tuple[str, str], set[str]] = {}
        #: ClosedDay records and aggregate tombstones of days made final since last flush
        self._closed: Records = []
        self._retired: Records = []

    def cell(self, day: str, dims: Dims, field: str) -> Rollup:
        """The rollup of ``day`` and ``dims``, marked changed in ``field``.

        ``day`` must not be final (callers count an event of a final day as
        ``too_late`` on the open day instead).
        """
        row = self.cells.get(day)
        if row is None:
            row = self.cells[day] = {}
        got = row.get(dims)
        if got is None and self.packed:
            self._unpack(day, dims.agency, row)
            got = row.get(dims)
        if got is None:
            r = row[dims] = Rollup()
        elif isinstance(got, bytes):
            r = row[dims] = agg.decode_rollup(got)
        else:
            r = got
        changed = self.dirty.get(day)
        if changed is None:
            changed = self.dirty[day] = set()
        changed.add(dims)
        if day < self.open_day:
            self._noted.setdefault((day, dims.agency), set()).add(field)
        return r

    def _unpack(self, day: str, agency: str, row: dict[Dims, Rollup | bytes]) -> None:
        """Put the packed cells of ``day`` and ``agency`` (if any) back into ``row``."""
        got = self.packed.pop((day, agency), None)
        if got is None:
            return
        intern = self.intern
        for part in got[1]:
            for tail, value in _unpack(zstandard.decompress(part)).items():
                service, municipality, channel, situation = tail.split(agg.SEP)
                parts = (agency, service, municipality, channel, situation)
                dims = intern.get(parts)
                if dims is None:
                    dims = intern[parts] = Dims(*parts)
                if value:
                    row[dims] = value
                else:
                    row.pop(dims, None)

    def pack(self) -> int:
        """Pack the loose cells of closed days (before ``open_day``) per (day, agency),
        except groups with a cell changed since the last flush; returns cells packed.

        A cell keeps its record bytes (a decoded one is encoded as :meth:`flush` wrote
        it), so what is unpacked later is what was written.
        """
        n = 0
        dirty = self.dirty
        for day, row in self.cells.items():
            if day >= self.open_day or not row:
                continue
            groups: dict[str, list[Dims]] = {}
            busy: set[str] = set()
            changed = dirty.get(day)
            for dims in row:
                groups.setdefault(dims.agency, []).append(dims)
                if changed and dims in changed:
                    busy.add(dims.agency)
            for agency, members in groups.items():
                if agency in busy:
                    continue
                if (day, agency) in self.packed:  # only after a restore: staged are newer
                    self._unpack(day, agency, row)
                    members = [d for d in row if d.agency == agency]
                cells: _Group = {}
                for dims in members:
                    v = row.pop(dims)
                    cells[agg.SEP.join(dims[1:])] = v if isinstance(v, bytes) else agg.encode(v)
                blob = _compress(_pack_encode(cells))
                self.packed[(day, agency)] = (len(cells), (blob,))
                n += len(cells)
            if len(busy) < len(groups):  # a smaller table for what stays loose
                self.cells[day] = dict(row)
        return n

    def pack_staged(self, compress: zstandard.ZstdCompressor) -> int:
        """Pack what a restore staged (:meth:`Stage.add`), each group after the parts it
        has packed already (later records win); returns the records packed."""
        n = 0
        packed = self.packed
        for key, group in self.staged.items():
            blob = _compress(_pack_encode(group), compress)
            cells = len(group) - sum(1 for v in group.values() if not v)
            old = packed.get(key)
            packed[key] = (cells, (blob,)) if old is None else (old[0] + cells, (*old[1], blob))
            self.cells.setdefault(key[0], {})  # a packed day keeps its row
            n += len(group)
        self.staged = {}
        return n

    def drop_final(self) -> int:
        """Forget the cells of days before ``final_day`` (after a restore): they are on
        ``<prefix>.days`` and their keys were tombstoned when they became final, so
        a restore that read their values before the tombstones holds nothing else of
        them. Returns the days dropped."""
        final = self.final_day
        days = [d for d in self.cells if d < final]
        for d in days:
            del self.cells[d]
        for key in [k for k in self.packed if k[0] < final]:
            del self.packed[key]
        for key in [k for k in self.restatements if k[0] < final]:
            del self.restatements[key]
        return len(days)

    def end_event(self, at_ms: int, event_type: str) -> None:
        """Close the changes of one event (or timer): log those to closed days."""
        if not self._noted:
            return
        at = iso(at_ms)
        for key, fields in self._noted.items():
            rs = self.restatements.get(key)
            if rs is None:
                rs = self.restatements[key] = Restatement(first_at=at)
            rs.count += 1
            rs.last_at = at
            rs.recent.append(RestatementEntry(at, event_type, sorted(fields)))
            if len(rs.recent) > agg.RESTATEMENT_RECENT:
                del rs.recent[: len(rs.recent) - agg.RESTATEMENT_RECENT]
            self._restate_dirty.add(key)
        self._noted = {}

    def finalize(self, before: str, watermark_ms: int) -> int:
        """Make every day before ``before`` final; returns how many days left memory.

        Their cells, merged per agency with the day's restatement log, become the
        ClosedDay records of the next flush, and their ``r|`` and ``s|`` keys its
        tombstones. Deterministic: records and cells in sorted order. ``final_day``
        never moves back (a horizon raised later does not reopen a day already written).
        """
        if before <= self.final_day:
            return 0
        self.final_day = before
        for day, agency in sorted(k for k in self.packed if k[0] < before):
            self._unpack(day, agency, self.cells.setdefault(day, {}))
        days = sorted(d for d in self.cells if d < before)
        days += sorted({d for d, _ in self.restatements if d < before and d not in self.cells})
        p = self.partition
        for day in days:
            row = self.cells.pop(day, {})
            self.dirty.pop(day, None)  # its changed cells are all in the row
            by_agency: dict[str, list[Dims]] = {}
            for dims in row:
                by_agency.setdefault(dims.agency, []).append(dims)
            for agency in {a for d, a in self.restatements if d == day}:
                by_agency.setdefault(agency, [])
            for agency in sorted(by_agency):
                cells = []
                for dims in sorted(by_agency[agency]):
                    v = row[dims]
                    rollup = agg.decode_rollup(v) if isinstance(v, bytes) else v
                    cells.append(
                        agg.ClosedCell(
                            dims.service,
                            dims.municipality,
                            dims.channel,
                            dims.life_situation,
                            rollup,
                        )
                    )
                    self._retired.append((RollupKey(p, day, dims).encode(), None))
                rs = self.restatements.pop((day, agency), None)
                self._restate_dirty.discard((day, agency))
                if rs is not None:
                    self._retired.append((RestatementKey(p, day, agency).encode(), None))
                closed = agg.ClosedDay(day, p, agency, cells, rs, watermark_ms / 1000)
                value = agg.encode(closed)
                if len(value) > DAYS_WARN_BYTES:
                    # over DAYS_MAX_BYTES the commit fails and the session restarts
                    logger.warning(
                        "closed day %s partition=%d agency=%s is %d bytes, %.0f%% of the "
                        "days topic's record limit (%d bytes)",
                        day,
                        p,
                        agency,
                        len(value),
                        100 * len(value) / DAYS_MAX_BYTES,
                        DAYS_MAX_BYTES,
                    )
                self._closed.append((agg.closed_day_key(day, p, agency), value))
        return len(days)

    @property
    def pending(self) -> bool:
        """Whether a flush would write anything."""
        return bool(self.dirty or self._restate_dirty or self._closed)

    def flush(self) -> Records:
        """Aggregate records of the cells and restatement logs changed since last flush,
        and tombstones of the keys of days made final."""
        p = self.partition
        enc = agg.encode
        cells = self.cells
        out: Records = [
            (RollupKey(p, day, dims).encode(), enc(cells[day][dims]))
            for day, changed in self.dirty.items()
            for dims in changed
        ]
        self.dirty = {}
        out.extend(
            (
                RestatementKey(p, day, agency).encode(),
                enc(self.restatements[(day, agency)]),
            )
            for day, agency in self._restate_dirty
        )
        self._restate_dirty = set()
        out.extend(self._retired)
        self._retired = []
        self.pack()
        return out

    def flush_days(self) -> Records:
        """The ClosedDay records (``<prefix>.days``) of days made final since last flush."""
        out, self._closed = self._closed, []
        return out

    def restore(self, key: RollupKey | RestatementKey, value: bytes | None, intern: Intern) -> None:
        """Load one aggregate record of this partition (in offset order); a tombstone
        (``None``) deletes what an earlier record of the key loaded."""
        if isinstance(key, RollupKey):
            if value is None:
                row = self.cells.get(key.day)
                if row is not None:
                    row.pop(key.dims, None)
                    if not row:
                        del self.cells[key.day]
                return
            dims = intern.setdefault(key.dims, key.dims)
            self.cells.setdefault(key.day, {})[dims] = bytes(value)
        elif value is None:
            self.restatements.pop((key.day, key.agency), None)
        else:
            self.restatements[(key.day, key.agency)] = agg.decode_restatement(value)

    def __len__(self) -> int:
        """Cells held (live window), packed or not. A group packed by a restore counts
        the records read for it: a value overwritten in an uncompacted tail of the topic
        counts once more until the group is unpacked."""
        return (
            sum(map(len, self.cells.values()))
            + sum(n for n, _ in self.packed.values())
            + sum(map(len, self.staged.values()))
        )


class Stage:
    """The records of closed days read by one restore, held as their bytes, and packed.

    One per restore, shared by the books of every partition it restores: whenever the
    raw bytes staged would pass ``limit`` every book packs what it staged
    (:meth:`RollupBook.pack_staged`, zstd level :data:`PACK_LEVEL`), so what a restore
    holds of closed days besides their packed parts is at most ``limit`` bytes of
    records, whatever the days kept. Nothing staged is decoded: the values stay the
    records' bytes until an event touches their group.
    """

    __slots__ = ("_books", "_zc", "limit", "packs", "peak", "size")

    def __init__(self, limit: int = STAGE_LIMIT) -> None:
        self.limit = limit
        #: raw bytes staged now, and the most ever staged at once
        self.size = 0
        self.peak = 0
        #: times the staged bytes were packed
        self.packs = 0
        self._books: dict[int, RollupBook] = {}
        # one restore runs on one thread: the compressor's context is reused
        self._zc = zstandard.ZstdCompressor(level=PACK_LEVEL)

    def add(self, book: RollupBook, day: str, agency: str, tail: str, value: bytes | None) -> None:
        """Stage the ``r|`` record of a closed ``day`` (its key's last four parts
        ``tail``; ``None``: a tombstone) for ``book``; a later record of the key wins."""
        n = len(tail) + (len(value) if value else 0)
        if self.size and self.size + n > self.limit:
            self.pack()
        group = book.staged.get((day, agency))
        if group is None:
            group = book.staged[(day, agency)] = {}
            self._books[id(book)] = book
        group[tail] = bytes(value) if value else b""
        self.size += n
        if self.size > self.peak:
            self.peak = self.size

    def pack(self) -> int:
        """Pack everything staged; returns the records packed."""
        n = sum(book.pack_staged(self._zc) for book in self._books.values())
        self._books = {}
        self.size = 0
        self.packs += 1
        return n


class GaugeBook:
    """Live counts per gauge cell (agency, service, municipality, channel).

    Records are written for cells whose counts differ from what was last written,
    including a change back to zero.
    """

    __slots__ = ("counts", "dirty", "last", "partition")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.counts: dict[GaugeDims, list[int]] = {}
        self.dirty: set[GaugeDims] = set()
        self.last: dict[GaugeDims, bytes] = {}

    def add(self, cell: GaugeDims, index: int, delta: int) -> None:
        """Add ``delta`` to gauge ``index`` of ``cell``."""
        c = self.counts.get(cell)
        if c is None:
            c = self.counts[cell] = [0, 0, 0, 0, 0, 0]
        c[index] += delta
        self.dirty.add(cell)

    def value(self, cell: GaugeDims) -> Gauges:
        """The current gauges of one cell."""
        c = self.counts.get(cell) or [0] * 6
        return Gauges(*c)

    def flush(self) -> Records:
        """Gauge records of the cells whose value changed since it was last written."""
        out: Records = []
        for cell in self.dirty:
            value = agg.encode(self.value(cell))
            if self.last.get(cell) != value:
                self.last[cell] = value
                out.append((GaugeKey(self.partition, cell).encode(), value))
        self.dirty = set()
        return out

    def restore(self, key: GaugeKey, value: bytes | None) -> None:
        """Remember a gauge record last written for this partition."""
        cell = key.dims
        if value is None:  # never written by the processor; a reader drops the key
            self.last.pop(cell, None)
            self.dirty.discard(cell)
            return
        self.last[cell] = value
        self.dirty.add(cell)

    def reset_counts(self) -> None:
        """Zero every count (before recounting from restored state); keeps ``last``."""
        self.counts = {}
        self.dirty = set(self.last)
