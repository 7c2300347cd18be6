"""The profile: where the processor spends its time, with pyinstrument.

Two views:

* **engine** - the processor's pure core (:class:`processors.engine.PartitionEngine`,
  decode + validate + apply + flush) over the run's data set in this process, batched
  per partition as the processor batches a transaction: no Kafka at all, so it shows
  the ceiling of the Python work per event;
* **process** - the real ``servicepulse process`` under ``python -m pyinstrument``
  over a freshly filled topic (consume, engine, transactional produce, commits).

The top functions by own ("self") time of both are kept in the results and written to
``profile.txt`` (and the process profile to ``profile.html``) in the output directory.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import offsets, processor, workload
from bench.harness import BenchContext, Figure

TOP = 15


def top_functions(session: Any, limit: int = TOP) -> list[dict[str, Any]]:
    """The functions with the most own time in a pyinstrument session.

    Returns dicts with ``function``, ``where`` (file:line), ``self_s`` and ``self_pct``.
    """
    root = session.root_frame()
    if root is None:
        return []
    total = root.time or 1e-9
    acc: dict[tuple[str, str], float] = {}

    def walk(frame: Any) -> None:
        own = frame.total_self_time
        if own and not frame.is_synthetic:
            key = (frame.function, f"{frame.file_path_short}:{frame.line_no}")
            acc[key] = acc.get(key, 0.0) + own
        for child in frame.children:
            walk(child)

    walk(root)
    ranked = sorted(acc.items(), key=lambda kv: -kv[1])[:limit]
    return [
        {"function": f, "where": w, "self_s": round(t, 4), "self_pct": round(100 * t / total, 1)}
        for (f, w), t in ranked
    ]


def _format(title: str, rows: Iterable[dict[str, Any]]) -> str:
    lines = [title, f"{'self %':>7}  {'self s':>8}  function (where)"]
    lines += [
        f"{r['self_pct']:>6.1f}%  {r['self_s']:>8.3f}  {r['function']} ({r['where']})" for r in rows
    ]
    return "\n".join(lines) + "\n"


def profile_engine(ctx: BenchContext) -> dict[str, Any]:
    """Profile the engine over the run's data set; returns timing and top functions."""
    from pyinstrument import Profiler

    from bench.statebench import _murmur_partition, _Rec
    from contract.catalog import load_catalog
    from contract.methodology import load_methodology
    from processors.context import Context
    from processors.engine import PartitionEngine

    ds = processor.dataset(ctx)
    ectx = Context(load_catalog(), load_methodology().standards)
    engines = {p: PartitionEngine(p, ectx) for p in range(12)}
    ts = int(time.time() * 1000)
    parts: dict[int, list[_Rec]] = {p: [] for p in range(12)}
    for i, (k, v) in enumerate(ds.records):
        p = _murmur_partition(k, 12)
        parts[p].append(_Rec(k, v, p, i, ts))
    batch = 2_000
    profiler = Profiler(interval=0.0005)
    t0 = time.perf_counter()
    profiler.start()
    for p, recs in parts.items():
        eng = engines[p]
        for i in range(0, len(recs), batch):
            eng.process(recs[i : i + batch])
            eng.flush()
    profiler.stop()
    seconds = time.perf_counter() - t0
    session = profiler.last_session
    return {
        "events": len(ds.records),
        "seconds": round(seconds, 3),
        "us_per_event": round(seconds / len(ds.records) * 1e6, 2),
        "top": top_functions(session),
        "text": profiler.output_text(unicode=False, color=False, show_all=False),
    }


def profile_process(ctx: BenchContext) -> dict[str, Any]:
    """Profile a real ``servicepulse process`` over a fresh topic with pyinstrument.

    Stopped with SIGINT once its group has committed everything; pyinstrument writes
    its report on the way out.
    """
    ds = processor.dataset(ctx)
    topics, settings = ctx.topics("prof")
    workload.fill(settings, topics.events, ds.records)
    end = offsets.end_offsets(settings, topics.events)
    group = ctx.group("prof")
    session_file = ctx.work_dir / "process.pyisession"
    html = ctx.work_dir / "profile.html"
    procs = processor.spawn(
        settings,
        group,
        1,
        ctx.work_dir / "logs",
        argv=[
            sys.executable,
            "-m",
            "pyinstrument",
            "--interval",
            "0.001",
            "-r",
            "pyinstrument.renderers.SessionRenderer",
            "-o",
            str(session_file),
            "-m",
            "servicepulse",
            "process",
        ],
    )
    try:
        catch = offsets.watch(settings, topics.events, end, group=group, procs=procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    from pyinstrument.renderers import HTMLRenderer
    from pyinstrument.session import Session

    session = Session.load(str(session_file))
    html.write_text(HTMLRenderer().render(session))
    from pyinstrument.renderers import ConsoleRenderer

    text = ConsoleRenderer(unicode=False, color=False, show_all=False).render(session)
    return {
        "events": len(ds.records),
        "steady_events_per_s": round(catch.rate, 1),
        "top": top_functions(session),
        "text": text,
    }


def bench_profile(ctx: BenchContext) -> list[Figure]:
    """Profile figures: engine µs per event; the process rate under the profiler."""
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return [
            Figure("profile", "profile", None, "", note="not available: pip install pyinstrument")
        ]
    try:
        import processors.engine  # noqa: F401
    except ImportError:
        return [
            Figure("profile", "profile", None, "", note="not available: no processor engine yet")
        ]
    ctx.say("profile: the engine alone over the data set ...")
    eng = profile_engine(ctx)
    ctx.say(f"  engine {eng['us_per_event']:.1f} µs per event")
    report = _format(
        f"engine only (decode, validate, apply, flush): {eng['events']:,} events, "
        f"{eng['us_per_event']:.1f} us/event",
        eng["top"],
    )
    figures = [
        Figure(
            "profile",
            "engine CPU per event (no Kafka), under the profiler",
            eng["us_per_event"],
            "µs",
            note="PartitionEngine.process + flush over the data set, 12 partitions, "
            "2,000-event batches; top functions in profile.txt",
            details={"top": eng["top"]},
        )
    ]
    proc: dict[str, Any] | None = None
    why = processor.missing()
    if why is None:
        ctx.say("profile: a real processor under pyinstrument ...")
        try:
            proc = profile_process(ctx)
        except Exception as exc:
            why = f"failed: {exc!r}"
    if proc is not None:
        report += "\n" + _format(
            f"servicepulse process under pyinstrument: {proc['events']:,} events, "
            f"{proc['steady_events_per_s']:,.0f} events/s while profiled",
            proc["top"],
        )
        figures.append(
            Figure(
                "profile",
                "processor events/s while profiled",
                proc["steady_events_per_s"],
                "events/s",
                note="`servicepulse process` under pyinstrument (1 ms sampling); "
                "top functions in profile.txt, flame view in profile.html",
                details={"top": proc["top"]},
            )
        )
        report += "\n\nFull call tree (process):\n" + proc["text"]
    else:
        figures.append(
            Figure(
                "profile",
                "processor events/s while profiled",
                None,
                "events/s",
                note=f"not available: {why}",
            )
        )
    report += "\n\nFull call tree (engine):\n" + eng["text"]
    Path(ctx.work_dir / "profile.txt").write_text(report)
    ctx.cache["extra:profile"] = {"engine": eng["top"], "process": proc["top"] if proc else None}
    return figures
