"""The port over confluent-kafka (librdkafka): the processor's, the API's and the tooling's.

librdkafka does the network I/O, batching, compression, murmur2 partitioning and the
transaction protocol in C; a ``read_committed`` consumer asks for committed offsets with
``require_stable`` (KIP-447) and its position moves past transaction markers. Group
consumers use cooperative incremental rebalancing (``cooperative-sticky``): a join or a
leave revokes and assigns only the partitions that move. (The next-generation protocol of
KIP-848, ``group.protocol=consumer``, was measured on 2026-12-07 and not taken: its
broker-side 5 s heartbeat held the joiner's partitions back about 5 s, the session
timeout moves into the broker's configuration, and the keepers' pause it was to remove
was the fetcher wake-up below, which it has too.)

librdkafka's own log goes to the ``kafkaport.librdkafka`` logger at error level and above
(it never logs record contents).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from tenacity import Retrying, retry_if_exception, wait_fixed

from contract.settings import CommonSettings
from kafkaport.ports import DeliveryCallback, GroupMetadata, Isolation, RebalanceListener
from kafkaport.types import (
    BEGINNING,
    END,
    FencedError,
    Held,
    KafkaError,
    KafkaTimeoutError,
    Record,
    TopicExistsError,
    TopicPartition,
    UnknownTopicError,
)

logger = logging.getLogger(__name__)
_client_log = logging.getLogger("kafkaport.librdkafka")

_E = ck.KafkaError
_FENCED = frozenset(
    {
        _E.PRODUCER_FENCED,
        _E.INVALID_PRODUCER_EPOCH,
        _E._FENCED,
        _E.FENCED_INSTANCE_ID,
        _E.UNKNOWN_MEMBER_ID,
        _E.ILLEGAL_GENERATION,
        _E.REBALANCE_IN_PROGRESS,
    }
)
_TIMEOUTS = frozenset({_E._TIMED_OUT, _E.REQUEST_TIMED_OUT, _E._TIMED_OUT_QUEUE})
_UNKNOWN = frozenset({_E.UNKNOWN_TOPIC_OR_PART, _E._UNKNOWN_TOPIC, _E._UNKNOWN_PARTITION})
#: what a partition answers while a new topic's leadership settles
_SETTLING = frozenset(
    {_E.NOT_LEADER_FOR_PARTITION, _E.LEADER_NOT_AVAILABLE, _E.UNKNOWN_TOPIC_OR_PART}
)


def _settling(exc: BaseException) -> bool:
    """Whether a failed call may succeed if repeated: retriable, or a leader settling."""
    if not isinstance(exc, ck.KafkaException):
        return False
    code = exc.args[0].code() if exc.args and isinstance(exc.args[0], ck.KafkaError) else None
    return error(exc, "").retriable or code in _SETTLING


def error(exc: BaseException, doing: str) -> KafkaError:
    """Our error for a confluent-kafka exception (raise it ``from exc``)."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], ck.KafkaError) else None
    if err is None:
        return KafkaError(f"{doing}: {exc}")
    return _from_error(err, doing)


def _from_error(err: ck.KafkaError, doing: str) -> KafkaError:
    code = err.code()
    kind: type[KafkaError] = KafkaError
    if code in _FENCED:
        kind = FencedError
    elif code in _TIMEOUTS:
        kind = KafkaTimeoutError
    elif code in _UNKNOWN:
        kind = UnknownTopicError
    elif code == _E.TOPIC_ALREADY_EXISTS:
        kind = TopicExistsError
    return kind(
        f"{doing}: {err.name()} ({err.str()})",
        retriable=err.retriable(),
        fatal=err.fatal(),
        requires_abort=err.txn_requires_abort(),
    )


def _on_client_error(err: ck.KafkaError) -> None:
    # connection losses and the like: librdkafka retries them by itself; calls that
    # depend on them fail by their own timeouts
    if err.fatal():
        _client_log.error("Kafka client error: %s", err.str())
    else:
        _client_log.debug("Kafka client error: %s", err.str())


def _tp(tp: TopicPartition, offset: int | None = None) -> ck.TopicPartition:
    if offset is None:
        return ck.TopicPartition(tp.topic, tp.partition)
    return ck.TopicPartition(tp.topic, tp.partition, offset)


def _ours(tp: ck.TopicPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _committed(
    client: ck.Consumer, partitions: Sequence[TopicPartition], timeout_s: float, doing: str
) -> dict[TopicPartition, int | None]:
    """The committed offsets of ``partitions`` in ``client``'s group (``None``: none)."""
    if not partitions:
        return {}
    try:
        found = client.committed([_tp(tp) for tp in partitions], timeout=timeout_s)
    except ck.KafkaException as exc:
        raise error(exc, doing) from exc
    out: dict[TopicPartition, int | None] = {}
    for p in found:
        if p.error is not None:
            raise _from_error(p.error, f"{doing}: {_ours(p)}")
        out[_ours(p)] = p.offset if p.offset >= 0 else None
    return out


def connection_config(settings: CommonSettings) -> dict[str, Any]:
    """librdkafka's connection and security settings of ``settings``."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
        "logger": _client_log,
        "log_level": 3,
        "error_cb": _on_client_error,
    }
    if settings.kafka_sasl_mechanism:
        cfg["sasl.mechanism"] = settings.kafka_sasl_mechanism
        if settings.kafka_sasl_username is not None:
            cfg["sasl.username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            cfg["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile:
        cfg["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return cfg


class ConfluentKafka:
    """Opens confluent-kafka clients of the cluster in ``settings`` (nothing connects
    until a client is opened)."""

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings

    def _base(self, client_id: str) -> dict[str, Any]:
        return {**connection_config(self._settings), "client.id": client_id}

    def consumer(
        self,
        *,
        client_id: str,
        group_id: str | None = None,
        isolation: Isolation = "read_committed",
        session_timeout_ms: int | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> Consumer:
        cfg = {
            **self._base(client_id),
            "isolation.level": isolation,
            # offsets commit in transactions; the offset store (never committed by the
            # consumer itself) tells a fetch restarted by a rebalance where to resume
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # a group is required by librdkafka's consumer; assign() does not join it
            "group.id": group_id or f"{client_id}-unused",
            "partition.assignment.strategy": "cooperative-sticky",
            # no end-of-partition events: with them, librdkafka 2.12's batch consume
            # dropped the record that followed one (the position passes transaction
            # markers and aborted records by itself)
            "enable.partition.eof": False,
        }
        if session_timeout_ms is not None:
            cfg["session.timeout.ms"] = session_timeout_ms
            cfg["heartbeat.interval.ms"] = max(1000, session_timeout_ms // 4)
        if fetch_max_wait_ms is not None:
            cfg["fetch.wait.max.ms"] = fetch_max_wait_ms
        try:
            return Consumer(ck.Consumer(cfg))
        except ck.KafkaException as exc:
            raise error(exc, "cannot create a consumer") from exc

    def _producer_config(
        self, client_id: str, linger_ms: int, batch_bytes: int | None
    ) -> dict[str, Any]:
        cfg = {
            **self._base(client_id),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            # the partitioner of Java and kafka-python: a key lands where it always did
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
        if batch_bytes is not None:
            cfg["batch.size"] = batch_bytes
        return cfg

    def producer(
        self,
        *,
        client_id: str,
        linger_ms: int = 5,
        batch_bytes: int | None = None,
        delivery_timeout_ms: int | None = None,
        request_timeout_ms: int | None = None,
        max_block_s: float = 30.0,
    ) -> Producer:
        cfg = self._producer_config(client_id, linger_ms, batch_bytes)
        if delivery_timeout_ms is not None:
            cfg["delivery.timeout.ms"] = delivery_timeout_ms
        if request_timeout_ms is not None:
            cfg["request.timeout.ms"] = request_timeout_ms
        try:
            return Producer(ck.Producer(cfg), serve=True, block_s=max_block_s)
        except ck.KafkaException as exc:
            raise error(exc, "cannot create a producer") from exc

    def transactional_producer(
        self,
        *,
        client_id: str,
        transactional_id: str,
        transaction_timeout_ms: int,
        linger_ms: int = 5,
        batch_bytes: int | None = None,
        report_deliveries: bool = False,
        max_message_bytes: int | None = None,
    ) -> TransactionalProducer:
        cfg = {
            **self._producer_config(client_id, linger_ms, batch_bytes),
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
            # failures surface in commit_transaction(); no report per record unless asked
            "delivery.report.only.error": not report_deliveries,
            # A transaction begun right after a commit may have its AddOffsetsToTxn
            # answered CONCURRENT_TRANSACTIONS while the coordinator still writes the
            # previous commit's markers; the Java producer retries that answer after
            # 20 ms, librdkafka by default after 100 ms doubling to 1 s (single commits
            # of a cold broker took 0.6-0.8 s in send_offsets). In the latency benchmark
            # the difference was within the noise (docs/BENCHMARKS.md); it is kept as the
            # Java client's behaviour. Request retries only: reconnects keep their own
            # backoff, so a broker that is down is not asked more often.
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 100,
        }
        if max_message_bytes is not None:
            # librdkafka's limit on one request's records: a record of this size plus
            # its batch header must fit
            cfg["message.max.bytes"] = max_message_bytes + 64 * 1024
        try:
            return TransactionalProducer(ck.Producer(cfg), serve=False)
        except ck.KafkaException as exc:
            raise error(exc, "cannot create a transactional producer") from exc

    def admin(self) -> Admin:
        try:
            base = self._base("servicepulse-admin")
            return Admin(AdminClient(base), base)
        except ck.KafkaException as exc:
            raise error(exc, "cannot create an admin client") from exc


def _restart_kept_fetches(c: ck.Consumer, moving: set[tuple[str, int]]) -> None:
    """Seek the partitions a member keeps through a rebalance to where it stands.

    librdkafka pauses every assigned partition's fetcher while a rebalance callback runs
    and resumes them when the assignment call returns, but the resume does not wake the
    broker thread: it fetches again only at its next I/O timeout, up to a second later.
    The members that kept their partitions stood still for 0.5-1.1 s on every join
    (docs/BENCHMARKS.md, 2026-12-07). A seek changes the fetch state, which wakes the
    thread. The assign callback is the last step of every rebalance (an empty one
    follows a revocation), so this runs once per rebalance, after the resume. The
    position is the next record the application would get: nothing is skipped, and
    what the pause dropped from the queue is fetched again.
    """
    kept = [p for p in c.assignment() if (p.topic, p.partition) not in moving]
    if not kept:
        return
    try:
        for p in c.position(kept):
            if p.offset >= 0:  # nothing consumed yet: its first fetch is still to come
                c.seek(ck.TopicPartition(p.topic, p.partition, p.offset))
    except ck.KafkaException as exc:
        # the fetch resumes by itself at the thread's next timeout
        logger.info("could not restart the kept partitions' fetches: %s", exc)


class Consumer:
    """:class:`kafkaport.ports.Consumer` over ``confluent_kafka.Consumer``."""

    def __init__(self, client: ck.Consumer) -> None:
        self._c = client
        self._listener: RebalanceListener | None = None

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self._listener = listener
        try:
            self._c.subscribe(
                list(topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except ck.KafkaException as exc:
            raise error(exc, "cannot subscribe") from exc

    # librdkafka calls these from inside consume() on the polling thread; with the
    # cooperative protocol they carry only the partitions that move
    def _on_assign(self, c: ck.Consumer, parts: list[ck.TopicPartition]) -> None:
        tps = [_ours(p) for p in parts]
        starts = self._listener.on_assigned(tps) if tps and self._listener else {}
        assign, held = [], []
        for tp in tps:
            start = starts.get(tp)
            if isinstance(start, Held):
                held.append(_tp(tp))
            assign.append(_tp(tp, start if isinstance(start, int) else ck.OFFSET_STORED))
        c.incremental_assign(assign)
        if held:
            c.pause(held)  # before the first fetch, as a rule (the port's doc says more)
        _restart_kept_fetches(c, {(p.topic, p.partition) for p in assign})

    def _on_revoke(self, c: ck.Consumer, parts: list[ck.TopicPartition]) -> None:
        try:
            if parts and self._listener is not None:
                self._listener.on_revoked([_ours(p) for p in parts])
        finally:
            c.incremental_unassign(parts)

    def _on_lost(self, c: ck.Consumer, parts: list[ck.TopicPartition]) -> None:
        try:
            if parts and self._listener is not None:
                self._listener.on_lost([_ours(p) for p in parts])
        finally:
            c.incremental_unassign(parts)

    def assign(self, starts: Mapping[TopicPartition, int]) -> None:
        try:
            self._c.assign([_tp(tp, off) for tp, off in starts.items()])
        except ck.KafkaException as exc:
            raise error(exc, "cannot assign partitions") from exc

    def assignment(self) -> list[TopicPartition]:
        return [_ours(p) for p in self._c.assignment()]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        try:
            self._c.seek(_tp(partition, offset))
        except ck.KafkaException as exc:
            raise error(exc, f"cannot seek {partition}") from exc

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.pause([_tp(tp) for tp in partitions])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.resume([_tp(tp) for tp in partitions])

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        # librdkafka's batch consume waits for ``max_records`` or the whole timeout,
        # whichever comes first: a live stream's records sat in the fetch queue for up
        # to the timeout (the read model's 200 ms went straight into the end-to-end
        # latency). The port's poll returns once something is there: take what is
        # queued, else wait for one record and take what came with it.
        c = self._c
        try:
            msgs = c.consume(max_records, 0)
            if not msgs and timeout_s > 0:
                first = c.poll(timeout_s)
                if first is not None:
                    msgs = [first]
                    if max_records > 1:
                        msgs.extend(c.consume(max_records - 1, 0))
        except ck.KafkaException as exc:
            raise error(exc, "consume failed") from exc
        out: list[Record] = []
        append = out.append
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise _from_error(err, "consume failed")
                logger.warning("consumer: %s", err.str())
                continue
            append(
                Record(
                    m.topic(),  # type: ignore[arg-type]
                    m.partition(),  # type: ignore[arg-type]
                    m.offset(),  # type: ignore[arg-type]
                    m.timestamp()[1],
                    m.key(),
                    m.value(),
                    m.headers(),  # type: ignore[arg-type]
                )
            )
        return out

    def position(self, partition: TopicPartition) -> int | None:
        try:
            off = self._c.position([_tp(partition)])[0].offset
        except ck.KafkaException as exc:
            raise error(exc, f"no position of {partition}") from exc
        return off if off >= 0 else None

    def last_end(self, partition: TopicPartition) -> int | None:
        got = self._c.get_watermark_offsets(_tp(partition), cached=True)
        return got[1] if got is not None and got[1] >= 0 else None

    def committed(
        self, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, int | None]:
        return _committed(self._c, partitions, timeout_s, "cannot read committed offsets")

    def watermarks(
        self, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, tuple[int, int]]:
        out: dict[TopicPartition, tuple[int, int]] = {}
        deadline = time.monotonic() + timeout_s
        # a new topic's leaders take a moment to settle: its errors are repeated
        # every 0.1 s while the deadline leaves room for another call
        retrying = Retrying(
            retry=retry_if_exception(_settling),
            stop=lambda _state: time.monotonic() + 0.1 > deadline,
            wait=wait_fixed(0.1),
            reraise=True,
        )
        for tp in partitions:
            try:
                got = retrying(
                    lambda tp=tp: self._c.get_watermark_offsets(
                        _tp(tp), timeout=max(0.1, deadline - time.monotonic()), cached=False
                    )
                )
            except ck.KafkaException as exc:
                raise error(exc, f"cannot read the offsets of {tp}") from exc
            if got is None:
                raise KafkaTimeoutError(f"no offsets of {tp} within {timeout_s}s")
            out[tp] = (got[0], got[1])
        return out

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        return _partitions(self._c, topic, timeout_s)

    def group_metadata(self) -> GroupMetadata:
        md: GroupMetadata = self._c.consumer_group_metadata()
        return md

    def member_id(self) -> str:
        return self._c.memberid() or ""

    def close(self) -> None:
        try:
            self._c.close()
        except ck.KafkaException as exc:
            raise error(exc, "closing the consumer failed") from exc


def _partitions(client: ck.Consumer | ck.Producer, topic: str, timeout_s: float) -> set[int]:
    try:
        md = client.list_topics(topic, timeout=timeout_s)
    except ck.KafkaException as exc:
        raise error(exc, f"no metadata of topic {topic}") from exc
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return set()
    return set(t.partitions)


class Producer:
    """:class:`kafkaport.ports.Producer` over ``confluent_kafka.Producer``.

    With ``serve``, a daemon thread serves delivery callbacks (they run on it). The
    calls that serve the client's queue (``poll``, ``flush``) never run on two threads
    at once: they take ``_serving`` (confluent-kafka keeps per-thread call state for the
    callbacks they run). ``produce`` needs no lock. (The lock was added against benchmark
    processes that died of SIGSEGV now and then; a core dump later showed that crash to
    be the admin client's offsets fetch, see :meth:`Admin.group_offsets`.)
    """

    def __init__(self, client: ck.Producer, *, serve: bool, block_s: float = 30.0) -> None:
        self._p = client
        self._block_s = block_s
        self._closed = threading.Event()
        self._serving = threading.RLock()
        self._server: threading.Thread | None = None
        if serve:
            self._server = threading.Thread(
                target=self._serve, name="kafka-deliveries", daemon=True
            )
            self._server.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            with self._serving:
                self._p.poll(0.1)
            time.sleep(0)  # let a waiting flush take the lock

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        cb = None
        if on_delivery is not None:
            done = on_delivery

            def cb(err: ck.KafkaError | None, msg: Any) -> None:
                if err is None:
                    done(None, msg.partition(), msg.offset())
                else:
                    done(_from_error(err, "not delivered"), -1, -1)

        deadline: float | None = None
        while True:
            try:
                self._p.produce(
                    topic,
                    value,
                    key,
                    -1 if partition is None else partition,
                    on_delivery=cb,
                    timestamp=timestamp_ms or 0,
                    headers=list(headers) if headers else None,
                )
                return
            except BufferError as exc:  # the local queue is full: serve it and retry
                now = time.monotonic()
                deadline = deadline or now + self._block_s
                if now > deadline:
                    raise KafkaTimeoutError(
                        f"the producer's queue stayed full for {self._block_s:.1f}s"
                    ) from exc
                with self._serving:
                    self._p.poll(0.05)
            except ck.KafkaException as exc:
                raise error(exc, f"cannot send to {topic}") from exc

    def flush(self, timeout_s: float) -> int:
        try:
            with self._serving:
                left: int = self._p.flush(timeout_s)
        except ck.KafkaException as exc:
            raise error(exc, "flush failed") from exc
        except SystemError as exc:
            # confluent-kafka raises a fatal error (a fenced transactional producer) while
            # it still serves delivery reports: the next report's callback meets the
            # pending exception (kept as the cause) or loses it; the instance is unusable
            cause = exc.__cause__
            if isinstance(cause, ck.KafkaException):
                raise error(cause, "flush failed") from cause
            raise KafkaError(f"flush failed: {exc}", fatal=True) from exc
        return left

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        return _partitions(self._p, topic, timeout_s)

    def close(self, timeout_s: float) -> None:
        try:
            with self._serving:
                self._p.flush(timeout_s)
        finally:
            self._closed.set()
            if self._server is not None:
                self._server.join(1.0)


class TransactionalProducer(Producer):
    """:class:`kafkaport.ports.TransactionalProducer` over ``confluent_kafka.Producer``."""

    def _call(self, doing: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ck.KafkaException as exc:
            raise error(exc, doing) from exc

    def init_transactions(self, timeout_s: float) -> None:
        self._call("cannot initialise transactions", self._p.init_transactions, timeout_s)

    def begin_transaction(self) -> None:
        self._call("cannot begin a transaction", self._p.begin_transaction)

    def send_offsets(
        self,
        offsets: Mapping[TopicPartition, int],
        group: GroupMetadata,
        timeout_s: float,
    ) -> None:
        positions = [_tp(tp, off) for tp, off in offsets.items()]
        self._call(
            "cannot add offsets to the transaction",
            self._p.send_offsets_to_transaction,
            positions,
            group,
            timeout_s,
        )

    def commit_transaction(self, timeout_s: float) -> None:
        self._call("cannot commit the transaction", self._p.commit_transaction, timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        self._call("cannot abort the transaction", self._p.abort_transaction, timeout_s)


def _result(future: Any, doing: str, timeout_s: float) -> Any:
    try:
        return future.result(timeout=timeout_s)
    except ck.KafkaException as exc:
        raise error(exc, doing) from exc
    except TimeoutError as exc:
        raise KafkaTimeoutError(f"{doing}: no answer within {timeout_s}s") from exc


class Admin:
    """:class:`kafkaport.ports.Admin` over ``confluent_kafka.admin.AdminClient``."""

    def __init__(self, client: AdminClient, base: Mapping[str, Any] | None = None) -> None:
        self._a = client
        self._base = dict(base or {})
        #: one offsets reader per group asked about (see :meth:`group_offsets`)
        self._readers: dict[str, ck.Consumer] = {}

    def _metadata(self, timeout_s: float) -> Any:
        try:
            return self._a.list_topics(timeout=timeout_s)
        except ck.KafkaException as exc:
            raise error(exc, "no cluster metadata") from exc

    def list_topics(self, timeout_s: float) -> set[str]:
        return set(self._metadata(timeout_s).topics)

    def broker_count(self, timeout_s: float) -> int:
        return len(self._metadata(timeout_s).brokers)

    def create_topics(
        self,
        topics: Sequence[tuple[str, int, Mapping[str, str]]],
        replication: int,
        timeout_s: float,
    ) -> None:
        if not topics:
            return
        new = [
            NewTopic(name, num_partitions=n, replication_factor=replication, config=dict(cfg))
            for name, n, cfg in topics
        ]
        futures = self._a.create_topics(new, request_timeout=timeout_s, operation_timeout=timeout_s)
        for name, f in futures.items():
            try:
                _result(f, f"cannot create topic {name}", timeout_s)
            except TopicExistsError:
                logger.info("topic %s created concurrently by another process", name)

    def topic_configs(
        self, topics: Sequence[str], timeout_s: float
    ) -> dict[str, dict[str, str | None]]:
        if not topics:
            return {}
        res = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        futures = self._a.describe_configs(res, request_timeout=timeout_s)
        out: dict[str, dict[str, str | None]] = {}
        for r, f in futures.items():
            entries = _result(f, f"cannot read the configs of topic {r.name}", timeout_s)
            out[r.name] = {k: e.value for k, e in entries.items()}
        return out

    def alter_topic_configs(
        self, configs: Mapping[str, Mapping[str, str]], timeout_s: float
    ) -> None:
        res = [
            ConfigResource(
                ResourceType.TOPIC,
                t,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in cfg.items()
                ],
            )
            for t, cfg in configs.items()
        ]
        if not res:
            return
        futures = self._a.incremental_alter_configs(res, request_timeout=timeout_s)
        for r, f in futures.items():
            _result(f, f"cannot alter the configs of topic {r.name}", timeout_s)

    def delete_topics(self, topics: Sequence[str], timeout_s: float) -> None:
        if not topics:
            return
        futures = self._a.delete_topics(
            list(topics), request_timeout=timeout_s, operation_timeout=timeout_s
        )
        for name, f in futures.items():
            with contextlib.suppress(UnknownTopicError):
                _result(f, f"cannot delete topic {name}", timeout_s)

    def delete_records(self, before: Mapping[TopicPartition, int], timeout_s: float) -> None:
        futures = self._a.delete_records(
            [_tp(tp, off) for tp, off in before.items()],
            request_timeout=timeout_s,
            operation_timeout=timeout_s,
        )
        for tp, f in futures.items():
            _result(f, f"cannot delete records of {_ours(tp)}", timeout_s)

    def partition_leaders(
        self, topics: Sequence[str], timeout_s: float
    ) -> dict[TopicPartition, int]:
        md = self._metadata(timeout_s)
        out: dict[TopicPartition, int] = {}
        for name in topics:
            t = md.topics.get(name)
            if t is None or t.error is not None:
                continue
            for p in t.partitions.values():
                out[TopicPartition(name, p.id)] = p.leader if p.error is None else -1
        return out

    def list_groups(self, timeout_s: float) -> list[str]:
        got = _result(
            self._a.list_consumer_groups(request_timeout=timeout_s), "no groups", timeout_s
        )
        return [g.group_id for g in got.valid]

    def delete_groups(self, groups: Sequence[str], timeout_s: float) -> None:
        if not groups:
            return
        futures = self._a.delete_consumer_groups(list(groups), request_timeout=timeout_s)
        for g, f in futures.items():
            _result(f, f"cannot delete group {g}", timeout_s)

    def group_offsets(
        self, group: str, partitions: Sequence[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, int | None]:
        # Not the admin client's ListConsumerGroupOffsets: librdkafka (2.4 to 2.12 at
        # least, confluentinc/librdkafka#5040) dereferences the consumer group of the
        # admin client, which has none, when the broker answers NOT_COORDINATOR (a group
        # the coordinator has not loaded yet): the process dies of SIGSEGV. A consumer
        # of the group that never subscribes (it does not join) has that group state and
        # retries; with read_committed its fetch asks for stable offsets (KIP-447).
        if not partitions:
            return {}
        reader = self._readers.get(group)
        if reader is None:
            try:
                reader = ck.Consumer(
                    {
                        **self._base,
                        "group.id": group,
                        "enable.auto.commit": False,
                        "isolation.level": "read_committed",
                    }
                )
            except ck.KafkaException as exc:
                raise error(exc, f"cannot read the offsets of group {group}") from exc
            self._readers[group] = reader
        return _committed(
            reader, partitions, timeout_s, f"cannot read the offsets of group {group}"
        )

    def close(self) -> None:
        """Close the offsets readers (the admin client itself closes when collected)."""
        readers, self._readers = self._readers, {}
        for reader in readers.values():
            with contextlib.suppress(ck.KafkaException, RuntimeError):
                reader.close()


__all__ = [
    "BEGINNING",
    "END",
    "Admin",
    "ConfluentKafka",
    "Consumer",
    "Producer",
    "TransactionalProducer",
    "connection_config",
    "error",
]
