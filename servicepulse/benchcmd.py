"""``servicepulse bench``: run the benchmarks and write their results."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)
out = Console()


def bench(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="small sizes and short durations (development, CI smoke)"),
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(
            help="comma-separated benchmarks to run: processor, peer, join, latency, ingest, "
            "state, profile, history, web (default: all)",
            metavar="NAME,...",
        ),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option(
            min=1000, help="events in the throughput data set (default 200,000; --quick 20,000)"
        ),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="use this Kafka broker (HOST:PORT) instead of starting a private one",
            metavar="HOST:PORT",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="directory for results.json, results.md and the profile "
            "(default .servicepulse/bench/<UTC time>)"
        ),
    ] = None,
) -> None:
    """Measure ServicePulse against its baselines and goals (issue 5, docs/BENCHMARKS.md).

    Each figure comes with the baseline measured in the same run,
    the ratio, the goal and pass/fail.

    \b
    processor  events/s with transactions vs raw confluent-kafka consume
               of the same topic, 1 and 2 instances (goal >= 60%)
    peer       the same aggregation in Quix Streams, same topic:
               ours over theirs
    join       a third instance joining two, then one of three leaving:
               records restored against a full restore, the longest
               commit gap of the instances that keep partitions
    latency    produce -> visible in the API read model at
               2,000 events/s (goal p99 <= 0.5 s)
    ingest     POST /v1/events batched (1000) and single vs the raw
               producer (goal batched >= 50%); p99 at half that load;
               batched with signatures required vs unsigned (goal >= 80%)
    state      bytes per open journey (goal < 1 KiB); restore of
               1M open journeys (goal <= 60 s)
    profile    pyinstrument profile of the processor (top functions)
    history    30 and 365 days of regional traffic as aggregate records:
               scrape CPU/bytes/series (goal <= 50 ms, <= 30,000),
               RSS and catch-up of API and processor, reports
    web        web view page p95 at a year of history (goal <= 200 ms)

    A private Kafka broker is started on free ports and stopped at
    the end unless --bootstrap is given (needs the JDK and the jars:
    `servicepulse kafka fetch`). Every topic and consumer group the
    run creates is deleted afterwards. Exit code 0 means the
    benchmarks ran, not that the goals held: read the table.
    """
    try:
        import bench as benchmod
    except ImportError as exc:
        # the benchmarks are tooling, not part of the runtime packages (the image and
        # a wheel without the source tree do not have them)
        raise _fail(
            f"the benchmarks are not installed ({exc}); run `servicepulse bench` from a "
            "source checkout: pip install -e '.[dev,bench]'"
        ) from exc

    names = list(benchmod.NAMES)
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(benchmod.NAMES))
        if unknown:
            raise _fail(
                f"unknown benchmark(s) {', '.join(unknown)}; "
                f"choose from {', '.join(benchmod.NAMES)}"
            )
    missing = benchmod.missing_extras(names)
    if missing:
        needs = ", ".join(f"{name} needs {module}" for name, module in missing.items())
        if only:
            raise _fail(f"the bench extra is missing ({needs}): pip install -e '.[bench]'")
        console.print(
            "[yellow]warning:[/] "
            + escape(
                f"the bench extra is missing ({needs}); those benchmarks report "
                "'not available' (pip install -e '.[bench]')"
            ),
            highlight=False,
            soft_wrap=True,
        )
    if output is None:
        import datetime as dt

        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        output = Path(".servicepulse") / "bench" / stamp
    command = "servicepulse " + shlex.join(sys.argv[1:])
    # SIGTERM unwinds like Ctrl-C, so child processes, the private broker and the
    # run's topics are still cleaned up.
    signal.signal(signal.SIGTERM, _interrupt)
    _, figures, (json_path, md_path) = benchmod.run(
        names,
        events=events,
        quick=quick,
        bootstrap=bootstrap,
        output=output,
        command=command,
        console=console,
    )
    out.print(benchmod.markdown_table(figures), markup=False, highlight=False)
    out.print(f"\nresults: {json_path}\n         {md_path}", highlight=False)


def _fail(message: str) -> typer.Exit:
    # escape: the install line's '.[bench]' would read as markup; one line, not wrapped
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def register(app: typer.Typer) -> None:
    """Attach ``bench``."""
    app.command("bench")(bench)
