"""Bounded memory of event ids: a repeat received within the horizon is counted once.

An event's identity is :func:`contract.events.dedup_identity`: its agency and the full
128-bit UUID (no hash, no folding, so two different ids never collide, and the same id
from two agencies is two events). The horizon counts in **receive time**: the Kafka
record timestamp, which is LogAppendTime on the events topic and so the same on every
replay. An id is remembered for at least the horizon after it was last added, whatever
its ``occurred_at``: a batch of 10-day-old events resent within the horizon is counted
once, and a backfill of history is still counted (DESIGN.md section 5, RELIABILITY.md).

Ids are grouped in buckets by (agency, event-time hour, receive hour): a resent event
carries the same ``occurred_at``, so only the buckets of one (agency, hour) are looked up
(usually one or two); a bucket is forgotten whole when its receive hour falls behind the
partition's receive clock (the newest record timestamp, hour resolution) by more than
the horizon. A bucket keeps its ids as two sorted ``array('Q')`` (high and low 64 bits),
16 bytes per id, plus a set of the ids added since its last merge.

Persistence writes no changelog record per event: each transaction writes one block
``u|<hour>|<receive hour>|<agency>|<n>`` per bucket that gained ids (16 bytes per id:
high then low 64 bits, little-endian), the receive clock ``uc`` when its hour moves, and
tombstones for forgotten buckets; a bucket with :data:`MAX_BLOCKS` blocks is rewritten as
a few large ones.

Blocks of the earlier format ``d|<hour>|<n>`` (64-bit folded hashes, one namespace for
all agencies, event-time horizon) are still read: they are consulted as before for the
hours they cover, never written again, and tombstoned when the watermark passes their
hour plus the horizon, so they disappear within one horizon after an upgrade.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Final

HOUR_MS: Final = 3_600_000
#: Blocks a bucket may have before they are rewritten into large ones.
MAX_BLOCKS: Final = 32
#: Ids per rewritten block (512 KiB: under Kafka's default 1 MiB record limit).
BLOCK_IDS: Final = 32_768
#: Fresh ids are merged into the sorted arrays beyond this many.
_MERGE_AT: Final = 4096
_SWAP: Final = sys.byteorder == "big"
_MASK64: Final = (1 << 64) - 1
CLOCK_KEY: Final = b"uc"

Records = list[tuple[bytes, bytes | None]]


def fold64(x: int) -> int:
    """The 64-bit hash of a UUID in the earlier changelog format (halves XORed)."""
    return (x ^ (x >> 64)) & _MASK64


def _pack(values: array[int]) -> bytes:
    if _SWAP:
        values = array("Q", values)
        values.byteswap()
    return values.tobytes()


def _unpack(value: bytes) -> array[int]:
    out = array("Q")
    out.frombytes(value)
    if _SWAP:
        out.byteswap()
    return out


def _interleave(ids: list[int]) -> bytes:
    out = array("Q")
    for x in ids:
        out.append(x >> 64)
        out.append(x & _MASK64)
    return _pack(out)


@dataclass(slots=True)
class _Bucket:
    """Ids of one (agency, event hour, receive hour)."""

    hi: array[int] = field(default_factory=lambda: array("Q"))
    lo: array[int] = field(default_factory=lambda: array("Q"))
    fresh: set[int] = field(default_factory=set)
    new: list[int] = field(default_factory=list)
    blocks: int = 0

    def __contains__(self, x: int) -> bool:
        if x in self.fresh:
            return True
        his = self.hi
        h = x >> 64
        i = bisect_left(his, h)
        if i == len(his) or his[i] != h:
            return False
        j = bisect_right(his, h, i)
        los = self.lo
        low = x & _MASK64
        k = bisect_left(los, low, i, j)
        return k < j and los[k] == low

    def merge(self) -> None:
        """Merge the fresh ids into the sorted arrays (slices copied, not re-sorted)."""
        if not self.fresh:
            return
        his, los = self.hi, self.lo
        out_h, out_l = array("Q"), array("Q")
        prev = 0
        for x in sorted(self.fresh):
            h, low = x >> 64, x & _MASK64
            i = bisect_left(his, h, prev)
            j = bisect_right(his, h, i)
            p = bisect_left(los, low, i, j) if j > i else i
            out_h += his[prev:p]
            out_l += los[prev:p]
            out_h.append(h)
            out_l.append(low)
            prev = p
        out_h += his[prev:]
        out_l += los[prev:]
        self.hi, self.lo = out_h, out_l
        self.fresh = set()

    def blocks_of_all(self) -> list[bytes]:
        """The merged ids as rewritten blocks of at most :data:`BLOCK_IDS` each."""
        self.merge()
        his, los = self.hi, self.lo
        n = max(1, -(-len(his) // BLOCK_IDS))
        out = []
        for i in range(n):
            part = array("Q", bytes(16 * len(his[i * BLOCK_IDS : (i + 1) * BLOCK_IDS])))
            part[0::2] = his[i * BLOCK_IDS : (i + 1) * BLOCK_IDS]
            part[1::2] = los[i * BLOCK_IDS : (i + 1) * BLOCK_IDS]
            out.append(_pack(part))
        return out

    def __len__(self) -> int:
        return len(self.hi) + len(self.fresh)


class _Legacy:
    """Read-only blocks of the earlier format, consulted until their hours expire."""

    __slots__ = ("blocks", "hours")

    def __init__(self) -> None:
        self.hours: dict[int, set[int]] = {}
        self.blocks: dict[int, int] = {}

    def restore(self, hour: int, block: int, value: bytes) -> None:
        self.hours.setdefault(hour, set()).update(_unpack(value))
        self.blocks[hour] = max(self.blocks.get(hour, 0), block + 1)

    def expire(self, min_hour: int) -> list[bytes]:
        gone = [h for h in self.hours if h < min_hour]
        out: list[bytes] = []
        for hour in gone:
            del self.hours[hour]
            out.extend(f"d|{hour}|{i}".encode() for i in range(self.blocks.pop(hour)))
        return out

    def __len__(self) -> int:
        return sum(len(s) for s in self.hours.values())


class DedupStore:
    """Event ids per (agency, event hour, receive hour), with changelog blocks.

    Args:
        horizon_ms: how long (receive time) ids are remembered after they were added.
    """

    __slots__ = (
        "_by_receive",
        "_clock",
        "_clock_dirty",
        "_legacy",
        "_slots",
        "_tombstones",
        "horizon_ms",
    )

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        #: (agency, event hour) -> receive hour -> bucket
        self._slots: dict[tuple[str, int], dict[int, _Bucket]] = {}
        #: receive hour -> the (agency, event hour) that have a bucket of it
        self._by_receive: dict[int, list[tuple[str, int]]] = {}
        self._clock: int | None = None
        self._clock_dirty = False
        self._legacy = _Legacy()
        self._tombstones: list[bytes] = []

    def seen(self, agency: str, t_ms: int, received_ms: int, uid: int) -> bool:
        """Whether event ``uid`` of ``agency`` at ``t_ms`` was seen; remembers it if not.

        Args:
            agency: the event's agency (ids are scoped per agency).
            t_ms: ``occurred_at`` in epoch ms (where to look).
            received_ms: the record timestamp (advances the receive clock).
            uid: the 128-bit UUID as an integer.
        """
        clock = self._clock
        if clock is None or received_ms // HOUR_MS > clock:
            clock = self._advance_to(received_ms // HOUR_MS)
        key = (agency, t_ms // HOUR_MS)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = {}
        else:
            for held in slot.values():
                # the fresh set first, without a call: a bucket's sorted arrays stay empty
                # until it holds more than _MERGE_AT ids
                if uid in held.fresh or (held.hi and uid in held):
                    return True
        legacy = self._legacy.hours
        if legacy:
            old = legacy.get(key[1])
            if old is not None and fold64(uid) in old:
                return True
        b = slot.get(clock)
        if b is None:
            b = slot[clock] = _Bucket()
            self._by_receive.setdefault(clock, []).append(key)
        b.fresh.add(uid)
        b.new.append(uid)
        if len(b.fresh) > _MERGE_AT:
            b.merge()
        return False

    def _advance_to(self, hour: int) -> int:
        clock = self._clock
        if clock is not None and hour <= clock:
            return clock
        self._clock = hour
        self._clock_dirty = True
        self._expire()
        return hour

    def _expire(self) -> None:
        """Forget the buckets whose receive hour ended more than the horizon ago."""
        if self._clock is None:
            return
        cutoff = (self._clock * HOUR_MS - self.horizon_ms) // HOUR_MS
        for r in [r for r in self._by_receive if r < cutoff]:
            for key in self._by_receive.pop(r):
                slot = self._slots[key]
                b = slot.pop(r)
                a, hour = key
                self._tombstones.extend(f"u|{hour}|{r}|{a}|{i}".encode() for i in range(b.blocks))
                if not slot:
                    del self._slots[key]

    @property
    def has_legacy(self) -> bool:
        """Whether blocks of the earlier format are still held."""
        return bool(self._legacy.hours)

    def expire_legacy(self, watermark_ms: int) -> None:
        """Forget blocks of the earlier format as that format did (event time)."""
        if self._legacy.hours:
            min_hour = (watermark_ms - self.horizon_ms) // HOUR_MS
            self._tombstones.extend(self._legacy.expire(min_hour))

    def flush(self) -> Records:
        """Changelog records for the ids added and buckets forgotten since the last flush."""
        out: Records = [(k, None) for k in self._tombstones]
        self._tombstones = []
        if self._clock_dirty and self._clock is not None:
            out.append((CLOCK_KEY, str(self._clock).encode()))
            self._clock_dirty = False
        for (agency, hour), slot in self._slots.items():
            for r, b in slot.items():
                if not b.new:
                    continue
                prefix = f"u|{hour}|{r}|{agency}|"
                if b.blocks >= MAX_BLOCKS:
                    blocks = b.blocks_of_all()
                    out.extend((f"{prefix}{i}".encode(), v) for i, v in enumerate(blocks))
                    gone = range(len(blocks), b.blocks)
                    out.extend((f"{prefix}{i}".encode(), None) for i in gone)
                    b.blocks = len(blocks)
                else:
                    out.append((f"{prefix}{b.blocks}".encode(), _interleave(b.new)))
                    b.blocks += 1
                b.new = []
        return out

    def restore(self, rest: str, value: bytes) -> None:
        """Load one block ``u|<rest>`` (latest value of its key)."""
        hour, r, tail = rest.split("|", 2)
        agency, _, block = tail.rpartition("|")
        key = (agency, int(hour))
        slot = self._slots.setdefault(key, {})
        b = slot.get(int(r))
        if b is None:
            b = slot[int(r)] = _Bucket()
            self._by_receive.setdefault(int(r), []).append(key)
        vals = _unpack(value)
        b.fresh.update((h << 64) | low for h, low in zip(vals[0::2], vals[1::2], strict=True))
        b.blocks = max(b.blocks, int(block) + 1)

    def restore_legacy(self, hour: int, block: int, value: bytes) -> None:
        """Load one block of the earlier format ``d|<hour>|<block>``."""
        self._legacy.restore(hour, block, value)

    def restore_clock(self, value: bytes) -> None:
        """Load the receive clock (record ``uc``)."""
        self._clock = int(value)

    def finish_restore(self, watermark_ms: int | None) -> None:
        """Compact what was loaded and apply the horizon (tombstoning what expired)."""
        for slot in self._slots.values():
            for b in slot.values():
                b.merge()
        self._expire()
        if watermark_ms is not None:
            self.expire_legacy(watermark_ms)

    def items(self) -> list[tuple[str, int, int, list[int]]]:
        """Every (agency, event hour, receive hour, sorted ids), sorted; for comparisons."""
        return sorted(
            (
                a,
                hour,
                r,
                sorted([*((h << 64) | lo for h, lo in zip(b.hi, b.lo, strict=True)), *b.fresh]),
            )
            for (a, hour), slot in self._slots.items()
            for r, b in slot.items()
        )

    def __len__(self) -> int:
        return sum(len(b) for s in self._slots.values() for b in s.values()) + len(self._legacy)
