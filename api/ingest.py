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
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from api.admission import InflightLimiter, TokenSlots
from api.errors import BadRequest, PayloadTooLarge, RateLimited, TooManyRequests, Unavailable
from api.exposition import ApiMetrics
from api.producer import Acks, ProducerLink
from api.ratelimit import TokenBuckets
from api.recent import RecentIds, recent_key
from api.settings import ApiSettings
from api.tokens import TokenInfo
from contract import deadletter as dl
from contract.catalog import Catalog
from contract.deadletter import DeadLetter
from contract.events import (
    Event,
    Problem,
    Reason,
    decode_event,
    encode_event,
    event_key,
    split_batch,
)
from contract.topics import Topics
from kafkaport import KafkaError, Producer

logger = logging.getLogger(__name__)

EventStatus = Literal["accepted", "duplicate", "rejected"]


class ProblemOut(msgspec.Struct):
    """One problem of a rejected event, as answered."""

    field: str
    reason: str
    message: str


class EventResult(msgspec.Struct, omit_defaults=True):
    """The result of one event of the batch (``index`` is 0-based)."""

    index: int
    status: EventStatus
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


class _IdOnly(msgspec.Struct):
    event_id: Any = None


_id_decoder: Final = msgspec.json.Decoder(_IdOnly)
_UUID: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_response_encoder: Final = msgspec.json.Encoder()


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


# -- the ingest pipeline -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestReply:
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
        self._rate = TokenBuckets(settings.rate_limit_burst, settings.rate_limit_events_per_second)
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
    ) -> IngestReply:
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
        return IngestReply(body_out, accepted, duplicates, rejected)

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
            acks = Acks(loop, n)
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
        encode = dl.encode
        for d in dead:
            producer.send(topic, encode(d), key, on_delivery=self._dead_letter_done)

    def _dead_letter_done(self, exc: BaseException | None, _partition: int, _offset: int) -> None:
        if exc is None:
            return
        self._metrics.dead_letter_failures.inc()
        logger.debug("dead letter not written: %s", exc)
