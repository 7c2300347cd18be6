"""The read model's checkpoint on Kafka: its snapshot, shared by every API and report.

A local snapshot (``SERVICEPULSE_READMODEL_SNAPSHOT``) makes one API's restart cheap, but
an API on a new machine, a lost volume, or ``servicepulse report`` (which has no
snapshot) read the whole history again: every closed day's cells and the live window's
values, about an hour of CPU at a year of regional traffic (docs/BENCHMARKS.md,
"History"). The checkpoint is the same snapshot file, published now and then by the
API to the compacted topic ``<prefix>.readmodel`` (one partition), so any reader starts
from it and reads only what is newer.

Layout: the file in pieces of :data:`PIECE_BYTES` under the keys ``p|0``, ``p|1``, ...,
each value the checkpoint's 16-byte id and then the piece; then the head ``h``
(:class:`Head`: id, pieces, size, SHA-256 of the file). One checkpoint is one
transaction, the head last, and tombstones for the pieces an earlier, larger one left,
so a ``read_committed`` reader sees whole checkpoints only, and after compaction the
newest one's records are exactly what is left. The reader streams the pieces of the
newest complete checkpoint to a file (never the whole checkpoint in memory) and checks
its size and digest before anyone reads the file; the read model then checks it as it
checks its own snapshot (same topics, not ahead of their end offsets) and falls back to
reading everything when it does not fit.

The publisher is single-minded: one transactional id per topic prefix, so a second API
publishing fences the first until its next period (both checkpoints are valid; the
newest wins). Publishing reads the snapshot file the API just wrote, in a thread of its
own, flushing every few pieces so the client never buffers the whole file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from contract.settings import CommonSettings
from contract.topics import CHECKPOINT_MAX_BYTES, Topics
from kafkaport import (
    BEGINNING,
    FencedError,
    KafkaError,
    TopicPartition,
    TransactionalProducer,
    connect,
)

logger = logging.getLogger(__name__)

#: Bytes of the snapshot file in one record (the topic allows a little more).
PIECE_BYTES: Final = 4 * 1024 * 1024
#: Pieces sent between two flushes: bounds what the client buffers (32 MiB).
FLUSH_EVERY: Final = 8
HEAD_KEY: Final = b"h"
ID_BYTES: Final = 16
#: A checkpoint of a year is a few hundred MB: one transaction may take minutes.
TRANSACTION_TIMEOUT_MS: Final = 600_000


class Head(msgspec.Struct, frozen=True):
    """The record that completes a checkpoint (key ``h``)."""

    id: bytes
    pieces: int
    size: int
    sha256: bytes
    published_at: float


_head_dec: Final = msgspec.msgpack.Decoder(Head)


def piece_key(index: int) -> bytes:
    """The key of piece ``index``."""
    return b"p|%d" % index


def _private(path: Path) -> BinaryIO:
    """``path`` opened for writing, readable by this user only (it holds every agency's
    numbers, as the snapshot it becomes), its directory made if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _piece_index(key: bytes | None) -> int | None:
    if key is None or not key.startswith(b"p|"):
        return None
    with contextlib.suppress(ValueError):
        return int(key[2:])
    return None


class ReadModelCheckpoint:
    """Publishes and fetches the read model's checkpoint on ``<prefix>.readmodel``.

    Args:
        settings: where Kafka is.
        topics: the topic prefix (the checkpoint topic and the transactional id).
    """

    def __init__(self, settings: CommonSettings, topics: Topics) -> None:
        self._settings = settings
        self.topic = topics.readmodel
        self._transactional_id = f"servicepulse-api-checkpoint-{topics.prefix}"
        self._producer: TransactionalProducer | None = None
        #: pieces of the newest checkpoint this process knows of: the keys to tombstone
        #: when a smaller one replaces it
        self._known_pieces = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: of the last publish: when it ended (epoch s), bytes, wall seconds, or the error
        self.published_at: float | None = None
        self.published_bytes = 0
        self.publish_seconds = 0.0
        self.error = ""

    # -- publishing ------------------------------------------------------------------

    @property
    def publishing(self) -> bool:
        """Whether a publish is running."""
        return self._thread is not None and self._thread.is_alive()

    def publish_async(self, snapshot: Path) -> bool:
        """Publish ``snapshot`` in a thread unless one is running; whether it started."""
        with self._lock:
            if self.publishing:
                return False
            # opened here: the API may replace the file while the thread reads it
            f = snapshot.open("rb")
            self._thread = threading.Thread(
                target=self._publish_file, args=(f,), name="api-checkpoint", daemon=True
            )
            self._thread.start()
            return True

    def wait(self, timeout: float) -> None:
        """Wait for a running publish (tests, shutdown)."""
        t = self._thread
        if t is not None:
            t.join(timeout)

    def publish(self, snapshot: Path) -> None:
        """Publish ``snapshot`` now, in this thread (raises :class:`KafkaError`)."""
        with snapshot.open("rb") as f:
            self._publish(f)

    def _publish_file(self, f: BinaryIO) -> None:
        try:
            with f:
                self._publish(f)
        except (KafkaError, OSError) as exc:
            self.error = str(exc)
            logger.warning("read-model checkpoint not published to %s: %s", self.topic, exc)

    def _ensure_producer(self) -> TransactionalProducer:
        if self._producer is None:
            p = connect(self._settings).transactional_producer(
                client_id="servicepulse-api-checkpoint",
                transactional_id=self._transactional_id,
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                linger_ms=20,
                max_message_bytes=CHECKPOINT_MAX_BYTES,
            )
            try:
                p.init_transactions(60.0)
            except BaseException:
                p.close(1.0)
                raise
            self._producer = p
        return self._producer

    def _publish(self, f: BinaryIO) -> None:
        started = time.monotonic()
        producer = self._ensure_producer()
        cid = os.urandom(ID_BYTES)
        digest = hashlib.sha256()
        size = 0
        pieces = 0
        failures: list[str] = []

        def failed(err: KafkaError | None, _partition: int, _offset: int) -> None:
            if err is not None:
                failures.append(str(err))

        producer.begin_transaction()
        try:
            while True:
                data = f.read(PIECE_BYTES)
                if not data:
                    break
                digest.update(data)
                size += len(data)
                producer.send(
                    self.topic, cid + data, piece_key(pieces), partition=0, on_delivery=failed
                )
                pieces += 1
                if pieces % FLUSH_EVERY == 0:
                    producer.flush(120.0)
                if failures:
                    raise KafkaError(failures[0])
            for i in range(pieces, self._known_pieces):
                producer.send(self.topic, None, piece_key(i), partition=0, on_delivery=failed)
            head = Head(cid, pieces, size, digest.digest(), time.time())
            producer.send(
                self.topic, msgspec.msgpack.encode(head), HEAD_KEY, partition=0, on_delivery=failed
            )
            producer.flush(120.0)
            if failures:
                raise KafkaError(failures[0])
            producer.commit_transaction(120.0)
        except FencedError:
            # another API publishes now: give way until the next period
            self._close_producer()
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                producer.abort_transaction(30.0)
            self._close_producer()
            raise
        self._known_pieces = pieces
        self.published_at = time.time()
        self.published_bytes = size
        self.publish_seconds = time.monotonic() - started
        self.error = ""
        logger.info(
            "read-model checkpoint published to %s: %d bytes in %d pieces, %.1fs",
            self.topic,
            size,
            pieces,
            self.publish_seconds,
        )

    def _close_producer(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            with contextlib.suppress(Exception):
                p.close(5.0)

    def close(self) -> None:
        """Wait a little for a running publish (it aborts if it is not done), then close."""
        self.wait(10.0)
        self._close_producer()

    # -- fetching --------------------------------------------------------------------

    def fetch(self, into: Path, timeout: float = 300.0) -> Head | None:
        """Write the newest complete checkpoint to ``into``; ``None`` if there is none.

        Reads the topic to its end (``read_committed``), streaming the pieces of each
        checkpoint to a file beside ``into`` and keeping the newest whose head matches
        its pieces, size and digest. Raises :class:`KafkaError` when Kafka fails, and
        ``TimeoutError`` when the end is not reached within ``timeout`` seconds.
        """
        consumer = connect(self._settings).consumer(
            client_id="servicepulse-api-checkpoint-reader", fetch_max_wait_ms=100
        )
        work = into.with_name(into.name + ".fetching")
        best: Head | None = None
        try:
            if not consumer.partitions_for(self.topic, 10.0):
                return None
            tp = TopicPartition(self.topic, 0)
            _, end = consumer.watermarks([tp], 30.0)[tp]
            if end <= 0:
                return None
            consumer.assign({tp: BEGINNING})
            deadline = time.monotonic() + timeout
            current: bytes | None = None
            expect = 0
            size = 0
            digest = hashlib.sha256()
            out = None
            position = 0
            idle = 0
            try:
                while position < end:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"checkpoint topic {self.topic} not read to its end within {timeout:g}s"
                        )
                    # a few pieces at a time: 64 would hold 256 MiB of them at once
                    records = consumer.poll(0.5, 4)
                    if not records:
                        pos = consumer.position(tp) or 0
                        idle = idle + 1 if pos <= position else 0
                        position = max(position, pos)
                        if idle >= 10:
                            # stopped below the end: a publish is open (its records are
                            # invisible until it commits); what is complete is enough
                            break
                        continue
                    idle = 0
                    for rec in records:
                        position = rec.offset + 1
                        index = _piece_index(rec.key)
                        value = rec.value
                        if index is not None and value is not None and len(value) > ID_BYTES:
                            cid = value[:ID_BYTES]
                            if index == 0:  # a new checkpoint starts
                                if out is not None:
                                    out.close()
                                out = _private(work)
                                current, expect, size = cid, 0, 0
                                digest = hashlib.sha256()
                            if cid != current or index != expect or out is None:
                                continue  # left over from an older one
                            chunk = value[ID_BYTES:]
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                            expect += 1
                        elif rec.key == HEAD_KEY and value is not None and out is not None:
                            try:
                                head = _head_dec.decode(value)
                            except msgspec.DecodeError:
                                continue
                            if (
                                head.id == current
                                and head.pieces == expect
                                and head.size == size
                                and head.sha256 == digest.digest()
                            ):
                                out.close()
                                out = None
                                os.replace(work, into)
                                best = head
                                self._known_pieces = max(self._known_pieces, head.pieces)
                                current = None
            finally:
                if out is not None:
                    out.close()
                with contextlib.suppress(FileNotFoundError):
                    work.unlink()
            return best
        finally:
            consumer.close()
