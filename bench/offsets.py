"""Watching a consumer group catch up, from outside, the same way for every contestant.

The throughput of an exactly-once processor is the rate at which its input offsets are
*committed*: only then are its outputs visible to ``read_committed`` readers. The
benchmark observes that with an admin client polling the group's committed offsets, so
our processor and the peer are timed by one referee that needs nothing from either.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import kafkaport
from contract.settings import CommonSettings
from kafkaport import Admin, KafkaError, TopicPartition


def end_offsets(settings: CommonSettings, topic: str) -> dict[TopicPartition, int]:
    """The log end offset of every partition of ``topic``."""
    consumer = kafkaport.connect(settings).consumer(
        client_id="servicepulse-bench", isolation="read_uncommitted"
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for(topic, 30))]
        return {tp: end for tp, (_, end) in consumer.watermarks(parts, 30).items()}
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class CatchUp:
    """When a group's committed offsets moved, on the ``time.perf_counter`` clock.

    Attributes:
        group: the consumer group that was watched.
        started: when watching began (the contestant's processes had just been spawned).
        first_commit: when the first committed offset was seen.
        committed_at_first: how many records the first observed commit covered.
        done: when every partition's committed offset reached the end offset.
        records: records between the start offsets and the end offsets.
        advances: how many times the committed total was seen to grow after the first.
    """

    group: str
    started: float
    first_commit: float
    committed_at_first: int
    done: float
    records: int
    advances: int = 0

    @property
    def wall_seconds(self) -> float:
        """From spawn to all committed: start-up, group join and processing."""
        return self.done - self.started

    @property
    def steady_seconds(self) -> float:
        """From the first commit to the last."""
        return self.done - self.first_commit

    @property
    def steady_rate(self) -> float:
        """Records per second between the first and the last commit (start-up excluded)."""
        n = self.records - self.committed_at_first
        return n / self.steady_seconds if self.steady_seconds > 0 else 0.0

    @property
    def steady_measurable(self) -> bool:
        """Whether the first-to-last-commit rate means something.

        It needs at least half the records committed after the first commit seen, over
        at least three further commits and one second. With small data sets a few big
        transactions cover everything; then only the rate from spawn is meaningful.
        """
        return (
            self.steady_seconds >= 1.0
            and self.advances >= 3
            and self.records - self.committed_at_first >= self.records / 2
        )

    @property
    def rate(self) -> float:
        """The steady rate when measurable, else the rate from spawn."""
        return self.steady_rate if self.steady_measurable else self.wall_rate

    @property
    def rate_kind(self) -> str:
        """Which rate :attr:`rate` is: ``first-to-last commit`` or ``from spawn``."""
        return "first-to-last commit" if self.steady_measurable else "from spawn"

    @property
    def wall_rate(self) -> float:
        """Records per second from spawn to the last commit."""
        return self.records / self.wall_seconds if self.wall_seconds > 0 else 0.0


class ProcessDied(RuntimeError):
    """A contestant process exited before its group caught up."""


def watch(
    settings: CommonSettings,
    topic: str,
    end: dict[TopicPartition, int],
    *,
    group: str | None = None,
    procs: Sequence[subprocess.Popen[bytes]] = (),
    exited_ok: bool = False,
    timeout: float = 1800.0,
    interval: float = 0.05,
    on_progress: Callable[[int], None] | None = None,
    on_first: Callable[[int], None] | None = None,
    on_tick: Callable[[float, int], None] | None = None,
) -> CatchUp:
    """Poll until the group (``group``, else the one group committing on ``topic``) is done.

    Args:
        end: the end offsets to reach (from :func:`end_offsets`).
        procs: the contestant's processes; if one exits early the watch fails with
            :class:`ProcessDied` (unless ``exited_ok``: a peer that stops itself).
        on_progress: called with the number of records committed so far.
        on_first: called once, with the records committed, when the first commit is
            seen (e.g. to sample the contestant's CPU after its start-up).
        on_tick: called at every look, with the time (``time.perf_counter``) and the
            records committed so far.

    Raises:
        TimeoutError: not caught up within ``timeout`` seconds.
    """
    client = kafkaport.connect(settings).admin()
    total = sum(end.values())
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    last = 0
    advances = 0
    try:
        deadline = time.monotonic() + timeout
        while True:
            now = time.perf_counter()
            gid = group or _find_group(client, topic, end)
            committed = _committed(client, gid, topic, end) if gid else 0
            if committed and first is None:
                first = (now, committed)
                if on_first is not None:
                    on_first(committed)
            elif first is not None and committed > last:
                advances += 1
            last = max(last, committed)
            if on_progress is not None:
                on_progress(committed)
            if on_tick is not None:
                on_tick(now, committed)
            if gid and first is not None and committed >= total:
                return CatchUp(gid, started, first[0], first[1], now, total, advances)
            for p in procs:
                if p.poll() is not None and not exited_ok:
                    raise ProcessDied(f"pid {p.pid} exited with code {p.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: committed {committed} of {total} in {timeout:.0f}s")
            time.sleep(interval)
    finally:
        client.close()


def _find_group(client: Admin, topic: str, end: dict[TopicPartition, int]) -> str | None:
    """The first group that has committed an offset of ``topic`` (of its ``end``)."""
    parts = [tp for tp in end if tp.topic == topic]
    with contextlib.suppress(KafkaError):
        for gid in client.list_groups(10):
            if any(off is not None for off in client.group_offsets(gid, parts, 10).values()):
                return gid
    return None


def _committed(client: Admin, group: str, topic: str, end: dict[TopicPartition, int]) -> int:
    try:
        offsets = client.group_offsets(group, list(end), 10)
    except KafkaError:
        return 0
    return sum(max(0, off or 0) for tp, off in offsets.items() if tp.topic == topic)


def delete_groups(settings: CommonSettings, marker: str) -> None:
    """Delete every consumer group whose id contains ``marker`` (benchmark clean-up)."""
    client = kafkaport.connect(settings).admin()
    try:
        mine = [g for g in client.list_groups(10) if marker in g]
        with contextlib.suppress(KafkaError):
            client.delete_groups(mine, 30)
    finally:
        client.close()
