"""Bounded memory of event ids: a repeat within the horizon is counted once.

Ids are remembered as 64-bit BLAKE2b hashes grouped by the event-time hour of the
event (a resent event carries the same ``occurred_at``, so one hour is the only place
to look). Hours older than the watermark minus the horizon are forgotten; an event
older than that cannot be recognised as a repeat and is counted.

Persistence writes no changelog record per event: each transaction writes one block
``d|<hour>|<n>`` per hour that gained ids (the hashes added, 8 bytes each); when an hour
has :data:`MAX_BLOCKS` blocks they are rewritten as a few large ones; forgotten hours
are tombstoned.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Final

HOUR_MS: Final = 3_600_000
#: Blocks an hour may have before they are rewritten into large ones.
MAX_BLOCKS: Final = 32
#: Hashes per rewritten block (512 KiB: under Kafka's default 1 MiB record limit).
BLOCK_HASHES: Final = 65_536
#: Fresh hashes are merged into the sorted array beyond this many.
_MERGE_AT: Final = 4096
_SWAP: Final = sys.byteorder == "big"


_MASK64: Final = (1 << 64) - 1


def id_hash(event_id: str) -> int:
    """The 64-bit hash of an event id (case-insensitive, as UUIDs are).

    A UUID (what the contract requires) is folded: its two 64-bit halves XORed, which
    keeps the random bits of every UUID version. Anything else is hashed with BLAKE2b.
    """
    try:
        x = int(event_id.replace("-", ""), 16)
    except ValueError:
        return int.from_bytes(blake2b(event_id.lower().encode(), digest_size=8).digest(), "little")
    return (x ^ (x >> 64)) & _MASK64


def _pack(hashes: array[int]) -> bytes:
    if _SWAP:
        hashes = array("Q", hashes)
        hashes.byteswap()
    return hashes.tobytes()


def _unpack(value: bytes) -> array[int]:
    out = array("Q")
    out.frombytes(value)
    if _SWAP:
        out.byteswap()
    return out


@dataclass(slots=True)
class _Hour:
    frozen: array[int] = field(default_factory=lambda: array("Q"))
    fresh: set[int] = field(default_factory=set)
    new: list[int] = field(default_factory=list)
    blocks: int = 0

    def __contains__(self, h: int) -> bool:
        if h in self.fresh:
            return True
        fz = self.frozen
        i = bisect_left(fz, h)
        return i < len(fz) and fz[i] == h

    def merge(self) -> None:
        if self.fresh:
            merged = array("Q", self.frozen)
            merged.extend(self.fresh)
            self.frozen = array("Q", sorted(merged))
            self.fresh = set()

    def __len__(self) -> int:
        return len(self.frozen) + len(self.fresh)


class DedupStore:
    """Event-id hashes per event-time hour, with changelog blocks.

    Args:
        horizon_ms: how long (event time, behind the watermark) ids are remembered.
    """

    __slots__ = ("_hours", "_min_hour", "_tombstones", "horizon_ms")

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._hours: dict[int, _Hour] = {}
        self._min_hour = -(2**62)
        self._tombstones: list[bytes] = []

    def seen(self, t_ms: int, h: int) -> bool:
        """Whether hash ``h`` of an event at ``t_ms`` was seen; remembers it if not.

        An event older than the horizon is never reported as seen (and not remembered).
        """
        hour = t_ms // HOUR_MS
        if hour < self._min_hour:
            return False
        b = self._hours.get(hour)
        if b is None:
            b = self._hours[hour] = _Hour()
        elif h in b:
            return True
        b.fresh.add(h)
        b.new.append(h)
        if len(b.fresh) > _MERGE_AT:
            b.merge()
        return False

    def expire(self, watermark_ms: int) -> None:
        """Forget the hours that ended more than the horizon before ``watermark_ms``."""
        m = (watermark_ms - self.horizon_ms) // HOUR_MS
        if m <= self._min_hour:
            return
        self._min_hour = m
        for hour in [x for x in self._hours if x < m]:
            b = self._hours.pop(hour)
            self._tombstones.extend(f"d|{hour}|{i}".encode() for i in range(b.blocks))

    def flush(self) -> list[tuple[bytes, bytes | None]]:
        """Changelog records for the ids added and hours forgotten since the last flush."""
        out: list[tuple[bytes, bytes | None]] = [(k, None) for k in self._tombstones]
        self._tombstones = []
        for hour, b in self._hours.items():
            if not b.new:
                continue
            if b.blocks >= MAX_BLOCKS:
                b.merge()
                fz = b.frozen
                n = max(1, -(-len(fz) // BLOCK_HASHES))
                for i in range(n):
                    out.append(
                        (
                            f"d|{hour}|{i}".encode(),
                            _pack(fz[i * BLOCK_HASHES : (i + 1) * BLOCK_HASHES]),
                        )
                    )
                out.extend((f"d|{hour}|{i}".encode(), None) for i in range(n, b.blocks))
                b.blocks = n
            else:
                out.append((f"d|{hour}|{b.blocks}".encode(), _pack(array("Q", b.new))))
                b.blocks += 1
            b.new = []
        return out

    def restore(self, hour: int, block: int, value: bytes) -> None:
        """Load one changelog block (latest value of key ``d|hour|block``)."""
        b = self._hours.get(hour)
        if b is None:
            b = self._hours[hour] = _Hour()
        b.fresh.update(_unpack(value))
        b.blocks = max(b.blocks, block + 1)

    def finish_restore(self, watermark_ms: int | None) -> None:
        """Compact what :meth:`restore` loaded and apply the horizon."""
        for b in self._hours.values():
            b.merge()
        if watermark_ms is not None:
            self.expire(watermark_ms)
            self._tombstones = []  # already tombstoned before the restart, or harmless

    def __len__(self) -> int:
        return sum(len(b) for b in self._hours.values())
