"""The history benchmark: what days of history cost the API and the processor.

N days of the demo's own traffic (``servicepulse up --demo``: 40 events/s, about 83,000
rollup keys a day over 12 input partitions, issue 15) are generated straight in the
topic layout of the restatement horizon (docs/AGGREGATES.md, "Bounded history"):

- days older than the horizon (``P35D``) are closed: one ClosedDay record per (day,
  partition, agency) on ``<prefix>.days``; of the newest closed day the aggregates
  topic still holds the ``r|`` values and their tombstones (what the processor leaves
  until compaction), of older ones nothing;
- the live window (horizon + 1 days) is one ``r|`` value per key, plus the watermarks.

Each component runs in a child process per size, so its RSS is its own (no Kafka reads:
those would add the broker's time to every figure):

- ``api``: the read model applies the records as a catch-up without a snapshot would.
  To run in minutes on a shared machine, only the ClosedDay records of the newest
  ``SAMPLE_CLOSED`` closed days, the newest closed day's values and tombstones and the
  ``r|`` records of the newest ``SAMPLE_LIVE`` live days are applied one by one (and
  timed); every other day gets a copy of the state of a sampled day of its kind (the
  closed day's summary bytes and closed-set entries; the live day's compressed values,
  re-keyed to its date, and its summary). The state is the size a full catch-up leaves;
  the catch-up time is the measured cost per day times the days. It then builds the
  exposition, is scraped after each of 20 small live updates, gives a period report over
  the last 30 and the last 365 days, and saves its snapshot;
- ``restart``: a fresh process loads that snapshot, applies the records newer than it
  (one live transaction) and is caught up: process start to caught up, and its RSS;
- ``processor``: every record a restore reads from ``<prefix>.aggregates.v2`` (the live
  window) goes into the partition engines, as one instance owning every partition does
  on assignment: the changelog's ``m`` records first, then the aggregates through
  :func:`processors.recovery.load` with one :class:`processors.rollups.Stage` (its
  peak and packs are reported). This is the processor code of this repository.

The child prints one JSON object; :func:`bench_history` turns it into figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import BenchContext, Figure, Goal, GoalOp

#: Rollup keys a day at the demo's own rate (issue 15's measure of ``up --demo``).
KEYS_PER_DAY = 83_000
QUICK_KEYS_PER_DAY = 8_300
#: The default restatement horizon (``P35D``): the live window is one day more.
HORIZON_DAYS = 35
PARTITIONS = 12
#: Closed days whose ClosedDay records are applied one by one (and timed); the others
#: get a copy of the newest one's summary (a year of records would take the shared
#: 2-core machine an hour to apply, and adds no state of another kind).
SAMPLE_CLOSED = 2
#: Live days whose r| records are applied one by one (and timed): the newest ones; the
#: older live days get re-keyed copies of the oldest sampled day's compressed values.
SAMPLE_LIVE = 2
#: Live rewrites newer than the snapshot, read by a restart (one busy transaction).
TAIL_RECORDS = 5_000
SCRAPES = 20
SIZES = (30, 365)
QUICK_SIZES = (3, 40)
GOAL_SCRAPE_MS = 50.0
GOAL_SERIES = 30_000
GOAL_RSS_MIB = 512.0
GOAL_RESTART_S = 30.0
GOAL_REPORT_S = 5.0
FIRST = date(2026, 1, 1)


class Layout:
    """The cells of a day by partition and the records of each kind, generated."""

    def __init__(self, days: int, keys_per_day: int, horizon: int) -> None:
        from contract.catalog import load_catalog

        cat = load_catalog()
        self.days = days
        self.live = min(days, horizon + 1)
        self.closed = days - self.live
        situations = ["", *sorted(cat.life_situations)]
        base = [
            (svc.service.agency, code, m, ch.value, tuple(sorted(svc.step_codes)))
            for code, svc in sorted(cat.services.items())
            for ch in svc.service.channels
            for m in sorted(cat.municipalities)
        ]
        per_part = keys_per_day // PARTITIONS
        candidates: list[tuple[str, str, str, str, str, tuple[str, ...]]] = []
        k = 0
        while len(candidates) < per_part + PARTITIONS * 97:
            candidates.extend(
                (a, s, m, c, situations[k % len(situations)], st) for a, s, m, c, st in base
            )
            k += 1
        #: cells of each partition: the same each day, rotated between partitions
        self.cells = {
            p: [candidates[(p * 97 + i) % len(candidates)] for i in range(per_part)]
            for p in range(PARTITIONS)
        }
        self.keys_per_day = per_part * PARTITIONS

    def day(self, i: int) -> str:
        return (FIRST + timedelta(days=i)).isoformat()

    def rollups(self, i: int, p: int) -> Iterator[tuple[tuple[str, ...], Any]]:
        """(cell, Rollup) of day ``i`` and partition ``p``: a day at the demo's rate."""
        from contract.aggregates import Hist, Rollup
        from contract.metrics import BUCKETS

        def hist(name: str, n: int, at: int) -> Hist:
            counts = [0] * (len(BUCKETS[name]) + 1)
            counts[at % len(counts)] = n - n // 3
            counts[(at + 1) % len(counts)] = n // 3
            return Hist(counts, n * 1500 + at)

        for j, (a, s, m, c, ls, steps) in enumerate(self.cells[p]):
            n = 20 + (i * 7 + j * 13 + p) % 31
            r = Rollup(
                events=n * 3,
                started=n,
                started_digital=n if c in ("portal", "mobile") else 0,
                submitted=n - n // 4,
                abandoned=n // 5,
                resolved=n - n // 3,
                resolved_with_errors=n // 9,
                steps={st: n - q for q, st in enumerate(steps)},
                errors={"validation": n // 7} if n % 3 else {},
                decisions={
                    "approved:on_time": n // 2,
                    "rejected:on_time": n // 6,
                    "approved:late": n % 4,
                },
                feedback={str(1 + q): (n + q) % 5 for q in range(5)},
                form_seconds=hist("form_seconds", n, j),
                decision_seconds=hist("decision_seconds", n // 2, j + i),
                skew_seconds=hist("skew_seconds", n * 3, 0),
                sender_skew_seconds=hist("sender_skew_seconds", n * 3, 1),
            )
            if c in ("mfc", "office"):
                r.visits = {"true": n // 2, "false": n // 5}
                r.wait_seconds = hist("wait_seconds", n // 2, j)
            yield (a, s, m, c, ls), r

    def rollup_records(self, i: int) -> Iterator[tuple[bytes, bytes]]:
        """The ``r|`` records of day ``i`` (one value per key)."""
        from contract import aggregates as agg

        day = self.day(i)
        for p in range(PARTITIONS):
            for (a, s, m, c, ls), r in self.rollups(i, p):
                yield agg.RollupKey(p, day, agg.Dims(a, s, m, c, ls)).encode(), agg.encode(r)

    def closed_records(self, i: int) -> Iterator[tuple[bytes, bytes]]:
        """The ClosedDay records of day ``i``: one per partition and agency."""
        from contract import aggregates as agg
        from contract.aggregates import ClosedCell, ClosedDay

        day = self.day(i)
        for p in range(PARTITIONS):
            by_agency: dict[str, list[ClosedCell]] = {}
            for (a, s, m, c, ls), r in self.rollups(i, p):
                by_agency.setdefault(a, []).append(ClosedCell(s, m, c, ls, r))
            for a, cells in sorted(by_agency.items()):
                cd = ClosedDay(day, p, a, cells, closed_at=0.0)
                yield agg.closed_day_key(day, p, a), agg.encode(cd)

    def watermarks(self) -> Iterator[tuple[bytes, bytes]]:
        from contract import aggregates as agg

        end = datetime.combine(FIRST + timedelta(days=self.days - 1), datetime.min.time(), UTC)
        wm = end.timestamp() + 12 * 3600
        for p in range(PARTITIONS):
            yield agg.watermark_key(p), agg.encode(agg.Watermark(wm, wm + 300, wm + 300))


def _rss_mib() -> float:
    """Resident set size now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return _peak_mib()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(snapshot: Path | None) -> Any:
    from api.readmodel import ReadModel
    from contract.catalog import load_catalog
    from contract.settings import CommonSettings
    from contract.topics import Topics

    return ReadModel(CommonSettings(), Topics("bench"), load_catalog(), snapshot=snapshot)


def _child_api(days: int, keys_per_day: int, horizon: int, snapshot: Path) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from api import scrape
    from api.exposition import build_metrics
    from contract import aggregates as agg
    from contract.catalog import load_catalog

    lay = Layout(days, keys_per_day, horizon)
    model = _model(snapshot)
    topics = model._topics  # the bench drives the model directly
    n = 0
    # the closed-days topic: every closed day's records, applied one by one for the
    # newest SAMPLE_CLOSED days; the older ones get the same summary (see the docstring)
    sampled = list(range(max(0, lay.closed - SAMPLE_CLOSED), lay.closed))
    t0 = time.process_time()
    for i in sampled:
        with model.lock:
            for k, v in lay.closed_records(i):
                model.apply_closed_day(k, v)
                n += 1
            model.freeze(0.0)
    closed_cpu = time.process_time() - t0
    if sampled:
        _replicate_closed(model, lay, sampled[-1], range(0, sampled[0]))
    # the aggregates topic: the newest closed day's values and tombstones, the live window
    t0 = time.process_time()
    with model.lock:
        if lay.closed:
            newest = list(lay.rollup_records(lay.closed - 1))
            for k, v in newest:
                model.apply_aggregate(k, v)
            for k, _v in newest:
                model.apply_aggregate(k, None)
            n += 2 * len(newest)
            del newest
    newest_closed_cpu = time.process_time() - t0
    live_sampled = list(range(max(lay.closed, days - SAMPLE_LIVE), days))
    t0 = time.process_time()
    with model.lock:
        for i in live_sampled:
            for k, v in lay.rollup_records(i):
                model.apply_aggregate(k, v)
                n += 1
            model.freeze(0.0)
        for k, v in lay.watermarks():
            model.apply_aggregate(k, v)
    live_cpu = time.process_time() - t0
    per_live = live_cpu / len(live_sampled)
    _replicate_live(model, lay, live_sampled[0], range(lay.closed, live_sampled[0]))
    t0 = time.process_time()
    with model.lock:
        model.exposition  # noqa: B018 - built once when the catch-up ends
    build_s = time.process_time() - t0
    model.status.ready = True  # caught up: /metrics serves the business families
    rss = _rss_mib()
    peak = _peak_mib()
    memory = model.memory()

    cat = load_catalog()
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    scrape.install(metrics, model, cat)
    live = list(lay.rollup_records(days - 1))[:50]
    cpu: list[float] = []
    gz = 0
    for s in range(SCRAPES):
        with model.lock:
            for k, v in live:
                r = agg.decode_rollup(v)
                r.started += s + 1
                model.apply_aggregate(k, agg.encode(r))
        t = time.process_time()
        body, _ = scrape.body(model, registry, metrics, "gzip")
        cpu.append(time.process_time() - t)
        gz = len(body)
    size = len(scrape.body(model, registry, metrics, "")[0])
    series = sum(model.exposition.series().values())
    report_s = _reports(model, days)
    # the snapshot a restart reads: offsets at the end of what was applied
    with model.lock:
        for topic in (topics.aggregates, topics.days, topics.deadletter):
            for p in range(3):
                model._offsets[(topic, p)] = n  # stand for the topics' ends
    t = time.perf_counter()
    model.save_snapshot()
    save_s = time.perf_counter() - t
    cpu.sort()
    per_closed = closed_cpu / len(sampled) if sampled else 0.0
    return {
        "records": n,
        "live_days": lay.live,
        "closed_days": lay.closed,
        "keys_per_day": lay.keys_per_day,
        "live_day_apply_cpu_s": per_live,
        "closed_day_apply_cpu_s": per_closed,
        "newest_closed_values_and_tombstones_cpu_s": newest_closed_cpu,
        "catch_up_cpu_s": per_live * lay.live
        + per_closed * lay.closed
        + newest_closed_cpu
        + build_s,
        "exposition_build_cpu_s": build_s,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "memory": memory,
        "scrape_cpu_ms_median": cpu[len(cpu) // 2] * 1000,
        "scrape_cpu_ms_max": cpu[-1] * 1000,
        "scrape_bytes": size,
        "scrape_gzip_bytes": gz,
        "series": series,
        **report_s,
        "snapshot_bytes": snapshot.stat().st_size,
        "snapshot_save_s": save_s,
    }


def _reports(model: Any, days: int) -> dict[str, float]:
    """Wall and CPU time of a region's period report over the last 30 and 365 days, and
    over 365 days ending mid-month."""
    from api.reports import build_report
    from api.scorecard import Scorer
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology

    scorer = Scorer(model, load_catalog(), load_methodology())
    now = datetime.now(UTC)
    end = FIRST + timedelta(days=days - 1)
    out = {}
    # the year also ending mid-month: two partial months summed day by day
    for label, span, last in (
        ("month", 30, end),
        ("year", 365, end),
        ("year_mid", 365, end - timedelta(days=15)),
    ):
        t, c = time.perf_counter(), time.process_time()
        build_report(scorer, "region", None, last - timedelta(days=span - 1), last, now)
        out[f"report_{label}_s"] = time.perf_counter() - t
        out[f"report_{label}_cpu_s"] = time.process_time() - c
    return out


def _replicate_closed(model: Any, lay: Layout, sample: int, days: range) -> None:
    """Give each of ``days`` the closed state of day ``sample``: its summary bytes and its
    (day, partition, agency) entries of the closed set (no counts added to the totals,
    whose size does not depend on the days)."""
    with model.lock:
        model.freeze(0.0)
        summary = model._cold_days[lay.day(sample)]
        closed = [k for k in model._closed if k[0] == lay.day(sample)]
        for i in days:
            day = lay.day(i)
            model._cold_days[day] = bytes(summary)
            _add_month(model, day, summary)
            for _d, p, a in closed:
                digest = hashlib.blake2b(f"{day}{p}{a}".encode(), digest_size=8).digest()
                model._closed[(day, p, a)] = digest


def _add_month(model: Any, day: str, summary: bytes) -> None:
    """Add a copied day's summary to its month's, as applying its records would have."""
    from api.readmodel import _accumulate, _thaw

    month = model._months.setdefault(day[:7], {})
    for g, r in _thaw(summary).items():
        _accumulate(month, g, r, owned=True)


def _replicate_live(model: Any, lay: Layout, sample: int, days: range) -> None:
    """Give each of ``days`` the live state of day ``sample``: its compressed values
    re-keyed to the day (the date is in the keys only) and its summary."""
    import zlib

    src = lay.day(sample).encode()
    with model.lock:
        model.freeze(0.0)
        groups = [(k, c) for k, c in model._raw_cold.items() if k[0] == lay.day(sample)]
        summary = model._cold_days[lay.day(sample)]
        for i in days:
            day = lay.day(i)
            for (_d, p, a), c in groups:
                data = zlib.decompress(c).replace(src, day.encode())
                model._raw_cold[(day, p, a)] = zlib.compress(data, 1)
            model._cold_days[day] = bytes(summary)
            _add_month(model, day, summary)


def _child_restart(
    days: int, keys_per_day: int, horizon: int, snapshot: Path, spawned: float
) -> dict[str, Any]:
    """Process start to caught up with a snapshot: load it, read what is newer."""
    from contract import aggregates as agg
    from kafkaport import TopicPartition

    model = _model(snapshot)
    topics = model._topics
    ends = {
        TopicPartition(t, p): 1 << 62
        for t in (topics.aggregates, topics.days, topics.deadletter)
        for p in range(3)
    }
    t0 = time.perf_counter()
    model._start_from_saved(ends)  # what _open_consumer does first
    load_s = time.perf_counter() - t0
    gen = time.perf_counter()  # making the newer records is the bench's, not the restart's
    lay = Layout(days, keys_per_day, horizon)
    tail = []
    for k, v in lay.rollup_records(days - 1):
        r = agg.decode_rollup(v)
        r.started += 1
        tail.append((k, agg.encode(r)))
        if len(tail) == TAIL_RECORDS:
            break
    gen_s = time.perf_counter() - gen
    with model.lock:
        for k, v in tail:
            model.apply_aggregate(k, v)
        model.exposition  # noqa: B018 - built when the catch-up ends
    caught_up = time.time() - spawned - gen_s
    rss = _rss_mib()
    model.status.ready = True
    return {
        **_reports(model, days),
        "restored": model.status.restored_from_snapshot,
        "snapshot_load_s": load_s,
        "tail_records": len(tail),
        "start_to_caught_up_s": caught_up,
        "tail_generation_s": gen_s,
        "rss_mib": rss,
        "peak_rss_mib": _peak_mib(),
    }


def _child_processor(days: int, keys_per_day: int, horizon: int, spawned: float) -> dict[str, Any]:
    """What a processor owning every partition restores after ``days`` of history: each
    partition's changelog ``m`` record first, as :func:`processors.recovery.restore`
    reads it (its watermark and final day tell the closed days), then the live window's
    ``r|`` values (days before the final day were written to ``<prefix>.days`` and
    tombstoned), through :func:`processors.recovery.load` with one stage."""
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from processors import recovery
    from processors import state as st
    from processors.context import Context
    from processors.engine import PartitionEngine
    from processors.rollups import Stage

    lay = Layout(days, keys_per_day, horizon)
    ctx = Context(
        load_catalog(), load_methodology().standards, restatement_horizon=timedelta(days=horizon)
    )
    end = datetime.combine(FIRST + timedelta(days=days - 1), datetime.min.time(), UTC)
    wm_ms = round((end.timestamp() + 12 * 3600) * 1000)
    final_day = ctx.final_before(wm_ms)
    meta = st.encode(st.Meta(wm_ms + 300_000, wm_ms, False, wm_ms + 300_000, final_day))
    engines = {p: PartitionEngine(p, ctx) for p in range(PARTITIONS)}
    t0, w0 = time.process_time(), time.perf_counter()
    gen_cpu = gen_wall = 0.0  # making the records is the bench's, not the restore's
    stage = Stage()
    # as recovery.restore does: the changelog (its m records) first, then the aggregates
    n = recovery.load(engines, ((p, st.META_KEY, meta) for p in range(PARTITIONS)), (), stage)
    for i in range(days):
        if lay.day(i) < final_day:
            continue  # final: on <prefix>.days, its r| keys tombstoned and compacted away
        g, gw = time.process_time(), time.perf_counter()
        records = list(lay.rollup_records(i))
        gen_cpu += time.process_time() - g
        gen_wall += time.perf_counter() - gw
        n += recovery.load(engines, (), records, stage)
        del records
    recovery.finish(engines, stage)
    closed = sum(e.days_closed for e in engines.values())
    return {
        "stage_limit_bytes": stage.limit,
        "stage_peak_bytes": stage.peak,
        "stage_packs": stage.packs,
        "records": n,
        "final_day": final_day,
        "days_held": len({d for e in engines.values() for d in e.rollups.cells}),
        "days_closed_at_restore": closed,
        "cells": sum(len(e.rollups) for e in engines.values()),
        "restore_cpu_s": time.process_time() - t0 - gen_cpu,
        "restore_wall_s": time.perf_counter() - w0 - gen_wall,
        "generation_cpu_s": gen_cpu,
        "start_to_ready_s": time.time() - spawned - gen_wall,
        "packed_groups": sum(len(e.rollups.packed) for e in engines.values()),
        "rss_mib": _rss_mib(),
        "peak_rss_mib": _peak_mib(),
    }


def _child_fetch(into: Path, spawned: float) -> dict[str, Any]:
    """A reader without a snapshot fetching the checkpoint (the broker and the topic
    prefix come from ``SERVICEPULSE_KAFKA_BOOTSTRAP`` and ``SERVICEPULSE_TOPIC_PREFIX``)."""
    from api.checkpoint import ReadModelCheckpoint
    from contract.settings import CommonSettings
    from contract.topics import Topics

    settings = CommonSettings()
    cpu = time.process_time()
    t0 = time.perf_counter()
    head = ReadModelCheckpoint(settings, Topics(settings.topic_prefix)).fetch(into)
    wall = time.perf_counter() - t0
    if head is None:
        raise SystemExit("no checkpoint on the topic")
    return {
        "fetch_s": wall,
        "fetch_cpu_s": time.process_time() - cpu,
        "since_spawn_s": time.time() - spawned,
        "bytes": head.size,
        "pieces": head.pieces,
        "sha256": head.sha256.hex(),
        "peak_rss_mib": _peak_mib(),
    }


def _run_child(
    kind: str,
    days: int,
    keys_per_day: int = KEYS_PER_DAY,
    horizon: int = HORIZON_DAYS,
    snapshot: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    args = [
        kind,
        str(days),
        str(keys_per_day),
        str(horizon),
        str(snapshot or ""),
        repr(time.time()),
    ]
    proc = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "bench.history", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
        env={**os.environ, **env} if env else None,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"history child {kind} {days} failed: {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def bench_history(ctx: BenchContext) -> list[Figure]:
    """Scrape, memory, restart and report figures at two sizes of history."""
    figures: list[Figure] = []
    sizes = QUICK_SIZES if ctx.quick else SIZES
    keys = QUICK_KEYS_PER_DAY if ctx.quick else KEYS_PER_DAY
    for days in sizes:
        ctx.say(f"  history: {days} days x {keys:,} keys, horizon {HORIZON_DAYS} days")
        with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
            snap = Path(tmp) / "readmodel.snapshot"
            a = _run_child("api", days, keys, snapshot=snap)
            r = _run_child("restart", days, keys, snapshot=snap)
            c = _checkpoint_restart(ctx, days, keys, snap)
        p = _run_child("processor", days, keys)
        note = (
            f"{days} days at {a['keys_per_day']:,} keys/day: {a['live_days']} live, "
            f"{a['closed_days']} closed; in-process, no Kafka reads"
        )
        tag = f"{days} d"
        # (name, value, unit, goal op, goal target, details)
        rows: list[tuple[str, float, str, GoalOp, float | None, dict[str, Any]]] = [
            (
                f"API scrape CPU, median of {SCRAPES}",
                round(a["scrape_cpu_ms_median"], 2),
                "ms",
                "<=",
                GOAL_SCRAPE_MS,
                a,
            ),
            ("API scrape bytes (gzip)", a["scrape_gzip_bytes"], "bytes", "<=", None, {}),
            ("API business series", a["series"], "series", "<=", GOAL_SERIES, {}),
            ("API RSS after catch-up", round(a["rss_mib"], 1), "MiB", "<=", GOAL_RSS_MIB, {}),
            (
                "API restart with snapshot, process start to caught up",
                round(r["start_to_caught_up_s"], 2),
                "s",
                "<=",
                GOAL_RESTART_S,
                r,
            ),
            ("API RSS after restart", round(r["rss_mib"], 1), "MiB", "<=", GOAL_RSS_MIB, {}),
            (
                "API restart without snapshot, from the checkpoint on Kafka: fetch, then "
                "process start to caught up",
                round(c["fetch"]["fetch_s"] + c["restart"]["start_to_caught_up_s"], 2),
                "s",
                "<=",
                GOAL_RESTART_S,
                c,
            ),
            (
                "API checkpoint fetch, peak RSS",
                round(c["fetch"]["peak_rss_mib"], 1),
                "MiB",
                "<=",
                GOAL_RSS_MIB,
                {},
            ),
            (
                "API checkpoint publish (wall, in a thread of the API)",
                round(c["publish_s"], 2),
                "s",
                "<=",
                None,
                {},
            ),
            (
                # only the first API of an installation: every later start has the
                # checkpoint (the restart goal is judged on the row above)
                "API first start, neither snapshot nor checkpoint: catch-up CPU (apply only)",
                round(a["catch_up_cpu_s"], 1),
                "s",
                "<=",
                None,
                {},
            ),
            (
                "processor RSS after restore",
                round(p["rss_mib"], 1),
                "MiB",
                "<=",
                GOAL_RSS_MIB,
                p,
            ),
            (
                "processor restore, process start to ready (no Kafka reads, records made before)",
                round(p["start_to_ready_s"], 2),
                "s",
                "<=",
                GOAL_RESTART_S,
                {},
            ),
            ("period report, month", round(a["report_month_s"], 3), "s", "<", GOAL_REPORT_S, {}),
            ("period report, year", round(a["report_year_s"], 3), "s", "<", GOAL_REPORT_S, {}),
        ]
        for name, value, unit, op, target, details in rows:
            goal = Goal("value", op, target) if target is not None else None
            figures.append(
                Figure(
                    "history", f"{name}, {tag}", value, unit, goal=goal, note=note, details=details
                )
            )
    return figures


def _checkpoint_restart(ctx: BenchContext, days: int, keys: int, snap: Path) -> dict[str, Any]:
    """Publish the snapshot as the checkpoint on the benchmark broker; a fresh process
    fetches it, another restarts from the fetched file (as ``restart`` does)."""
    from api.checkpoint import ReadModelCheckpoint

    topics, settings = ctx.topics(f"history{days}")
    publisher = ReadModelCheckpoint(settings, topics)
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    publisher.publish(snap)
    publish_s = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    publisher.close()
    fetched = snap.with_name("fetched.snapshot")
    env = {
        "SERVICEPULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SERVICEPULSE_TOPIC_PREFIX": topics.prefix,
    }
    f = _run_child("fetch", days, keys, snapshot=fetched, env=env)
    same = f["sha256"] == hashlib.sha256(snap.read_bytes()).hexdigest()
    r = _run_child("restart", days, keys, snapshot=fetched)
    fetched.unlink()
    return {
        "publish_s": publish_s,
        "publish_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "fetch": f,
        "restart": r,
        "same_bytes": same,
    }


def main() -> None:
    """Child entry: ``python -m bench.history KIND DAYS KEYS HORIZON SNAP T0``."""
    kind, days, keys, horizon = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    snap = Path(sys.argv[5]) if sys.argv[5] else None
    spawned = float(sys.argv[6])
    if kind in ("api", "restart", "fetch") and snap is None:
        raise SystemExit(f"history child {kind} needs a snapshot path")
    if kind == "api" and snap is not None:
        result = _child_api(days, keys, horizon, snap)
    elif kind == "restart" and snap is not None:
        result = _child_restart(days, keys, horizon, snap, spawned)
    elif kind == "fetch" and snap is not None:
        result = _child_fetch(snap, spawned)
    else:
        result = _child_processor(days, keys, horizon, spawned)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
