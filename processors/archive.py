"""Closed journeys, remembered until the horizon in blocks per close hour.

A decided or abandoned journey only needs its dimensions and status (a later lifecycle
event for it is counted late, in its cell), so it leaves the journey table for this
archive. Persistence writes no record per journey: each transaction appends one block
``x|<hour>|<n>`` per close hour (event time) of the journeys closed in it; hours older
than the watermark minus the horizon are forgotten and their blocks tombstoned. A
journey born and closed within one transaction therefore costs no changelog record of
its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import msgspec

from processors.rollups import Records
from processors.state import Dims

HOUR_MS: Final = 3_600_000
#: Blocks an hour may have before they are rewritten into large ones.
MAX_BLOCKS: Final = 32
#: Entries per rewritten block.
BLOCK_ENTRIES: Final = 4096

Entry = tuple[str, Dims, int]
_enc: Final = msgspec.msgpack.Encoder()
_dec: Final = msgspec.msgpack.Decoder(list[Entry])


@dataclass(slots=True)
class _Hour:
    keys: list[str] = field(default_factory=list)
    new: list[Entry] = field(default_factory=list)
    blocks: int = 0


class ClosedJourneys:
    """Closed journeys by key: their dimensions and final status.

    Args:
        horizon_ms: how long (event time, behind the watermark) they are remembered.
    """

    __slots__ = ("_hours", "_index", "_min_hour", "_tombstones", "horizon_ms")

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._index: dict[str, tuple[Dims, int]] = {}
        self._hours: dict[int, _Hour] = {}
        self._min_hour = -(2**62)
        self._tombstones: list[bytes] = []

    def get(self, key: str) -> tuple[Dims, int] | None:
        """Dimensions and status of a closed journey, or None."""
        return self._index.get(key)

    def add(self, key: str, dims: Dims, status: int, closed_ms: int) -> None:
        """Remember a journey closed at ``closed_ms`` (event time).

        A journey closed before the horizon is not remembered at all (it would be
        forgotten at once), so state after a restore is the same as without one.
        """
        hour = closed_ms // HOUR_MS
        if hour < self._min_hour:
            return
        self._index[key] = (dims, status)
        h = self._hours.get(hour)
        if h is None:
            h = self._hours[hour] = _Hour()
        h.keys.append(key)
        h.new.append((key, dims, status))

    def expire(self, watermark_ms: int) -> None:
        """Forget the hours that ended more than the horizon before ``watermark_ms``."""
        m = (watermark_ms - self.horizon_ms) // HOUR_MS
        if m <= self._min_hour:
            return
        self._min_hour = m
        index = self._index
        for hour in [x for x in self._hours if x < m]:
            h = self._hours.pop(hour)
            for k in h.keys:
                index.pop(k, None)
            self._tombstones.extend(f"x|{hour}|{i}".encode() for i in range(h.blocks))

    def flush(self) -> Records:
        """Changelog records for the journeys closed and hours forgotten since last flush."""
        out: Records = [(k, None) for k in self._tombstones]
        self._tombstones = []
        for hour, h in self._hours.items():
            if not h.new:
                continue
            if h.blocks >= MAX_BLOCKS:
                entries = [(k, *self._index[k]) for k in h.keys]
                n = max(1, -(-len(entries) // BLOCK_ENTRIES))
                for i in range(n):
                    chunk = entries[i * BLOCK_ENTRIES : (i + 1) * BLOCK_ENTRIES]
                    out.append((f"x|{hour}|{i}".encode(), _enc.encode(chunk)))
                out.extend((f"x|{hour}|{i}".encode(), None) for i in range(n, h.blocks))
                h.blocks = n
            else:
                out.append((f"x|{hour}|{h.blocks}".encode(), _enc.encode(h.new)))
                h.blocks += 1
            h.new = []
        return out

    def restore(self, hour: int, block: int, value: bytes, intern: dict[Dims, Dims]) -> None:
        """Load one changelog block (latest value of key ``x|hour|block``)."""
        h = self._hours.get(hour)
        if h is None:
            h = self._hours[hour] = _Hour()
        for key, dims, status in _dec.decode(value):
            dims = tuple(dims)  # type: ignore[assignment]
            self._index[key] = (intern.setdefault(dims, dims), status)
            h.keys.append(key)
        h.blocks = max(h.blocks, block + 1)

    def finish_restore(self, watermark_ms: int | None) -> None:
        """Apply the horizon after :meth:`restore`."""
        if watermark_ms is not None:
            self.expire(watermark_ms)
            self._tombstones = []

    def __len__(self) -> int:
        return len(self._index)
