"""Benchmark 4: memory per open journey, and restore time of 1M open journeys.

**Memory.** A fresh child process builds the processor's own per-partition engine
(:class:`processors.engine.PartitionEngine`) and applies N ``journey.started`` events
(portal/mobile and office channels, event times within 20 minutes so none is abandoned)
through :meth:`PartitionEngine.process`, exactly as the processor does; the figure is
the growth of the process's resident memory divided by N: the journey object, its dict
entry and key, its timer, its remembered event id, allocator overhead, all of it.

**Restore.** The same engines (one per partition of 12, events partitioned by Kafka's
own key hash) produce the changelog records of 1M open journeys - journeys, dedup
blocks, partition meta - and those are written to the changelog topic. Then a real
``servicepulse process`` is started on those topics with one new event per partition;
the figure is the time from its spawn until its consumer group has committed those
events, which it can only do after restoring every partition's state. The resident
memory of that process after the restore is reported too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import offsets, processor, workload
from bench.harness import BenchContext, Figure, Goal, unavailable

GOAL_BYTES = Goal("value", "<", 1024.0)
GOAL_RESTORE = Goal("value", "<=", 60.0)
PARTITIONS = 12


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _engine_context() -> Any:
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from processors.context import Context

    return Context(load_catalog(), load_methodology().standards)


class _Rec:
    """The fields of a consumed record the engine reads."""

    __slots__ = ("key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, key: bytes, value: bytes, partition: int, offset: int, ts: int) -> None:
        self.topic = "bench"
        self.key = key
        self.value = value
        self.partition = partition
        self.offset = offset
        self.timestamp = ts


def open_journeys(n: int, seed: int = 5) -> Iterator[tuple[bytes, bytes]]:
    """``n`` encoded ``journey.started`` events of distinct journeys, none to be closed.

    Event times are spread over 20 minutes (less than any ``abandon_after``), so no
    journey is abandoned while they are applied.
    """
    import random
    import uuid

    from contract.catalog import load_catalog
    from contract.events import Channel, Event, EventType, encode_event, event_key

    cat = load_catalog()
    rng = random.Random(seed)  # noqa: S311 - traffic shapes, not secrets
    services = [idx.service for idx in cat.services.values()]
    municipalities = list(cat.municipalities)
    base = workload.EPOCH
    for i in range(n):
        svc = services[i % len(services)]
        ev = Event(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            type=EventType.JOURNEY_STARTED,
            schema_version=1,
            occurred_at=base + timedelta(milliseconds=i * 1_200_000 // max(n, 1)),
            agency=svc.agency,
            service=svc.code,
            municipality=municipalities[i % len(municipalities)],
            channel=Channel(svc.channels[i % len(svc.channels)]),
            journey=f"open-{seed}-{i}",
        )
        yield event_key(ev), encode_event(ev)


def measure_memory(n: int) -> dict[str, Any]:
    """In this process: RSS growth of one engine holding ``n`` open journeys."""
    from processors.engine import PartitionEngine

    ctx = _engine_context()
    engine = PartitionEngine(0, ctx)
    ts = int(workload.EPOCH.timestamp() * 1000) + 1_200_000

    def chunks(seed: int, count: int) -> Iterator[list[_Rec]]:
        chunk: list[_Rec] = []
        for i, (k, v) in enumerate(open_journeys(count, seed)):
            chunk.append(_Rec(k, v, 0, i, ts))
            if len(chunk) == 2_000:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    # Warm every lazy structure (catalog caches, rollup cells, allocator pools) on
    # another engine first; the input is made in small chunks so it does not count.
    warm = PartitionEngine(0, ctx)
    for chunk in chunks(99, min(n, 20_000)):
        warm.process(chunk)
        warm.flush()
    del warm, chunk
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    for chunk in chunks(5, n):
        engine.process(chunk)
        engine.flush()
    seconds = time.perf_counter() - t0
    del chunk
    gc.collect()
    after = rss_bytes()
    sizes = engine.state_sizes()
    cross_check = None
    try:
        from bench.sizing import open_journey_state
    except ImportError:
        pass
    else:
        # The processor's own measure (tracemalloc; journeys of two events each).
        size = open_journey_state(ctx, 20_000)
        cross_check = {
            "tracemalloc_bytes_per_journey": round(size.memory_bytes_per_journey, 1),
            "changelog_bytes_per_journey": round(size.changelog_bytes_per_journey, 1),
            "journey_record_bytes": round(size.journey_record_bytes, 1),
        }
    return {
        "journeys": n,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_journey": (after - before) / n,
        "apply_seconds": seconds,
        "state_sizes": sizes,
        "processors_sizing": cross_check,
    }


def _murmur_partition(key: bytes, partitions: int) -> int:
    from kafkaport.kafkapython import murmur2_partition

    return murmur2_partition(key, partitions)


def changelog_of_open_journeys(n: int) -> tuple[dict[int, list[tuple[bytes, bytes | None]]], int]:
    """The changelog records per partition that ``n`` open journeys leave behind.

    Made by the processor's engine itself; returns the records and the total count.
    """
    from processors.engine import PartitionEngine

    ctx = _engine_context()
    engines = {p: PartitionEngine(p, ctx) for p in range(PARTITIONS)}
    by_part: dict[int, list[_Rec]] = {p: [] for p in range(PARTITIONS)}
    ts = int(workload.EPOCH.timestamp() * 1000) + 1_200_000
    for i, (k, v) in enumerate(open_journeys(n)):
        p = _murmur_partition(k, PARTITIONS)
        by_part[p].append(_Rec(k, v, p, i, ts))
    out: dict[int, list[tuple[bytes, bytes | None]]] = {}
    total = 0
    for p, recs in by_part.items():
        eng = engines[p]
        changelog: dict[bytes, bytes | None] = {}
        for i in range(0, len(recs), 20_000):
            eng.process(recs[i : i + 20_000])
            for key, value in eng.flush().changelog:
                changelog[key] = value
        out[p] = list(changelog.items())
        total += len(out[p])
    return out, total


def bench_state(ctx: BenchContext) -> list[Figure]:
    """Figures 4a and 4b: bytes per open journey; restore of 1M open journeys."""
    n_restore = 100_000 if ctx.quick else 1_000_000
    names = [
        ("state bytes per open journey", "bytes", GOAL_BYTES),
        (
            f"restore of {n_restore:,} open journeys (spawn to caught up)",
            "s",
            # the goal is stated for 1M; a --quick run measures fewer and judges nothing
            GOAL_RESTORE if n_restore == 1_000_000 else None,
        ),
    ]
    try:
        import processors.engine  # noqa: F401
    except ImportError:
        return unavailable("state", names, "the processor engine is not built yet")
    n_mem = 100_000 if ctx.quick else 1_000_000
    ctx.say(f"state: memory of {n_mem:,} open journeys in a fresh process ...")
    proc = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.statebench", "memory", str(n_mem)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    figures: list[Figure] = []
    if proc.returncode != 0:
        figures.append(
            Figure("state", names[0][0], None, "bytes", goal=GOAL_BYTES, note=proc.stderr[-800:])
        )
    else:
        mem = json.loads(proc.stdout.strip().splitlines()[-1])
        ctx.say(f"  {mem['bytes_per_journey']:,.0f} bytes per open journey")
        figures.append(
            Figure(
                "state",
                names[0][0],
                mem["bytes_per_journey"],
                "bytes",
                goal=GOAL_BYTES,
                note=(
                    f"RSS growth of a fresh process whose PartitionEngine applied "
                    f"{n_mem:,} journey.started events ({mem['state_sizes']['journeys']:,} "
                    f"journeys, {mem['state_sizes']['timers']:,} timers, "
                    f"{mem['state_sizes']['event_ids']:,} remembered event ids)"
                    + (
                        f"; cross-check with bench.sizing (tracemalloc, journeys of two "
                        f"events): {xc['tracemalloc_bytes_per_journey']:.0f} bytes in memory, "
                        f"{xc['changelog_bytes_per_journey']:.0f} bytes of changelog per journey"
                        if (xc := mem.get("processors_sizing"))
                        else ""
                    )
                ),
                details=mem,
            )
        )
    figures.append(_restore(ctx, names[1][0], n_restore, names[1][2]))
    return figures


def _restore(ctx: BenchContext, name: str, n: int, goal: Goal | None) -> Figure:
    why = processor.missing()
    if why:
        return Figure("state", name, None, "s", goal=goal, note=f"not available: {why}")
    import kafkaport

    ctx.say(f"state: changelog of {n:,} open journeys made by the engine ...")
    records, total = changelog_of_open_journeys(n)
    topics, settings = ctx.topics("st", PARTITIONS)
    ctx.say(f"state: writing {total:,} changelog records to {topics.changelog} ...")
    producer = kafkaport.connect(settings).producer(
        client_id="servicepulse-bench", linger_ms=20, batch_bytes=512 * 1024
    )
    t0 = time.perf_counter()
    try:
        for p, recs in records.items():
            for key, value in recs:
                producer.send(topics.changelog, value, key, partition=p)
        producer.flush(300)
    finally:
        producer.close(10)
    write_s = time.perf_counter() - t0
    changelog_bytes = sum(len(k) + len(v or b"") for recs in records.values() for k, v in recs)
    del records
    # One new event per partition: the processor commits it only after restoring.
    markers = _one_event_per_partition()
    producer = kafkaport.connect(settings).producer(client_id="servicepulse-bench")
    try:
        for p, (key, value) in markers.items():
            producer.send(topics.events, value, key, partition=p)
        producer.flush(60)
    finally:
        producer.close(10)
    end = offsets.end_offsets(settings, topics.events)
    ctx.say(f"state: starting a processor to restore {n:,} open journeys ...")
    procs = processor.spawn(settings, ctx.group("restore"), 1, ctx.work_dir / "logs")
    try:
        catch = offsets.watch(settings, topics.events, end, group=ctx.group("restore"), procs=procs)
        rss = rss_bytes(procs[0].pid)
    finally:
        processor.stop(procs)
    seconds = catch.wall_seconds
    ctx.say(f"  restored and caught up in {seconds:.1f} s; processor RSS {rss / 2**20:,.0f} MiB")
    return Figure(
        "state",
        name,
        seconds,
        "s",
        goal=goal,
        note=(
            f"{n:,} open journeys = {total:,} changelog records "
            f"({changelog_bytes / 2**20:,.0f} MiB) in 12 partitions, made by the engine; "
            f"one `servicepulse process` from spawn "
            f"(interpreter start, group join, restore) until its first commit; "
            f"its RSS afterwards {rss / 2**20:,.0f} MiB"
        ),
        details={
            "journeys": n,
            "changelog_records": total,
            "changelog_bytes": changelog_bytes,
            "changelog_write_seconds": round(write_s, 2),
            "processor_rss_bytes": rss,
            "seconds": round(seconds, 3),
        },
    )


def _one_event_per_partition() -> dict[int, tuple[bytes, bytes]]:
    """A valid ``journey.started`` event for each partition (found by key hash)."""
    from contract.events import Channel, Event, EventType, encode_event, event_key

    out: dict[int, tuple[bytes, bytes]] = {}
    i = 0
    now = datetime.now(UTC)
    while len(out) < PARTITIONS:
        i += 1
        ev = Event(
            event_id=f"00000000-0000-4000-8000-{i:012d}",
            type=EventType.JOURNEY_STARTED,
            schema_version=1,
            occurred_at=now,
            agency="mvd",
            service="passport-rf",
            municipality="75701000",
            channel=Channel.PORTAL,
            journey=f"restore-marker-{i}",
        )
        key = event_key(ev)
        out.setdefault(_murmur_partition(key, PARTITIONS), (key, encode_event(ev)))
    return out


def main() -> None:
    """Child entry: ``python -m bench.statebench memory N``."""
    p = argparse.ArgumentParser(description="state benchmark child")
    p.add_argument("what", choices=["memory"])
    p.add_argument("n", type=int)
    a = p.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(measure_memory(a.n)))


if __name__ == "__main__":
    main()
