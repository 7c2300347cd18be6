"""The bus helpers the processor relies on."""

from __future__ import annotations

import random
from typing import Any

from kafka.partitioner.default import DefaultPartitioner

from contract import bus


class _Cluster:
    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


def test_key_partition_matches_the_default_partitioner() -> None:
    # a compacted key must always land in the same partition, whoever writes it
    rnd = random.Random(1)
    default: Any = DefaultPartitioner()
    for n in (1, 3, 12):
        cluster = _Cluster(n)
        for _ in range(500):
            key = rnd.randbytes(rnd.randrange(1, 90))
            assert bus.key_partition(key, n) == default.partition(
                "t", key, key, None, None, cluster
            )
