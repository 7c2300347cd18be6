"""``servicepulse bench``: the benchmarks of issue 5, each against a baseline of the same run.

The benchmarks wire several components together (processor, API, producer library,
simulator) and run the real commands, so they sit beside the composition root
(``servicepulse``), outside the runtime packages: the image and a plain install do not
ship them, and no runtime package imports them (import-linter). Each is a function
``(BenchContext) -> list[Figure]`` registered in :data:`BENCHMARKS`; :func:`run` starts
(or reuses) a broker, runs the chosen ones in order, deletes every topic and group it
made, and writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.harness import BenchContext, BenchFn, Figure, broker, loadavg, machine_info
from bench.report import markdown_table

__all__ = ["EXTRAS", "NAMES", "describe", "markdown_table", "missing_extras", "run"]

#: Default sizes: events in the throughput data set, full and ``--quick``.
FULL_EVENTS = 200_000
QUICK_EVENTS = 20_000


def _registry() -> dict[str, tuple[str, BenchFn]]:
    from bench.history import bench_history
    from bench.ingest import bench_ingest
    from bench.join import bench_join
    from bench.latency import bench_latency
    from bench.peer import bench_peer
    from bench.processor import bench_processor
    from bench.profiling import bench_profile
    from bench.statebench import bench_state
    from bench.webpages import bench_web

    return {
        "processor": ("processor events/s vs raw consume, 1 and 2 instances", bench_processor),
        "peer": ("our processor vs a Quix Streams peer on the same topic", bench_peer),
        "join": (
            "a third instance joining two, one of three leaving: records restored, "
            "commit gaps of the others",
            bench_join,
        ),
        "latency": ("produce-to-read-model latency p50/p99 at 2,000 events/s", bench_latency),
        "ingest": (
            "API ingest events/s batched and single vs raw producer; p99; signed vs unsigned",
            bench_ingest,
        ),
        "state": ("bytes per open journey; restore time of 1M open journeys", bench_state),
        "profile": ("pyinstrument profile of the processor hot path", bench_profile),
        "history": (
            "scrape CPU/bytes/series, RSS, catch-up and reports at 30 and 365 days",
            bench_history,
        ),
        "web": ("web view page p95 at a year of history (goal <= 200 ms)", bench_web),
    }


#: Benchmark names in the order they run.
NAMES: tuple[str, ...] = (
    "processor",
    "peer",
    "join",
    "latency",
    "ingest",
    "state",
    "profile",
    "history",
    "web",
)


#: Benchmarks that need a module of the ``bench`` extra (``pip install -e '.[bench]'``).
EXTRAS: dict[str, str] = {"peer": "quixstreams", "profile": "pyinstrument"}


def missing_extras(names: Sequence[str]) -> dict[str, str]:
    """Benchmark name -> the module of the ``bench`` extra it needs and that is missing."""
    import importlib.util

    return {
        name: module
        for name in names
        if (module := EXTRAS.get(name)) and importlib.util.find_spec(module) is None
    }


def describe() -> str:
    """One line per benchmark, for ``--help``."""
    return "\n".join(f"{name}: {desc}" for name, (desc, _) in _registry().items())


def run(
    names: Sequence[str],
    *,
    events: int | None,
    quick: bool,
    bootstrap: str | None,
    output: Path,
    command: str,
    console: Console,
) -> tuple[dict[str, Any], list[Figure], tuple[Path, Path]]:
    """Run the benchmarks ``names`` (in :data:`NAMES` order) and write the results.

    Returns the results dict, the figures and the paths of the JSON and Markdown files.
    """
    from bench import report

    registry = _registry()
    chosen = [n for n in NAMES if n in names]
    started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    t0 = time.monotonic()
    load_before = loadavg()
    machine = machine_info()  # the commit the run starts from
    work_dir = Path(tempfile.mkdtemp(prefix="servicepulse-bench-"))
    try:
        figures: list[Figure] = []
        load: dict[str, dict[str, float]] = {}
        with broker(bootstrap, console) as (boot, broker_desc):
            ctx = BenchContext(
                bootstrap=boot,
                events=events or (QUICK_EVENTS if quick else FULL_EVENTS),
                quick=quick,
                work_dir=work_dir,
                console=console,
            )
            try:
                for name in chosen:
                    console.rule(f"[bold]{name}[/]: {registry[name][0]}")
                    before, t_start = loadavg()[0], time.monotonic()
                    try:
                        figures.extend(registry[name][1](ctx))
                    except Exception as exc:  # one broken benchmark must not lose the others
                        console.print(f"[red]{name} failed:[/] {exc!r}")
                        figures.append(Figure(name, name, None, "", note=f"failed: {exc!r}"))
                    load[name] = {
                        "load1_before": before,
                        "load1_after": loadavg()[0],
                        "seconds": round(time.monotonic() - t_start, 1),
                    }
            finally:
                ctx.cleanup()
        ds = ctx.cache.get("dataset")
        results: dict[str, Any] = {
            "run_id": ctx.run_id,
            "command": command,
            "started_at": started_at.isoformat(),
            "duration_s": time.monotonic() - t0,
            "machine": machine,
            "load_before": load_before,
            "load_after": loadavg(),
            "broker": broker_desc,
            "quick": quick,
            "events": ctx.events,
            "dataset": (
                f"{len(ds.records):,} events from the {ds.source}, "
                f"{ds.bytes / len(ds.records):.0f} bytes each on average, "
                f"{ds.started:,} journeys started"
                if ds
                else "n/a"
            ),
            "benchmarks": chosen,
            "load_per_benchmark": load,
            "extra": {k: v for k, v in ctx.cache.items() if k.startswith("extra:")},
        }
        paths = report.write(output, results, figures)
        for name in ("profile.txt", "profile.html"):
            src = work_dir / name
            if src.exists():
                shutil.copy(src, output / name)
        if (work_dir / "logs").is_dir():  # the children's logs, to tell what happened
            shutil.copytree(work_dir / "logs", output / "logs", dirs_exist_ok=True)
        return results, figures, paths
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
