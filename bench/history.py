"""The history benchmark: what days of history cost the API's scrape, memory and reports.

Aggregate records of N days of simulated regional traffic are generated straight as the
processor writes them (one record per partition, day and cell, issue 15's 2,640 keys a
day for about 9,400 events) and applied in a child process per size, so its peak RSS is
its own:

- ``api``: the read model applies every record (the catch-up of a restart without a
  snapshot, less the Kafka reads) and builds the exposition once, then a scrape after
  each of 20 small live updates is timed (the whole ``/metrics`` body as the route makes
  it: changed series rendered, joined, the API's own metrics, gzip), with its bytes and
  series; then a period report over the last 30 days and
  over the last 365.
- ``processor``: every record is restored into the partition engines, as one instance
  owning every partition does on assignment (the restore, less the Kafka reads).

The child prints one JSON object; :func:`bench_history` turns it into figures.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.harness import BenchContext, Figure, Goal, GoalOp

#: Keys a day of the simulator's regional traffic makes (issue 15's measurement).
KEYS_PER_DAY = 2_640
PARTITIONS = 12
SCRAPES = 20
SIZES = (30, 365)
QUICK_SIZES = (3, 30)
GOAL_SCRAPE_MS = 50.0
GOAL_SERIES = 30_000
GOAL_RSS_MIB = 512.0
GOAL_RESTART_S = 30.0
GOAL_REPORT_S = 5.0


def _records(days: int, first: date) -> Iterator[tuple[bytes, bytes]]:
    """``KEYS_PER_DAY`` rollup records a day, cells rotating over the catalog."""
    from contract import aggregates as agg
    from contract.aggregates import Hist, Rollup
    from contract.catalog import load_catalog
    from contract.metrics import BUCKETS

    cat = load_catalog()
    services = sorted(cat.services.items())
    munis = sorted(cat.municipalities)
    situations = ["", *sorted(cat.life_situations)]
    channels = ("portal", "mobile", "mfc")
    per_part = KEYS_PER_DAY // PARTITIONS
    i = 0
    for d in range(days):
        day = (first + timedelta(days=d)).isoformat()
        for p in range(PARTITIONS):
            for _ in range(per_part):
                code, svc = services[i % len(services)]
                m = munis[(i // len(services)) % len(munis)]
                c = channels[(i // 7) % len(channels)]
                ls = situations[(i // 11) % len(situations)]
                i += 1
                steps = sorted(svc.step_codes)
                r = Rollup(
                    events=9,
                    started=3,
                    started_digital=2 if c != "mfc" else 0,
                    submitted=2,
                    resolved=3,
                    abandoned=1,
                    steps=dict.fromkeys(steps, 2),
                    decisions={"approved:on_time": 1, "rejected:late": 1},
                    feedback={"5": 1, "4": 1},
                    form_seconds=Hist([0, 1, 1] + [0] * (len(BUCKETS["form_seconds"]) - 2), 1500),
                    skew_seconds=Hist([9] + [0] * len(BUCKETS["skew_seconds"]), 900),
                )
                key = agg.RollupKey(p, day, agg.Dims(svc.service.agency, code, m, c, ls)).encode()
                yield key, agg.encode(r)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_api(days: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from api import scrape
    from api.exposition import build_metrics
    from api.readmodel import ReadModel
    from api.reports import build_report
    from api.scorecard import Scorer
    from contract import aggregates as agg
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from contract.settings import CommonSettings
    from contract.topics import Topics

    cat = load_catalog()
    first = date(2026, 1, 1)
    model = ReadModel(CommonSettings(), Topics("bench"), cat)
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    scrape.install(metrics, model, cat)
    t0 = time.process_time()
    n = 0
    with model.lock:
        for k, v in _records(days, first):
            model.apply_aggregate(k, v)
            n += 1
    apply_s = time.process_time() - t0
    t0 = time.process_time()
    with model.lock:
        model.exposition  # noqa: B018 - built once when the catch-up ends
    build_s = time.process_time() - t0
    model.status.ready = True  # caught up: /metrics serves the business families
    last_day = (first + timedelta(days=days - 1)).isoformat()
    live = list(_records(1, first + timedelta(days=days - 1)))[:50]
    cpu: list[float] = []
    size = 0
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
    scorer = Scorer(model, cat, load_methodology())
    now = datetime.now(UTC)
    end = date.fromisoformat(last_day)
    report_s = {}
    for label, span in (("month", 30), ("year", 365)):
        t = time.perf_counter()
        build_report(scorer, "region", None, end - timedelta(days=span - 1), end, now)
        report_s[label] = time.perf_counter() - t
    cpu.sort()
    return {
        "records": n,
        "apply_cpu_s": apply_s,
        "exposition_build_cpu_s": build_s,
        "rss_mib": _rss_mib(),
        "scrape_cpu_ms_median": cpu[len(cpu) // 2] * 1000,
        "scrape_cpu_ms_max": cpu[-1] * 1000,
        "scrape_bytes": size,
        "scrape_gzip_bytes": gz,
        "series": series,
        "report_month_s": report_s["month"],
        "report_year_s": report_s["year"],
    }


def _child_processor(days: int) -> dict[str, Any]:
    from contract import aggregates as agg
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from processors.context import Context
    from processors.engine import PartitionEngine

    ctx = Context(load_catalog(), load_methodology().standards)
    engines = {p: PartitionEngine(p, ctx) for p in range(PARTITIONS)}
    t0 = time.process_time()
    n = 0
    for k, v in _records(days, date(2026, 1, 1)):
        key = agg.decode_key(k)
        engines[key.partition].restore_aggregate(key, v)
        n += 1
    for e in engines.values():
        e.finish_restore()
    return {"records": n, "restore_cpu_s": time.process_time() - t0, "rss_mib": _rss_mib()}


def _run_child(kind: str, days: int) -> dict[str, Any]:
    proc = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "bench.history", kind, str(days)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"history child {kind} {days} failed: {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def bench_history(ctx: BenchContext) -> list[Figure]:
    """Scrape, memory, restart and report figures at two sizes of history."""
    figures: list[Figure] = []
    sizes = QUICK_SIZES if ctx.quick else SIZES
    for days in sizes:
        ctx.say(f"  history: {days} days x {KEYS_PER_DAY} keys")
        a = _run_child("api", days)
        p = _run_child("processor", days)
        note = f"{days} days, {a['records']:,} records ({KEYS_PER_DAY}/day), in-process"
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
                "API catch-up CPU (apply only)",
                round(a["apply_cpu_s"], 2),
                "s",
                "<=",
                GOAL_RESTART_S,
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
                "processor restore CPU (apply only)",
                round(p["restore_cpu_s"], 2),
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


def main() -> None:
    """Child entry: ``python -m bench.history api|processor DAYS``."""
    kind, days = sys.argv[1], int(sys.argv[2])
    result = _child_api(days) if kind == "api" else _child_processor(days)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
