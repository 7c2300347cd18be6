"""Daily rollups, restatements and live gauges of one partition, with dirty tracking.

Every counter lands in the cell of one event-time day (catalog time zone) and one set
of dimensions. Cells touched since the last flush are written once per transaction,
whole and cumulative (the format is :mod:`contract.aggregates`). A change to a day the
watermark had closed before it (day end <= watermark) is also logged as a restatement.
"""

from __future__ import annotations

from typing import Final

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
from processors.context import iso
from processors.state import Intern

CellKey = tuple[str, Dims]

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
    """The cumulative rollups of one partition, by (day, dims).

    Args:
        partition: the input partition (part of every record key).
    """

    __slots__ = (
        "_noted",
        "_restate_dirty",
        "cells",
        "dirty",
        "open_day",
        "partition",
        "restatements",
    )

    def __init__(self, partition: int) -> None:
        self.partition = partition
        #: a restored cell stays the record's bytes (a few hundred bytes, where a decoded
        #: Rollup costs ~1.7 KB) until an event changes it: most restored days never are
        self.cells: dict[CellKey, Rollup | bytes] = {}
        self.dirty: set[CellKey] = set()
        #: Days before this ISO date are closed (their end is at or before the watermark).
        self.open_day = ""
        self.restatements: dict[tuple[str, str], Restatement] = {}
        self._restate_dirty: set[tuple[str, str]] = set()
        self._noted: dict[tuple[str, str], set[str]] = {}

    def cell(self, day: str, dims: Dims, field: str) -> Rollup:
        """The rollup of ``day`` and ``dims``, marked changed in ``field``."""
        key = (day, dims)
        got = self.cells.get(key)
        if got is None:
            r = self.cells[key] = Rollup()
        elif isinstance(got, bytes):
            r = self.cells[key] = agg.decode_rollup(got)
        else:
            r = got
        self.dirty.add(key)
        if day < self.open_day:
            self._noted.setdefault((day, dims.agency), set()).add(field)
        return r

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

    def flush(self) -> Records:
        """Aggregate records of the cells and restatement logs changed since last flush."""
        p = self.partition
        enc = agg.encode
        out: Records = [
            (RollupKey(p, day, dims).encode(), enc(self.cells[(day, dims)]))
            for day, dims in self.dirty
        ]
        self.dirty = set()
        out.extend(
            (
                RestatementKey(p, day, agency).encode(),
                enc(self.restatements[(day, agency)]),
            )
            for day, agency in self._restate_dirty
        )
        self._restate_dirty = set()
        return out

    def restore(self, key: RollupKey | RestatementKey, value: bytes, intern: Intern) -> None:
        """Load one aggregate record of this partition."""
        if isinstance(key, RollupKey):
            dims = intern.setdefault(key.dims, key.dims)
            self.cells[(key.day, dims)] = bytes(value)
        else:
            self.restatements[(key.day, key.agency)] = agg.decode_restatement(value)


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

    def restore(self, key: GaugeKey, value: bytes) -> None:
        """Remember a gauge record last written for this partition."""
        self.last[key.dims] = value
        self.dirty.add(key.dims)

    def reset_counts(self) -> None:
        """Zero every count (before recounting from restored state); keeps ``last``."""
        self.counts = {}
        self.dirty = set(self.last)
