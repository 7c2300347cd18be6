"""Batched event ingest: ``POST /v1/events`` (DESIGN.md section 7).

One pass over the batch: split the body (JSON array or NDJSON), decode and validate each
event once, check it against the catalog and the token's agency, encode it once and hand
it to the idempotent ``acks=all`` producer keyed by :func:`contract.events.event_key`.
The answer is sent only after Kafka acknowledged every record of the batch; when it did
not (broker down, timeout) the whole batch is answered 503 with Retry-After and nothing is
reported accepted. A retry is safe: event ids are deduplicated here (recent ids) and,
authoritatively, by the processor.

Rejections are counted by agency and reason and written to the dead-letter topic as
small records without the event body (it may hold personal data sent by mistake).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from api.errors import BadRequest, PayloadTooLarge, RateLimited, TooManyRequests, Unavailable
from api.exposition import ApiMetrics
from api.settings import ApiSettings
from api.tokens import TokenInfo
from contract.catalog import Catalog
from contract.errors import BusError
from contract.events import (
    Event,
    Problem,
    Reason,
    decode_event,
    encode_event,
    event_key,
    split_batch,
)
from contract.settings import millis
from contract.topics import Topics
from kafkaport import KafkaError, Producer, connect

logger = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]


class ProblemOut(msgspec.Struct):
    """One problem of a rejected event, as answered."""

    field: str
    reason: str
    message: str


class EventResult(msgspec.Struct, omit_defaults=True):
    """The result of one event of the batch (``index`` is 0-based)."""

    index: int
    status: Status
    event_id: str | None = None
    #: HTTP-like status of this event: 202 accepted, 200 duplicate, 403 another
    #: agency's event, 422 invalid.
    code: int = 202
    problems: list[ProblemOut] | None = None


class IngestResponse(msgspec.Struct):
    """The answer to one batch."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


class DeadLetter(msgspec.Struct, omit_defaults=True):
    """A rejection as written to the dead-letter topic: never the event body."""

    reason: str
    field: str
    message: str
    agency: str
    source: str
    received_at: str
    event_id: str | None = None


class _IdOnly(msgspec.Struct):
    event_id: Any = None


_id_decoder: Final = msgspec.json.Decoder(_IdOnly)
_UUID: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_response_encoder: Final = msgspec.json.Encoder()
_dead_letter_encoder: Final = msgspec.json.Encoder()


def _event_id_of(raw: bytes) -> str | None:
    """The event id of a rejected event, if it has a UUID one, in its canonical lower case
    (as the contract decodes it).

    Anything else is not repeated: the answer and the dead letter must not carry free
    text that may be personal data.
    """
    try:
        value = _id_decoder.decode(raw).event_id
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return value.lower() if isinstance(value, str) and _UUID.match(value) else None


def recent_key(agency: str, event_id: str) -> str:
    """The key of an event id in :class:`RecentIds`: per agency, the canonical lower case.

    Ids are one namespace per agency (an id another agency used is no duplicate), and a
    UUID in upper case is the same id.
    """
    return f"{agency}\x00{event_id.lower()}"


# -- limits ------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket of events per API token.

    Each token may send ``burst`` events at once and ``rate`` events per second after
    that. A rate of 0 disables the limit.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, n: int, now: float | None = None) -> float:
        """Take ``n`` events from ``key``'s bucket; returns 0, or seconds to wait if refused."""
        if self._rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        level, last = self._buckets.get(key, (self._burst, now))
        level = min(self._burst, level + (now - last) * self._rate)
        if level >= n:
            self._buckets[key] = (level - n, now)
            return 0.0
        self._buckets[key] = (level, now)
        return (n - level) / self._rate


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


# -- Kafka -------------------------------------------------------------------------------


class _Acks:
    """Counts the acknowledgements of one batch (called on the Kafka client's thread)."""

    __slots__ = ("_done", "_failed", "_future", "_loop", "error", "expected")

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        self._done = itertools.count(1)  # next() is atomic in CPython: no lock needed
        self._failed = itertools.count(1)
        self.expected = expected
        self.error: BaseException | None = None

    def done(self, exc: BaseException | None, _partition: int, _offset: int) -> None:
        """One record's answer: ``exc`` is ``None`` when acknowledged."""
        if exc is not None and next(self._failed) == 1:
            self.error = exc
        if next(self._done) == self.expected:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Whether every record was acknowledged within ``timeout`` seconds."""
        if self.expected == 0:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            return False
        return self.error is None


class ProducerLink:
    """The API's one Kafka producer, opened in the background so the API starts without Kafka.

    ``get()`` returns the producer, or raises :class:`Unavailable` while none is
    connected. A producer that keeps failing is replaced.
    """

    def __init__(self, settings: ApiSettings, topics: Topics) -> None:
        self._settings = settings
        self._topics = topics
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failures = 0

    def start(self) -> None:
        """Start connecting in a background thread."""
        self._thread = threading.Thread(target=self._connect_loop, name="api-producer", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether a producer is open."""
        return self._producer is not None

    def _open(self) -> Producer:
        timeout_ms = millis(self._settings.request_timeout)
        producer = connect(self._settings).producer(
            client_id="servicepulse-api",
            linger_ms=2,
            delivery_timeout_ms=timeout_ms + 10,
            request_timeout_ms=max(1000, timeout_ms - 10),
            max_block_s=1.0,  # never hold the event loop longer when the buffer is full
        )
        try:
            # fetch metadata now: the topics must exist before events are accepted
            for topic in (self._topics.events, self._topics.deadletter):
                if not producer.partitions_for(topic, 5.0):
                    raise BusError(f"topic {topic!r} does not exist on the broker")
        except KafkaError as exc:
            producer.close(0)
            raise BusError(f"cannot read metadata of topic {topic!r}: {exc}") from exc
        except BusError:
            producer.close(0)
            raise
        return producer

    def _connect_loop(self) -> None:
        delay = 0.5
        while not self._stop.is_set() and self._producer is None:
            try:
                producer = self._open()
            except BusError as exc:
                logger.warning("producer not connected yet (retry in %.1fs): %s", delay, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            with self._lock:
                if self._stop.is_set():
                    producer.close(1)
                    return
                self._producer = producer
            logger.info("producer connected to %s", self._settings.kafka_bootstrap)

    def get(self) -> Producer:
        """The open producer. Raises :class:`Unavailable` while there is none."""
        producer = self._producer
        if producer is None:
            raise Unavailable(
                "not connected to Kafka yet; nothing was accepted",
                retry_after=int(self._settings.kafka_retry_after.total_seconds()),
            )
        return producer

    def report(self, ok: bool) -> None:
        """Record the outcome of a batch; after repeated failures the producer is replaced.

        A producer whose batches expired may hold stale idempotence state; a fresh one
        is the simplest way back once the broker returns.
        """
        if ok:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= 3 and self._producer is not None:
            with self._lock:
                old, self._producer = self._producer, None
            self._failures = 0
            logger.warning("replacing the Kafka producer after repeated failures")
            threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
            if not self._stop.is_set():
                self.start()

    def close(self, timeout: float = 5.0) -> None:
        """Flush and close the producer; stop connecting."""
        self._stop.set()
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            left = producer.flush(timeout)
            if left:
                logger.warning("producer flush at shutdown: %d records unacknowledged", left)
            producer.close(0)


def _close_quietly(producer: Producer) -> None:
    """Close a failed producer without waiting for its unsent records."""
    try:
        producer.close(0)
    except KafkaError as exc:
        logger.debug("closing the replaced producer: %s", exc)


# -- the ingest pipeline -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one batch gave: the encoded response and its counts."""

    body: bytes
    accepted: int
    duplicates: int
    rejected: int


class Ingestor:
    """Validates batches and writes them to Kafka. One per app; used from the event loop.

    Args:
        settings: limits and timeouts.
        catalog: the catalog events are checked against.
        topics: where events and dead letters go.
        link: the producer.
        metrics: the API's own metrics.
        clock: the receiver's clock (UTC), replaceable in tests.
    """

    def __init__(
        self,
        settings: ApiSettings,
        catalog: Catalog,
        topics: Topics,
        link: ProducerLink,
        metrics: ApiMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._topics = topics
        self._link = link
        self._metrics = metrics
        self._clock = clock
        self._rate = RateLimiter(settings.rate_limit_events_per_second, settings.rate_limit_burst)
        self._inflight = InflightLimiter(settings.max_inflight_events)
        self.per_token = TokenSlots(
            settings.max_concurrent_ingest_per_token, settings.max_inflight_events_per_token
        )
        self.recent = RecentIds(settings.dedup_cache_size)
        self._requests = 0

    @property
    def inflight(self) -> int:
        """Events produced and not yet acknowledged."""
        return self._inflight.inflight

    def admit_token(self, token_id: str) -> contextlib.AbstractContextManager[None]:
        """One of the token's ``max_concurrent_ingest_per_token`` request slots, held from
        before the body is read until the answer; without one, 429 at once.

        A trickling body holds only its own token's slot, never a shared one, and the
        bodies being read are bounded by the tokens in use times this cap times the body
        limit.
        """
        if self.per_token.requests(token_id) >= self.per_token.max_requests:
            self._metrics.rate_limited.inc()
        return self.per_token.request(token_id)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """One of ``max_concurrent_ingest`` shared slots, held while a read body is
        validated and written; without a free slot the request is refused at once with 503.

        Taken after the body arrived (see :meth:`admit_token`), so only requests that
        are being processed hold one, whatever their clients' speed.
        """
        if self._requests >= self._settings.max_concurrent_ingest:
            self._metrics.saturated.inc()
            raise Unavailable(
                f"the API is handling {self._requests} ingest requests (limit "
                f"{self._settings.max_concurrent_ingest}); nothing was accepted",
                retry_after=1,
            )
        self._requests += 1
        try:
            yield
        finally:
            self._requests -= 1

    async def ingest(
        self,
        body: bytes,
        token: TokenInfo,
        *,
        ndjson: bool = False,
        record_headers: list[tuple[str, bytes]] | None = None,
    ) -> Outcome:
        """Validate and write one batch; the answer once Kafka acknowledged it.

        ``ndjson``: the client declared ``application/x-ndjson`` (one event per line, even
        when the first line starts with ``[``). ``record_headers``: Kafka headers every
        event of the batch is written with (the key id of a signed batch).

        Raises:
            BadRequest: the body is empty or a malformed JSON array.
            PayloadTooLarge: more than ``max_events`` events.
            RateLimited: over the token's rate (nothing was written).
            Unavailable: Kafka did not acknowledge in time, or the API is saturated.
        """
        agency = token.agency or ""
        now = self._clock()
        items = list(split_batch(body, ndjson=ndjson))
        if not items:
            raise BadRequest("the body holds no events: send a JSON array or NDJSON lines")
        is_array = not ndjson and body.lstrip()[:1] == b"["
        if len(items) == 1 and isinstance(items[0], Problem) and is_array:
            self._count_rejected(agency, Reason.INVALID_JSON, 1)
            raise BadRequest(items[0].message)
        if len(items) > self._settings.max_events:
            raise PayloadTooLarge(
                f"the batch holds {len(items)} events; the limit is "
                f"{self._settings.max_events} per request"
            )
        wait = self._rate.take(token.id, len(items))
        if wait > 0:
            self._metrics.rate_limited.inc()
            raise RateLimited(
                f"token {token.id} is over its rate of "
                f"{self._settings.rate_limit_events_per_second:g} events/s; retry after "
                f"{math.ceil(wait)} s",
                retry_after=wait,
            )

        catalog_check = self._catalog.check
        recent = self.recent
        results: list[EventResult] = []
        append = results.append
        sends: list[tuple[bytes, bytes]] = []
        ids: list[str] = []
        batch_ids: set[str] = set()
        dead: list[DeadLetter] = []
        duplicates = 0
        received_at = now.isoformat()
        for index, item in enumerate(items):
            if isinstance(item, Problem):
                append(self._reject(index, None, [item], 422, agency, received_at, dead))
                continue
            decoded = decode_event(item, now, self._settings.earliest_occurred_at)
            if not isinstance(decoded, Event):
                eid = _event_id_of(item)
                append(self._reject(index, eid, decoded, 422, agency, received_at, dead))
                continue
            eid = decoded.event_id.lower()
            if decoded.agency != agency:
                problem = Problem(
                    "agency",
                    Reason.FORBIDDEN_AGENCY,
                    f"this token may send events of agency {agency!r} only, not {decoded.agency!r}",
                )
                append(self._reject(index, eid, [problem], 403, agency, received_at, dead))
                continue
            problems = catalog_check(decoded)
            if problems:
                append(self._reject(index, eid, problems, 422, agency, received_at, dead))
                continue
            key = recent_key(agency, eid)
            if key in recent or key in batch_ids:
                duplicates += 1
                append(EventResult(index, "duplicate", eid, 200))
                continue
            batch_ids.add(key)
            ids.append(key)
            sends.append((event_key(decoded), encode_event(decoded)))
            append(EventResult(index, "accepted", eid))

        await self._write(sends, dead, agency, token.id, record_headers)
        recent.add_all(ids)
        accepted = len(sends)
        rejected = len(results) - accepted - duplicates
        m = self._metrics
        if accepted:
            m.ingest_events.labels("accepted").inc(accepted)
        if duplicates:
            m.ingest_events.labels("duplicate").inc(duplicates)
        if rejected:
            m.ingest_events.labels("rejected").inc(rejected)
        body_out = _response_encoder.encode(IngestResponse(accepted, duplicates, rejected, results))
        return Outcome(body_out, accepted, duplicates, rejected)

    def _reject(
        self,
        index: int,
        event_id: str | None,
        problems: Sequence[Problem],
        code: int,
        agency: str,
        received_at: str,
        dead: list[DeadLetter],
    ) -> EventResult:
        first = problems[0]
        self._count_rejected(agency, first.reason, 1)
        dead.append(
            DeadLetter(
                reason=first.reason.value,
                field=first.field,
                message=first.message[:500],
                agency=agency,
                source="api",
                received_at=received_at,
                event_id=event_id,
            )
        )
        return EventResult(
            index,
            "rejected",
            event_id,
            code,
            [ProblemOut(p.field, p.reason.value, p.message) for p in problems],
        )

    def _count_rejected(self, agency: str, reason: Reason, n: int) -> None:
        self._metrics.rejected.labels(agency, reason.value).inc(n)

    async def _write(
        self,
        sends: list[tuple[bytes, bytes]],
        dead: list[DeadLetter],
        agency: str,
        token_id: str,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce the batch and wait for every acknowledgement of the events.

        Room for the events is taken from the token's own in-flight bound (429 when a
        token outpaces Kafka) and then from the shared one (503 when the API does).
        """
        settings = self._settings
        if not sends:
            # nothing to acknowledge: the answer does not depend on Kafka
            if dead and self._link.connected:
                with contextlib.suppress(KafkaError, Unavailable):
                    self._send_dead_letters(self._link.get(), dead, agency)
            return
        producer = self._link.get()
        n = len(sends)
        own = self.per_token.inflight(token_id)
        try:
            if not await own.acquire(n, settings.backpressure_wait.total_seconds()):
                self._metrics.rate_limited.inc()
                raise TooManyRequests(
                    f"token {token_id} has {own.inflight} events in flight to Kafka (limit "
                    f"{own.limit} per token); nothing was accepted",
                    retry_after=1,
                )
            try:
                await self._write_shared(producer, sends, dead, agency, headers)
            finally:
                await own.release(n)
        finally:
            self.per_token.done(token_id)

    async def _write_shared(
        self,
        producer: Producer,
        sends: list[tuple[bytes, bytes]],
        dead: list[DeadLetter],
        agency: str,
        headers: list[tuple[str, bytes]] | None,
    ) -> None:
        settings = self._settings
        n = len(sends)
        if not await self._inflight.acquire(n, settings.backpressure_wait.total_seconds()):
            self._metrics.saturated.inc()
            raise Unavailable(
                f"the API has {self._inflight.inflight} events in flight to Kafka (limit "
                f"{settings.max_inflight_events}); nothing was accepted",
                retry_after=1,
            )
        try:
            loop = asyncio.get_running_loop()
            acks = _Acks(loop, n)
            events_topic = self._topics.events
            send = producer.send
            done = acks.done
            try:
                for key, value in sends:
                    send(events_topic, value, key, headers=headers, on_delivery=done)
                if dead:
                    self._send_dead_letters(producer, dead, agency)
            except KafkaError as exc:
                self._link.report(False)
                raise Unavailable(
                    f"Kafka refused the batch ({type(exc).__name__}); nothing was accepted",
                    retry_after=int(settings.kafka_retry_after.total_seconds()),
                ) from exc
            ok = await acks.wait(settings.request_timeout.total_seconds())
        finally:
            await self._inflight.release(n)
        self._link.report(ok)
        if not ok:
            reason = type(acks.error).__name__ if acks.error else "timeout"
            logger.warning(
                "batch of %d events not acknowledged by Kafka (%s); answered 503", n, reason
            )
            raise Unavailable(
                f"Kafka did not acknowledge the batch ({reason}); nothing was accepted",
                retry_after=int(settings.kafka_retry_after.total_seconds()),
            )

    def _send_dead_letters(self, producer: Producer, dead: list[DeadLetter], agency: str) -> None:
        """Write rejections to the dead-letter topic; their failure only logs.

        The client has its per-event answer either way; a lost dead letter loses one
        count of the data-quality report, which the API's own counter still has.
        """
        topic = self._topics.deadletter
        key = agency.encode()
        encode = _dead_letter_encoder.encode
        for d in dead:
            producer.send(topic, encode(d), key, on_delivery=self._dead_letter_done)

    def _dead_letter_done(self, exc: BaseException | None, _partition: int, _offset: int) -> None:
        if exc is None:
            return
        self._metrics.dead_letter_failures.inc()
        logger.debug("dead letter not written: %s", exc)
