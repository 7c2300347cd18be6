"""The API's link to Kafka: one producer, opened in the background, replaced when it fails,
and the acknowledgements of a batch counted from the client's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading

from api.errors import Unavailable
from api.settings import ApiSettings
from contract.errors import BusError
from contract.settings import millis
from contract.topics import Topics
from kafkaport import KafkaError, Producer, connect
from kafkaport.reconnect import Reconnect

logger = logging.getLogger(__name__)


class Acks:
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
        # a fresh policy per loop: a producer that was connected is progress
        reconnect = Reconnect("API producer", self._stop, retry_on=(BusError,))
        producer = reconnect.run(self._open)
        if producer is None:
            return
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
