"""The API's one rate limiter: token buckets by key, bounded in memory, safe across threads.

Two limits use it: events per API token (``POST /v1/events``, 429 ``rate_limited``) and
failed authentications per client address (429 ``too_many_failures``, bearer tokens and
the web view's sign-in alike).

Why not the ``limits`` library: its strategies are windows (fixed, moving, sliding
counter), not a bucket that refills continuously, so a client that spent its burst would
wait a whole window instead of ``n / rate`` seconds and every Retry-After we answer would
change; its in-memory storage reads the wall clock (``time.time()``) with no way to
inject one, so tests could not drive it and a clock step would open or close windows;
the moving window keeps one entry per unit of cost (10,000 list items for one burst of
events); and it runs an expiry timer thread. A bucket is a level and a time per key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBuckets:
    """A bucket of ``burst`` per key, refilled at ``rate`` per second.

    A key never seen has a full bucket. At most ``max_keys`` keys are kept: past that,
    keys whose bucket refilled are forgotten first (a full bucket is the same as none),
    then all of them, so memory stays bounded under a flood of new keys. A ``rate`` of 0
    disables the limit: everything is allowed at once.

    Args:
        burst: what a key may spend at once.
        rate: the refill per second.
        max_keys: keys kept at most.
        clock: seconds of a monotonic clock; each call may pass ``now`` instead.
    """

    def __init__(
        self,
        burst: float,
        rate: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = rate
        self._max = max_keys
        self._clock = clock
        self._levels: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Keys whose bucket is kept (not full, or not yet forgotten)."""
        return len(self._levels)

    def _level(self, key: str, now: float) -> float:
        level, last = self._levels.get(key, (self.burst, now))
        return min(self.burst, level + (now - last) * self.rate)

    def _set(self, key: str, level: float, now: float) -> None:
        self._levels[key] = (level, now)
        if len(self._levels) > self._max:
            self._levels = {
                k: (lv, t)
                for k, (lv, t) in self._levels.items()
                if lv + (now - t) * self.rate < self.burst
            }
            if len(self._levels) > self._max:
                self._levels.clear()

    def wait(self, key: str, n: float = 1, now: float | None = None) -> float:
        """Seconds before ``key`` may spend ``n``; 0 if it may now. Spends nothing."""
        if self.rate <= 0:
            return 0.0
        now = self._clock() if now is None else now
        with self._lock:
            level = self._level(key, now)
        return 0.0 if level >= n else (n - level) / self.rate

    def take(self, key: str, n: float = 1, now: float | None = None) -> float:
        """Spend ``n`` of ``key``'s bucket if it holds that much: returns 0; else spends
        nothing and returns the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self._clock() if now is None else now
        with self._lock:
            level = self._level(key, now)
            if level >= n:
                self._set(key, level - n, now)
                return 0.0
            self._set(key, level, now)
        return (n - level) / self.rate

    def spend(self, key: str, n: float = 1, now: float | None = None) -> None:
        """Spend ``n`` whatever the level (never below empty): a failure already happened."""
        if self.rate <= 0:
            return
        now = self._clock() if now is None else now
        with self._lock:
            self._set(key, max(0.0, self._level(key, now) - n), now)
