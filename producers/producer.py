"""The producer library for agencies that push events straight to Kafka.

Every event is validated against the contract and the catalog *before* it is sent; an
invalid event raises :class:`InvalidEventError` (``send``) or is returned with its
problems (``send_batch``), never dropped. Raw citizen identifiers given as
``citizen_id`` are turned into pseudonyms here, so no personal data reaches Kafka.
Events are keyed by :func:`contract.events.event_key` (case, else journey) and sent by
an idempotent producer with ``acks=all``. :meth:`EventProducer.flush` waits for Kafka's
acknowledgements and raises :class:`DeliveryError` naming how many events were not
delivered.

Example::

    with EventProducer(settings, load_catalog(), pseudonym_secret=secret) as producer:
        producer.send(event_dict, citizen_id="123-456-789 64")
        report = producer.flush()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import msgspec
from pydantic import SecretStr

import kafkaport
from contract.catalog import Catalog
from contract.events import (
    SENT_AT_HEADER,
    Event,
    Problem,
    Reason,
    Rejected,
    decode_event,
    encode_event,
    event_key,
)
from contract.settings import CommonSettings, refuse_placeholder
from contract.topics import Topics
from producers.errors import DeliveryError, InvalidEventError, PseudonymError
from producers.pseudonym import Pseudonymizer
from producers.settings import ProducerSettings

logger = logging.getLogger(__name__)

#: Input field that carries a raw citizen identifier; replaced by ``citizen`` (pseudonym).
RAW_CITIZEN_FIELD: Final = "citizen_id"
_json: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Kafka's answer for one event: where it landed, or why it did not."""

    event_id: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether Kafka acknowledged the event (``acks=all``)."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Per-event results of one :meth:`EventProducer.flush`, in send order."""

    results: list[DeliveryResult]

    @property
    def delivered(self) -> int:
        """Events Kafka acknowledged."""
        return sum(r.delivered for r in self.results)

    @property
    def failed(self) -> list[DeliveryResult]:
        """Events Kafka did not acknowledge (failed, or not acknowledged in time)."""
        return [r for r in self.results if not r.delivered]


@dataclass(slots=True)
class BatchResult:
    """What :meth:`EventProducer.send_batch` did with each input event."""

    accepted: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class EventProducer:
    """Validates, pseudonymises, keys and sends events to the events topic.

    Use as a context manager: the Kafka client is opened on the first send and closed
    in ``__exit__``, which flushes first and raises :class:`DeliveryError` when events
    were not delivered.

    Args:
        settings: Kafka connection and topic prefix (``ProducerSettings`` also carries
            the pseudonym secret and the delivery timeout).
        catalog: the catalog events are checked against.
        pseudonym_secret: HMAC key for ``citizen_id``; default from ``settings``.
            Placeholders are refused outside local mode.
        delivery_timeout_s: how long Kafka may take to acknowledge an event before it
            counts as not delivered; default from ``settings`` (120 s).
        topic: override the events topic name.
        check_future: reject events more than 5 minutes ahead of this machine's clock.
        client: the Kafka client library: ``kafka-python`` (pure Python, the default)
            or ``confluent`` (librdkafka, about 20x less CPU per event); default from
            ``settings`` (``SERVICEPULSE_PRODUCER_CLIENT``).
    """

    def __init__(
        self,
        settings: CommonSettings,
        catalog: Catalog,
        *,
        pseudonym_secret: str | bytes | SecretStr | None = None,
        delivery_timeout_s: float | None = None,
        topic: str | None = None,
        check_future: bool = True,
        client: kafkaport.Client | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        if pseudonym_secret is None and isinstance(settings, ProducerSettings):
            pseudonym_secret = settings.pseudonym_secret
        secret = (
            pseudonym_secret
            if isinstance(pseudonym_secret, SecretStr) or pseudonym_secret is None
            else SecretStr(
                pseudonym_secret.decode()
                if isinstance(pseudonym_secret, bytes)
                else pseudonym_secret
            )
        )
        refuse_placeholder(settings, "pseudonym_secret", secret)
        self._pseudonymizer = (
            Pseudonymizer(secret) if secret is not None and secret.get_secret_value() else None
        )
        if delivery_timeout_s is None:
            delivery_timeout_s = (
                settings.producer_delivery_timeout.total_seconds()
                if isinstance(settings, ProducerSettings)
                else 120.0
            )
        self._delivery_timeout_s = delivery_timeout_s
        self._topic = topic or Topics(settings.topic_prefix).events
        self._check_future = check_future
        if client is None:
            client = (
                settings.producer_client if isinstance(settings, ProducerSettings) else None
            ) or "kafka-python"
        self._client_kind: kafkaport.Client = client
        self._client: kafkaport.Producer | None = None
        self._pending: list[_Pending] = []
        self._index = 0

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._client is not None and self._pending:
                if exc is None:
                    self.flush()
                else:
                    report = self.flush(raise_on_failure=False)
                    if report.failed:
                        logger.error(
                            "%d events not delivered to topic=%s while closing after an error",
                            len(report.failed),
                            self._topic,
                        )
                        exc.add_note(f"{len(report.failed)} events were not delivered to Kafka")
        finally:
            self.close()

    def close(self) -> None:
        """Close the Kafka client without waiting for unacknowledged events."""
        if self._client is not None:
            self._client.close(0 if self._pending else self._delivery_timeout_s)
            self._client = None

    @property
    def topic(self) -> str:
        """The topic events are sent to."""
        return self._topic

    @property
    def client_config(self) -> dict[str, Any]:
        """The Kafka client settings this library fixes (no credentials)."""
        return {
            "client": self._client_kind,
            "acks": "all",
            "enable_idempotence": True,
            "delivery_timeout_ms": int(self._delivery_timeout_s * 1000),
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "bootstrap_servers": self._settings.kafka_bootstrap,
        }

    def _ensure_client(self) -> kafkaport.Producer:
        if self._client is None:
            timeout_ms = int(self._delivery_timeout_s * 1000)
            self._client = kafkaport.connect(self._settings, self._client_kind).producer(
                client_id="servicepulse-producer",
                linger_ms=20,
                batch_bytes=256 * 1024,
                delivery_timeout_ms=timeout_ms,
                request_timeout_ms=min(30_000, max(1_000, timeout_ms // 2)),
                max_block_s=min(60.0, max(self._delivery_timeout_s, 1.0)),
            )
        return self._client

    # -- validation ------------------------------------------------------------------

    def prepare(
        self, item: Mapping[str, Any] | Event, *, citizen_id: str | None = None, index: int = 0
    ) -> Event | Rejected:
        """Validate one event without sending it: the event, or why it was rejected.

        A raw identifier may be given as ``citizen_id`` (argument or field); it becomes
        the ``citizen`` pseudonym. Giving both ``citizen`` and ``citizen_id`` is an error.
        """
        if isinstance(item, Event):
            data: dict[str, Any] = msgspec.to_builtins(item)
        elif isinstance(item, Mapping):
            data = dict(item)
        else:
            return Rejected(
                index, (Problem("", Reason.NOT_AN_OBJECT, "an event must be a JSON object"),)
            )
        event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
        agency = data.get("agency") if isinstance(data.get("agency"), str) else None
        raw_citizen = data.pop(RAW_CITIZEN_FIELD, None)
        if citizen_id is not None:
            if raw_citizen is not None:
                return Rejected(
                    index,
                    (
                        Problem(
                            RAW_CITIZEN_FIELD,
                            Reason.BAD_VALUE,
                            "citizen_id given both as an argument and as a field",
                        ),
                    ),
                    event_id,
                    agency,
                )
            raw_citizen = citizen_id
        if raw_citizen is not None:
            problem = self._pseudonymise(data, raw_citizen)
            if problem is not None:
                return Rejected(index, (problem,), event_id, agency)
        try:
            raw = _json.encode(data)
        except (TypeError, msgspec.EncodeError) as exc:
            return Rejected(
                index,
                (Problem("", Reason.WRONG_TYPE, f"event is not JSON-serialisable: {exc}"),),
                event_id,
                agency,
            )
        now = datetime.now(UTC) if self._check_future else None
        result = decode_event(raw, now, self._settings.earliest_occurred_at)
        if isinstance(result, list):
            return Rejected(index, tuple(result), event_id, agency)
        problems = self._catalog.check(result)
        if problems:
            return Rejected(index, tuple(problems), event_id, agency)
        return result

    def _pseudonymise(self, data: dict[str, Any], raw_citizen: object) -> Problem | None:
        if "citizen" in data and data["citizen"] is not None:
            return Problem(
                RAW_CITIZEN_FIELD,
                Reason.BAD_VALUE,
                "give either citizen (a pseudonym) or citizen_id (a raw identifier), not both",
            )
        if self._pseudonymizer is None:
            return Problem(
                RAW_CITIZEN_FIELD,
                Reason.BAD_VALUE,
                "citizen_id needs a pseudonym secret: set SERVICEPULSE_PSEUDONYM_SECRET",
            )
        if not isinstance(raw_citizen, str):
            return Problem(RAW_CITIZEN_FIELD, Reason.WRONG_TYPE, "citizen_id must be a string")
        try:
            data["citizen"] = self._pseudonymizer.pseudonym(raw_citizen)
        except PseudonymError as exc:
            return Problem(RAW_CITIZEN_FIELD, Reason.BAD_FORMAT, str(exc))
        return None

    # -- sending ---------------------------------------------------------------------

    def send(self, item: Mapping[str, Any] | Event, *, citizen_id: str | None = None) -> str:
        """Validate and send one event; returns its ``event_id``.

        Delivery is asynchronous: call :meth:`flush` (or leave the ``with`` block) to
        learn whether Kafka acknowledged it.

        Raises:
            InvalidEventError: the event is invalid; nothing was sent.
            DeliveryError: the client could not take the event (no broker metadata or a
                full buffer within the blocking timeout).
        """
        result = self.prepare(item, citizen_id=citizen_id, index=self._index)
        self._index += 1
        if isinstance(result, Rejected):
            raise InvalidEventError(result)
        self._send_valid(result)
        return result.event_id

    def send_batch(self, items: Iterable[Mapping[str, Any] | Event]) -> BatchResult:
        """Validate and send many events; invalid ones are returned, the rest are sent.

        ``Rejected.index`` is the position in ``items`` (0-based).

        Raises:
            DeliveryError: the client could not take an event (see :meth:`send`); the
                events before it were handed over and are reported by :meth:`flush`.
        """
        out = BatchResult()
        for i, item in enumerate(items):
            result = self.prepare(item, index=i)
            if isinstance(result, Rejected):
                out.rejected.append(result)
                continue
            self._send_valid(result)
            out.accepted.append(result.event_id)
        return out

    def send_valid(self, event: Event) -> None:
        """Send an event that :meth:`prepare` already accepted (no second validation)."""
        self._send_valid(event)

    def _send_valid(self, event: Event) -> None:
        client = self._ensure_client()
        slot = _Pending(event.event_id)
        try:
            sent = str(int(time.time() * 1000)).encode()
            client.send(
                self._topic,
                encode_event(event),
                event_key(event),
                on_delivery=slot.done,
                headers=[(SENT_AT_HEADER, sent)],
            )
        except kafkaport.KafkaError as exc:
            raise DeliveryError(
                f"event {event.event_id} could not be handed to Kafka at "
                f"{self._settings.kafka_bootstrap} (topic {self._topic}): {exc}; "
                f"1 event not delivered, {len(self._pending)} earlier events not yet "
                "acknowledged (call flush to learn their fate)",
                failed=1,
            ) from exc
        self._pending.append(slot)

    @property
    def pending(self) -> int:
        """Events sent and not yet reported by :meth:`flush`."""
        return len(self._pending)

    def flush(
        self, timeout: float | None = None, *, raise_on_failure: bool = True
    ) -> DeliveryReport:
        """Wait for Kafka to acknowledge every event sent so far; per-event results.

        Args:
            timeout: seconds to wait; default: the delivery timeout plus a margin.
                Events not acknowledged by then count as not delivered and stay pending.
            raise_on_failure: raise :class:`DeliveryError` when any event was not
                delivered (default); otherwise only return the report.

        Raises:
            DeliveryError: naming how many events were not delivered; ``.report`` has
                the per-event results.
        """
        if self._client is None or not self._pending:
            return DeliveryReport([])
        wait = timeout if timeout is not None else self._delivery_timeout_s + 5.0
        if self._client.flush(wait):
            logger.warning("flush timed out after %.1fs topic=%s", wait, self._topic)
        results: list[DeliveryResult] = []
        still: list[_Pending] = []
        unacked = 0
        for slot in self._pending:
            if not slot.answered:
                still.append(slot)
                unacked += 1
                results.append(
                    DeliveryResult(slot.event_id, error=f"not acknowledged within {wait:.1f}s")
                )
            elif slot.error is not None:
                results.append(DeliveryResult(slot.event_id, error=_describe(slot.error)))
            else:
                results.append(DeliveryResult(slot.event_id, slot.partition, slot.offset))
        self._pending = still
        report = DeliveryReport(results)
        failed = len(report.failed)
        if failed:
            first = next(r.error for r in report.failed)
            message = (
                f"{failed} of {len(results)} events were not delivered to topic "
                f"{self._topic} at {self._settings.kafka_bootstrap}"
                + (f" ({unacked} still unacknowledged)" if unacked else "")
                + f"; first error: {first}"
            )
            logger.warning(
                "events not delivered failed=%d total=%d topic=%s",
                failed,
                len(results),
                self._topic,
            )
            if raise_on_failure:
                raise DeliveryError(message, failed=failed, report=report)
        return report


class _Pending:
    """One sent event awaiting Kafka's answer (set on the client's thread)."""

    __slots__ = ("answered", "error", "event_id", "offset", "partition")

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        self.answered = False
        self.error: BaseException | None = None
        self.partition = -1
        self.offset = -1

    def done(self, error: BaseException | None, partition: int, offset: int) -> None:
        self.error, self.partition, self.offset = error, partition, offset
        self.answered = True


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}"
