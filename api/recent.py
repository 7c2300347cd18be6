"""The event ids this API wrote recently: a fixed-size ring and hash table of their hashes.

A retried batch is answered ``duplicate`` from here; the processor deduplicates exactly
anyway (``processors/dedup.py``), so this is a courtesy that may forget.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence


def recent_key(agency: str, event_id: str) -> str:
    """The key of an event id in :class:`RecentIds`: per agency, the canonical lower case.

    Ids are one namespace per agency (an id another agency used is no duplicate), and a
    UUID in upper case is the same id.
    """
    return f"{agency}\x00{event_id.lower()}"


class RecentIds:
    """The last ``size`` event ids this API had acknowledged by Kafka, oldest forgotten
    (as :func:`recent_key`: the agency and the canonical id).

    They answer a retried batch "duplicate"; the processor deduplicates exactly anyway,
    so this is a courtesy and may forget. An id is kept as its 64-bit ``hash()`` (salted
    per process): a ring of the last ``size`` hashes in arrival order, and an
    open-addressing table of them at most half full. Both are allocated at start, 24
    bytes per id (4.6 MiB for 200,000), so the memory never grows with the traffic. Two
    ids with the same hash would be taken for one (a chance of ``size`` in 2^64 per id).
    """

    __slots__ = ("_len", "_next", "_ring", "_size", "_slots", "_table")

    def __init__(self, size: int) -> None:
        self._size = size
        # 2 * size + 1 slots: the table is never more than half full
        self._slots = 2 * size + 1
        self._table = array("q", [0]) * self._slots
        self._ring = array("q", [0]) * size
        self._next = 0
        self._len = 0

    def __contains__(self, event_id: str) -> bool:
        return self._find(hash(event_id) or 1) >= 0

    def __len__(self) -> int:
        return self._len

    def _find(self, h: int) -> int:
        """The slot holding ``h``, or -1."""
        table, slots = self._table, self._slots
        i = h % slots
        while (x := table[i]) != h:
            if not x:
                return -1
            i = (i + 1) % slots
        return i

    def add_all(self, ids: Sequence[str]) -> None:
        """Remember ids, forgetting the oldest beyond the size."""
        if self._size <= 0:
            return
        table, slots, ring, size = self._table, self._slots, self._ring, self._size
        for event_id in ids:
            h = hash(event_id) or 1
            if self._find(h) >= 0:
                continue  # a concurrent batch had the same id
            old = ring[self._next]
            if old:
                self._delete(old)
            else:
                self._len += 1
            i = h % slots
            while table[i]:
                i = (i + 1) % slots
            table[i] = h
            ring[self._next] = h
            self._next = (self._next + 1) % size

    def _delete(self, h: int) -> None:
        table, slots = self._table, self._slots
        i = self._find(h)
        if i < 0:
            return
        # the entries after the hole up to the next empty slot move back into it
        # unless that would put them before their home slot
        j = i
        while True:
            j = (j + 1) % slots
            x = table[j]
            if not x:
                break
            if (j - x % slots) % slots >= (j - i) % slots:
                table[i] = x
                i = j
        table[i] = 0
