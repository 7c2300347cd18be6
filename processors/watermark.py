"""Event-time progress of one partition, and the timers it fires (DESIGN.md section 6).

The watermark is the newest ``occurred_at`` seen minus the allowed lateness, advanced
after every event in offset order, so the same events fire the same timers at the same
points however they are split into batches. Only a *live* partition (its newest event
was within the allowed lateness of the wall clock when it was processed) that has gone
idle advances with the wall clock; a partition replaying history never does.
"""

from __future__ import annotations

import heapq
from collections.abc import Container
from typing import Final

#: Timer kinds, in the order timers of one instant fire.
ABANDON: Final = 0
OVERDUE: Final = 1
APPEAL_OVERDUE: Final = 2
EVICT_JOURNEY: Final = 3  # unused since closed journeys live in the archive
EVICT_CASE: Final = 4
EVICT_APPEAL: Final = 5
EVICT_REQUEST: Final = 6

Timer = tuple[int, int, str]
#: Heap size below which timers are never compacted, so a partition may hold about this
#: many dead ones (some 170 bytes each with their key) besides its live ones.
_MIN_COMPACT: Final = 256


class Timers:
    """A min-heap of ``(due_ms, kind, key)`` that drops the timers of forgotten objects.

    A timer that no longer applies (the journey moved on) stays in the heap and is
    checked and dropped by its handler when due; the total order of the tuples makes
    the firing order deterministic. A timer whose key is gone from the mapping its kind
    is :meth:`watch`-ed with (a decided journey's deadline, say) would fire into
    nothing, so whenever the heap has doubled since it was last compacted such timers
    are removed: memory follows the live objects, not everything ever scheduled (a
    deadline may lie weeks ahead), at an amortised O(1) per :meth:`add`. The handlers
    ignore a missing key, so what fires, and when, is the same with or without this.
    """

    __slots__ = ("_compact_at", "_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._live: dict[int, Container[str]] = {}
        self._compact_at = _MIN_COMPACT

    def watch(self, kind: int, live: Container[str]) -> None:
        """Timers of ``kind`` whose key is not ``in live`` may be dropped unfired.

        Only for a kind whose handler does nothing when its key is missing from ``live``
        (the mapping is read at compaction, so it must be the object the handler reads).
        """
        self._live[kind] = live

    def add(self, due_ms: int, kind: int, key: str) -> None:
        """Schedule ``kind`` for ``key`` when the watermark passes ``due_ms``."""
        h = self._heap
        heapq.heappush(h, (due_ms, kind, key))
        if len(h) >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        live = self._live
        kept = [t for t in self._heap if (m := live.get(t[1])) is None or t[2] in m]
        heapq.heapify(kept)
        self._heap = kept
        self._compact_at = max(_MIN_COMPACT, 2 * len(kept))

    def pop_due(self, watermark_ms: int) -> Timer | None:
        """The earliest timer due strictly before ``watermark_ms``, removed; else None."""
        h = self._heap
        if h and h[0][0] < watermark_ms:
            return heapq.heappop(h)
        return None

    def clear(self) -> None:
        """Drop every timer (before a rebuild from state)."""
        self._heap = []
        self._compact_at = _MIN_COMPACT

    def __len__(self) -> int:
        return len(self._heap)


class WatermarkState:
    """Newest event time and the watermark of one partition (epoch ms).

    Attributes:
        max_event_ms: newest ``occurred_at`` processed, or None before the first event.
        watermark_ms: the current watermark, or None before the first event.
        live: whether the partition was caught up with the wall clock at its last batch.
        updated_ms: receive time of the record (or the wall clock) that last moved it.
    """

    __slots__ = ("live", "max_event_ms", "updated_ms", "watermark_ms")

    def __init__(self) -> None:
        self.max_event_ms: int | None = None
        self.watermark_ms: int | None = None
        self.live = False
        self.updated_ms = 0
