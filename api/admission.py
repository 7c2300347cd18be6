"""Admission of ingest requests: bounded slots and in-flight events, shared and per token.

Backpressure, not buffering: a request that finds no room waits a bounded time or is
refused (429 for one token's share, 503 for the API's), so memory never grows with load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from api.errors import TooManyRequests


class InflightLimiter:
    """Bounds the events produced and not yet acknowledged, over all requests.

    A request waits up to ``wait`` seconds for room; past that it is refused, so memory
    never grows with the load (backpressure, not buffering).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int, wait: float) -> bool:
        """Reserve room for ``n`` events; ``False`` if none came within ``wait`` seconds."""
        if self.inflight + n <= self.limit:
            self.inflight += n
            return True
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.inflight + n <= self.limit), wait
                )
            except TimeoutError:
                return False
            self.inflight += n
            return True

    async def release(self, n: int) -> None:
        """Give back the room of ``n`` events."""
        self.inflight -= n
        async with self._cond:
            self._cond.notify_all()


class TokenSlots:
    """Requests and in-flight events per token, so one agency cannot take every slot.

    ``requests`` counts a token's ingest requests from before their body is read until
    their answer; the in-flight events of each token are bounded by an
    :class:`InflightLimiter` of its own. Entries of idle tokens are dropped, so the
    memory follows the tokens in use, not the traffic.
    """

    def __init__(self, max_requests: int, max_inflight: int) -> None:
        self.max_requests = max_requests
        self.max_inflight = max_inflight
        self._requests: dict[str, int] = {}
        self._inflight: dict[str, InflightLimiter] = {}
        self._users: dict[str, int] = {}

    def requests(self, token_id: str) -> int:
        """The token's ingest requests being handled."""
        return self._requests.get(token_id, 0)

    @contextlib.contextmanager
    def request(self, token_id: str) -> Iterator[None]:
        """One of the token's request slots; :class:`TooManyRequests` without a free one."""
        n = self._requests.get(token_id, 0)
        if n >= self.max_requests:
            raise TooManyRequests(
                f"token {token_id} has {n} ingest requests in progress (limit "
                f"{self.max_requests} per token); nothing was accepted",
                retry_after=1,
            )
        self._requests[token_id] = n + 1
        try:
            yield
        finally:
            left = self._requests[token_id] - 1
            if left:
                self._requests[token_id] = left
            else:
                del self._requests[token_id]

    def inflight(self, token_id: str) -> InflightLimiter:
        """The in-flight limiter of a token (made on first use), for one request: give it
        back with :meth:`done` whatever came of it."""
        lim = self._inflight.get(token_id)
        if lim is None:
            lim = self._inflight[token_id] = InflightLimiter(self.max_inflight)
        self._users[token_id] = self._users.get(token_id, 0) + 1
        return lim

    def done(self, token_id: str) -> None:
        """A request is done with the token's limiter; the last one drops it."""
        left = self._users[token_id] - 1
        if left:
            self._users[token_id] = left
        else:
            del self._users[token_id], self._inflight[token_id]
