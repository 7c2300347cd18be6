"""Closed journeys, remembered until the horizon in blocks per close hour.

A decided or abandoned journey only needs its dimensions and status (a later lifecycle
event for it is counted late, in its cell), so it leaves the journey table for this
archive. Persistence writes no record per journey: each transaction appends one block
``x|<hour>|<n>`` per close hour (event time) of the journeys closed in it; hours older
than the watermark minus the horizon are forgotten and their blocks tombstoned. A
journey born and closed within one transaction therefore costs no changelog record of
its own.

The archive holds a week of journeys, so it is kept compact: a journey is its key's
64-bit BLAKE2b hash in an open-addressing table of two flat arrays (hash, and the index
of its interned dimensions with its status), at most half full, plus the hash once more
in its close hour's list - about 40 bytes a journey where a dict of key strings and
tuples took about 190. Blocks hold ``[hash, dims, status]`` entries; blocks written
before held the key string instead of its hash and are read too. Two keys with the same
64-bit hash would be taken for one journey (with a week of a million journeys, a chance
of about one in 10^13 per new journey).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Final

import msgspec

from contract.aggregates import Dims
from processors.rollups import Records
from processors.state import Intern

HOUR_MS: Final = 3_600_000
#: Blocks an hour may have before they are rewritten into large ones.
MAX_BLOCKS: Final = 32
#: Entries per rewritten block.
BLOCK_ENTRIES: Final = 4096
#: Slots of an empty table (a power of two); it doubles when half full.
_MIN_SLOTS: Final = 1024

#: ``[key hash, dims, status]``; a ``str`` key is a block written before hashes.
SlotEntry = tuple[int | str, Dims, int]
_enc: Final = msgspec.msgpack.Encoder()
_dec: Final = msgspec.msgpack.Decoder(list[SlotEntry])


def key_hash(key: str) -> int:
    """The 64-bit hash of a journey key (``agency|journey``); never 0 (an empty slot)."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class _Table:
    """A map of nonzero 64-bit hashes to 32-bit values: linear probing in two arrays.

    At most half full, so a lookup reads about two slots; deletion shifts the entries
    after the hole back instead of leaving tombstones.
    """

    __slots__ = ("_keys", "_mask", "_vals", "n")

    def __init__(self) -> None:
        slots = _MIN_SLOTS
        self._keys = array("Q", [0]) * slots
        self._vals = array("I", [0]) * slots
        self._mask = slots - 1
        self.n = 0

    def get(self, h: int) -> int:
        """The value of ``h``, or -1."""
        keys, mask = self._keys, self._mask
        i = h & mask
        while (k := keys[i]) != h:
            if not k:
                return -1
            i = (i + 1) & mask
        return self._vals[i]

    def put(self, h: int, value: int) -> None:
        """Set the value of ``h`` (nonzero)."""
        keys, mask = self._keys, self._mask
        i = h & mask
        while (k := keys[i]) != h:
            if not k:
                keys[i] = h
                self.n += 1
                if 2 * self.n > len(keys):
                    self._vals[i] = value
                    self._resize(2 * len(keys))
                    return
                break
            i = (i + 1) & mask
        self._vals[i] = value

    def delete(self, h: int) -> None:
        """Remove ``h`` if present."""
        keys, vals, mask = self._keys, self._vals, self._mask
        i = h & mask
        while (k := keys[i]) != h:
            if not k:
                return
            i = (i + 1) & mask
        # the entries after the hole up to the next empty slot move back into it
        # unless that would put them before their home slot
        j = i
        while True:
            j = (j + 1) & mask
            k = keys[j]
            if not k:
                break
            if (j - (k & mask)) & mask >= (j - i) & mask:
                keys[i] = k
                vals[i] = vals[j]
                i = j
        keys[i] = 0
        self.n -= 1

    def shrink(self) -> None:
        """Halve the table while it is under an eighth full (after forgetting hours)."""
        slots = len(self._keys)
        while slots > _MIN_SLOTS and 8 * self.n < slots:
            slots //= 2
        if slots != len(self._keys):
            self._resize(slots)

    def _resize(self, slots: int) -> None:
        old_keys, old_vals = self._keys, self._vals
        keys = self._keys = array("Q", [0]) * slots
        vals = self._vals = array("I", [0]) * slots
        mask = self._mask = slots - 1
        for k, v in zip(old_keys, old_vals, strict=True):
            if k:
                i = k & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = k
                vals[i] = v

    def __len__(self) -> int:
        return self.n


@dataclass(slots=True)
class _Hour:
    hashes: array[int] = field(default_factory=lambda: array("Q"))
    new: array[int] = field(default_factory=lambda: array("Q"))
    blocks: int = 0


class ClosedJourneys:
    """Closed journeys by key: their dimensions and final status.

    Args:
        horizon_ms: how long (event time, behind the watermark) they are remembered.
    """

    __slots__ = (
        "_dims",
        "_dims_index",
        "_hours",
        "_min_hour",
        "_table",
        "_tombstones",
        "horizon_ms",
    )

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._table = _Table()
        #: value in the table: index in ``_dims`` << 2 | status
        self._dims: list[Dims] = []
        self._dims_index: dict[Dims, int] = {}
        self._hours: dict[int, _Hour] = {}
        self._min_hour = -(2**62)
        self._tombstones: list[bytes] = []

    def get(self, key: str) -> tuple[Dims, int] | None:
        """Dimensions and status of a closed journey, or None."""
        v = self._table.get(key_hash(key))
        return None if v < 0 else (self._dims[v >> 2], v & 3)

    def add(self, key: str, dims: Dims, status: int, closed_ms: int) -> None:
        """Remember a journey closed at ``closed_ms`` (event time); ``status`` is 0-3.

        A journey closed before the horizon is not remembered at all (it would be
        forgotten at once), so state after a restore is the same as without one.
        """
        hour = closed_ms // HOUR_MS
        if hour < self._min_hour:
            return
        h = key_hash(key)
        self._table.put(h, self._code(dims, status))
        b = self._hours.get(hour)
        if b is None:
            b = self._hours[hour] = _Hour()
        b.hashes.append(h)
        b.new.append(h)

    def _code(self, dims: Dims, status: int) -> int:
        i = self._dims_index.get(dims)
        if i is None:
            i = self._dims_index[dims] = len(self._dims)
            self._dims.append(dims)
        return i << 2 | status

    def expire(self, watermark_ms: int) -> None:
        """Forget the hours that ended more than the horizon before ``watermark_ms``."""
        m = (watermark_ms - self.horizon_ms) // HOUR_MS
        if m <= self._min_hour:
            return
        self._min_hour = m
        table = self._table
        gone = [x for x in self._hours if x < m]
        for hour in gone:
            b = self._hours.pop(hour)
            for h in b.hashes:
                table.delete(h)
            self._tombstones.extend(f"x|{hour}|{i}".encode() for i in range(b.blocks))
        if gone:
            table.shrink()

    def _entries(self, hashes: array[int]) -> list[tuple[int, Dims, int]]:
        table, dims = self._table, self._dims
        out = []
        for h in hashes:
            v = table.get(h)
            if v >= 0:
                out.append((h, dims[v >> 2], v & 3))
        return out

    def flush(self) -> Records:
        """Changelog records for the journeys closed and hours forgotten since last flush."""
        out: Records = [(k, None) for k in self._tombstones]
        self._tombstones = []
        for hour, b in self._hours.items():
            if not b.new:
                continue
            if b.blocks >= MAX_BLOCKS:
                entries = self._entries(b.hashes)
                n = max(1, -(-len(entries) // BLOCK_ENTRIES))
                for i in range(n):
                    chunk = entries[i * BLOCK_ENTRIES : (i + 1) * BLOCK_ENTRIES]
                    out.append((f"x|{hour}|{i}".encode(), _enc.encode(chunk)))
                out.extend((f"x|{hour}|{i}".encode(), None) for i in range(n, b.blocks))
                b.blocks = n
            else:
                out.append((f"x|{hour}|{b.blocks}".encode(), _enc.encode(self._entries(b.new))))
                b.blocks += 1
            b.new = array("Q")
        return out

    def restore(self, hour: int, block: int, value: bytes, intern: Intern) -> None:
        """Load one changelog block (latest value of key ``x|hour|block``)."""
        b = self._hours.get(hour)
        if b is None:
            b = self._hours[hour] = _Hour()
        table = self._table
        for key, dims, status in _dec.decode(value):
            h = key if isinstance(key, int) else key_hash(key)
            table.put(h, self._code(intern.setdefault(dims, dims), status))
            b.hashes.append(h)
        b.blocks = max(b.blocks, block + 1)

    def finish_restore(self, watermark_ms: int | None) -> None:
        """Apply the horizon after :meth:`restore`."""
        if watermark_ms is not None:
            self.expire(watermark_ms)
            self._tombstones = []

    def items(self) -> list[tuple[int, Dims, int]]:
        """Every closed journey remembered, as ``(key hash, dims, status)``, sorted."""
        return sorted({e for b in self._hours.values() for e in self._entries(b.hashes)})

    def __len__(self) -> int:
        return len(self._table)
