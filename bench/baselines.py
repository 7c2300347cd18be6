"""The yardsticks: what a bare client does on the same topic, in the same run.

The client is the processor's and the API's (confluent-kafka, librdkafka) unless a
benchmark asks for kafka-python (the producer library's default).

Every ratio in the benchmarks divides our number by one of these, measured minutes
apart on the same broker and the same data, so machine noise hits both alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import kafkaport
from contract.settings import CommonSettings
from kafkaport import BEGINNING, TopicPartition


@dataclass(frozen=True, slots=True)
class Rate:
    """``records`` in ``seconds`` of wall time, using ``cpu_seconds`` of this process."""

    records: int
    seconds: float
    cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_record(self) -> float:
        """CPU microseconds per record (all threads of the client), load-independent."""
        return self.cpu_seconds / self.records * 1e6 if self.records else 0.0


def raw_consume(
    settings: CommonSettings, topic: str, expected: int, client: kafkaport.Client = "confluent"
) -> Rate:
    """Read every record of ``topic`` with a bare consumer of the port, decoding nothing.

    ``read_committed``, assigned partitions (no group), from the beginning, default
    fetch sizes; the clock starts before the first poll and stops at the ``expected``-th
    record. This is the ceiling for any consumer of the topic on ``client``. Raises
    ``TimeoutError`` if fewer records arrive within a generous deadline.
    """
    consumer = kafkaport.connect(settings, client).consumer(client_id="servicepulse-bench-raw")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for(topic, 30))]
        consumer.assign(dict.fromkeys(parts, BEGINNING))
        seen = 0
        deadline = time.monotonic() + 120 + expected / 2_000
        t0, c0 = time.perf_counter(), time.process_time()
        while seen < expected:
            seen += len(consumer.poll(0.5, 10_000))
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consume of {topic} saw {seen} of {expected} records")
        return Rate(seen, time.perf_counter() - t0, time.process_time() - c0)
    finally:
        consumer.close()


def raw_produce(
    settings: CommonSettings,
    topic: str,
    records: list[tuple[bytes, bytes]],
    client: kafkaport.Client = "confluent",
) -> Rate:
    """Produce ``records`` with a bare producer of the port: ``acks=all``, idempotent.

    The project's producer settings (linger 5 ms, default batch size, no compression);
    the clock runs from the first ``send`` until ``flush`` returns, so every record
    counted was acknowledged by the broker. One warm-up record per partition is sent
    first (not timed).
    """
    producer = kafkaport.connect(settings, client).producer(client_id="servicepulse-bench-raw")
    try:
        # Metadata and a first record on every partition before the clock starts, as a
        # running service would have: leadership of a new topic may still be settling.
        for partition in sorted(producer.partitions_for(topic, 30)):
            producer.send(topic, b"{}", b"warm-up", partition=partition)
        producer.flush(60)
        send = producer.send
        t0, c0 = time.perf_counter(), time.process_time()
        for key, value in records:
            send(topic, value, key)
        if producer.flush(600):
            raise TimeoutError(f"raw produce to {topic}: records not acknowledged")
        return Rate(len(records), time.perf_counter() - t0, time.process_time() - c0)
    finally:
        producer.close(10)
