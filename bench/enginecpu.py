"""CPU per event of the processor's pure engine (no Kafka): the figure of issue 13.

The data set's records are split over 12 partitions as the producer keys them, each
given a record timestamp of its ``occurred_at`` plus one second (LogAppendTime a moment
after the event) and the producer library's ``sent_at`` header half a second before
that, as the consumer port's records (:class:`kafkaport.types.Record`), and fed to fresh
engines (:class:`processors.engine.PartitionEngine`) in batches of 2,000, each batch
followed by a flush, as the processor does per transaction.
The figure is ``time.process_time()`` around that loop divided by the events: CPU time,
so another process on the shared machine slows it less than it would wall time. Every
output record (dead letters, changelog, aggregates, closed days) goes into a SHA-256
digest outside the timed loop, so two versions of the engine can be checked to produce
the same bytes (each flush's records sorted by key: their order is that of a set).

Run ``python -m bench.enginecpu`` (``--events``, ``--passes``); with
``PYTHONPATH=<another checkout>`` the same file measures that checkout's engine, which is
how before/after are compared within one run (alternating, on the same machine load).
The cyclic collector runs at the processor's thresholds
(:data:`processors.runner.GC_THRESHOLDS`); ``--default-gc`` keeps Python's.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import time
from typing import Any

from contract.events import SENT_AT_HEADER, decode_event

PARTITIONS = 12
BATCH = 2_000


def records(n_events: int, cache: str | None = None) -> dict[int, list[Any]]:
    """The data set's records per partition, with deterministic timestamps (kept in
    the pickle file ``cache`` if given, so repeated runs skip generating them)."""
    import pickle
    from pathlib import Path

    from kafkaport.types import Record

    def rec(p: int, i: int, k: bytes, v: bytes, ts: int) -> Record:
        return Record("bench", p, i, ts, k, v, [(SENT_AT_HEADER, str(ts - 500).encode())])

    if cache and Path(cache).exists():
        rows = pickle.loads(Path(cache).read_bytes())  # noqa: S301 - our own file
        return {p: [rec(p, i, k, v, ts) for k, v, i, ts in recs] for p, recs in rows.items()}
    from bench import workload
    from bench.statebench import _murmur_partition

    ds = workload.dataset(n_events)
    parts: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}
    for i, (k, v) in enumerate(ds.records):
        ev = decode_event(v)
        if isinstance(ev, list):
            raise ValueError(f"the data set has an invalid event: {ev[0].message}")
        ts = round(ev.occurred_at.timestamp() * 1000) + 1000
        p = _murmur_partition(k, PARTITIONS)
        parts[p].append(rec(p, i, k, v, ts))
    if cache:
        rows = {
            p: [(r.key, r.value, r.offset, r.timestamp) for r in recs] for p, recs in parts.items()
        }
        Path(cache).write_bytes(pickle.dumps(rows))
    return parts


def one_pass(parts: dict[int, list[Any]]) -> tuple[float, str]:
    """CPU seconds of one pass with fresh engines, and the digest of what they wrote.

    The input records are frozen out of the garbage collector's sight, as the processor
    freezes its restored state (``gc.freeze()`` in ``processors/session.py``), and each
    batch's output is digested and dropped between the timed sections, as the processor
    produces and drops it: otherwise every full collection would walk the benchmark's
    own hundreds of thousands of records, which no processor holds.
    """
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from processors.context import Context
    from processors.engine import PartitionEngine

    ctx = Context(load_catalog(), load_methodology().standards)
    engines = {p: PartitionEngine(p, ctx) for p in parts}
    h = hashlib.sha256()
    gc.collect()
    gc.freeze()
    seconds = 0.0
    clock = time.process_time
    try:
        for p, recs in parts.items():
            eng = engines[p]
            for i in range(0, len(recs), BATCH):
                t0 = clock()
                dead = eng.process(recs[i : i + BATCH])
                out = eng.flush()
                seconds += clock() - t0
                _digest(h, dead, out)
    finally:
        gc.unfreeze()
    return seconds, h.hexdigest()


def _digest(h: Any, dead: list[Any], out: Any) -> None:
    for d in dead:
        h.update(repr((d.key, d.value, d.reason, d.agency)).encode())
    for kind in (out.changelog, out.aggregates, out.days):
        # one record per key and flush, in the order of a set: sorted, the digest does
        # not depend on the hash seed
        for k, v in sorted(kind, key=lambda kv: kv[0]):
            h.update(k)
            h.update(b"\x00" if v is None else b"\x01" + v)
        h.update(b"\x02")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--data", help="pickle file caching the records between runs")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="Python's collector thresholds instead of the processor's",
    )
    args = parser.parse_args()
    if not args.default_gc:
        from processors.runner import tune_collector

        tune_collector()
    parts = records(args.events, args.data)
    n = sum(map(len, parts.values()))
    one_pass(parts)  # warm: catalog caches, imports, allocator pools
    runs = [one_pass(parts) for _ in range(args.passes)]
    us = [s / n * 1e6 for s, _ in runs]
    digests = {d for _, d in runs}
    print(
        json.dumps(
            {
                "events": n,
                "us_per_event": round(statistics.median(us), 2),
                "runs": [round(u, 2) for u in us],
                "digest": digests.pop() if len(digests) == 1 else sorted(digests),
                "gc_thresholds": list(gc.get_threshold()),
                "load": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
