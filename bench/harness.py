"""What every benchmark shares: figures with goals, the run context, the broker, the machine.

A benchmark is a function ``(ctx: BenchContext) -> list[Figure]``. Each :class:`Figure`
carries its value, the baseline measured in the same run, the ratio between them, the
goal and whether it held. A benchmark that cannot run (a component is not built yet,
an optional dependency is missing) returns figures with ``value=None`` and the reason
in ``note`` instead of raising, so one missing part never hides the others' numbers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from tenacity import Retrying, stop_after_delay, wait_fixed

import kafkaport
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport.topics import ensure_topics
from servicepulse import stack

logger = logging.getLogger(__name__)

GoalOn = Literal["ratio", "value"]
GoalOp = Literal[">=", "<=", "<"]


@dataclass(frozen=True, slots=True)
class Goal:
    """A pass/fail rule: ``on`` (the value or its ratio to the baseline) ``op`` ``target``."""

    on: GoalOn
    op: GoalOp
    target: float

    def holds(self, value: float | None, ratio: float | None) -> bool | None:
        """Whether the goal holds; ``None`` when the needed number is missing."""
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        if self.op == ">=":
            return x >= self.target
        if self.op == "<=":
            return x <= self.target
        return x < self.target

    def describe(self, unit: str) -> str:
        """The goal as a reader would say it, e.g. ``>= 60% of baseline``."""
        if self.on == "ratio":
            return f"{self.op} {self.target:.0%} of baseline"
        return f"{self.op} {_fmt(self.target)} {unit}".rstrip()


@dataclass(slots=True)
class Figure:
    """One measured number with its baseline, ratio and goal.

    Attributes:
        benchmark: the benchmark that produced it (``processor``, ``latency``, ...).
        name: what was measured, e.g. ``processor events/s, 1 instance``.
        value: the measurement in ``unit``; ``None`` when it could not be measured.
        unit: ``events/s``, ``s``, ``bytes``, ...
        baseline_name: what the value is compared with, measured in the same run.
        baseline: the baseline in ``unit`` (or in ``baseline_unit`` if given).
        goal: the pass/fail rule, if the figure has one.
        note: how it was measured, or why it is missing.
        details: further numbers kept in the JSON results (counts, durations, ...).
    """

    benchmark: str
    name: str
    value: float | None
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    goal: Goal | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """``value / baseline`` when both are known and the baseline is positive."""
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        """Whether the goal holds; ``None`` without a goal or without the number."""
        return None if self.goal is None else self.goal.holds(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the results file."""
        d = asdict(self)
        d["goal"] = (
            None
            if self.goal is None
            else {**asdict(self.goal), "text": self.goal.describe(self.unit)}
        )
        d["ratio"] = self.ratio
        d["passed"] = self.passed
        return d


def unavailable(
    benchmark: str, names: list[tuple[str, str, Goal | None]], why: str
) -> list[Figure]:
    """Figures for a benchmark that could not run: value ``None`` and the reason."""
    return [
        Figure(benchmark, name, None, unit, goal=goal, note=f"not available: {why}")
        for name, unit, goal in names
    ]


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def fmt_value(x: float | None, unit: str = "") -> str:
    """A number for the report: thousands separators, three significant digits below 10."""
    if x is None:
        return "—"
    return f"{_fmt(x)} {unit}".rstrip()


# -- the run context -----------------------------------------------------------------


@dataclass
class BenchContext:
    """Settings of one ``servicepulse bench`` run, shared by every benchmark.

    Attributes:
        bootstrap: the broker every benchmark uses (ours or the one given).
        events: events in the throughput data set.
        quick: small sizes and short durations (development, smoke tests).
        work_dir: scratch space (state directories, logs of child processes).
        console: where progress goes (stderr).
        run_id: a short random id; every topic of the run starts with ``bench-<run_id>``.
    """

    bootstrap: str
    events: int
    quick: bool
    work_dir: Path
    console: Console
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    cache: dict[str, Any] = field(default_factory=dict)

    def settings(self, prefix: str = "servicepulse", **extra: Any) -> CommonSettings:
        """Common settings pointing at the benchmark broker."""
        return CommonSettings(kafka_bootstrap=self.bootstrap, topic_prefix=prefix, **extra)

    def topics(self, name: str, events_partitions: int = 12) -> tuple[Topics, CommonSettings]:
        """A fresh set of the project's topics under ``bench-<run_id>-<name>``.

        Every set is deleted by :meth:`cleanup` at the end of the run.
        """
        prefix = f"bench-{self.run_id}-{name}"
        settings = self.settings(prefix)
        topics = Topics(prefix)
        specs = topics.specs(events_partitions)
        ensure_topics(kafkaport.connect(settings), specs)
        wait_for_leaders(settings, [s.name for s in specs])
        return topics, settings

    def extra_topic(self, name: str) -> str:
        """The name of an extra topic of this run (created by whoever uses it)."""
        return f"bench-{self.run_id}-{name}"

    def group(self, name: str) -> str:
        """A consumer group id of this run (deleted by :meth:`cleanup`)."""
        return f"bench-{self.run_id}-{name}"

    def cleanup(self) -> None:
        """Delete every topic and consumer group whose name carries this run's id.

        Topics go first and on their own: a group the broker will not delete yet (a
        killed child is still a member until its session times out, or the coordinator
        is loading on a busy broker) must not keep a run's topics. Each step is tried
        for up to a minute; what still fails is logged, never raised over the results.
        """
        settings = self.settings()
        try:
            client = kafkaport.connect(settings).admin()
        except Exception as exc:  # clean-up must not hide the results
            logger.warning("could not connect to delete benchmark topics: %s", exc)
            return
        try:
            for what, listing, delete in (
                ("topics", client.list_topics, client.delete_topics),
                ("groups", client.list_groups, client.delete_groups),
            ):
                try:
                    for attempt in Retrying(
                        stop=stop_after_delay(60), wait=wait_fixed(2), reraise=True
                    ):
                        with attempt:
                            names = [n for n in listing(30) if self.run_id in n]
                            delete(names, 30)
                    logger.info("deleted %d benchmark %s", len(names), what)
                except Exception as exc:
                    logger.warning("could not delete benchmark %s: %s", what, exc)
        finally:
            client.close()

    def progress(self) -> Progress:
        """A rich progress bar on the run's console."""
        return Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )

    def say(self, message: str) -> None:
        """One progress line."""
        self.console.print(message, highlight=False)


def wait_for_leaders(settings: CommonSettings, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of ``names`` has a leader (new topics take a moment).

    Producing before that only costs retries, but the retries would be timed.
    """
    client = kafkaport.connect(settings).admin()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                leaders = client.partition_leaders(names, 10)
            except kafkaport.KafkaError:
                leaders = {}
            if {tp.topic for tp in leaders} == set(names) and all(b >= 0 for b in leaders.values()):
                return
            time.sleep(0.1)
    finally:
        client.close()


#: The benchmark broker's ``group.initial.rebalance.delay.ms`` (Kafka's default).
INITIAL_REBALANCE_DELAY_MS = 3_000


@contextlib.contextmanager
def broker(bootstrap: str | None, console: Console) -> Iterator[tuple[str, str]]:
    """The broker for the run: the one given, or our own on free ports (stopped after).

    Yields ``(bootstrap, description)``.
    """
    if bootstrap:
        yield bootstrap, f"existing broker at {bootstrap}"
        return
    run_dir = Path(tempfile.mkdtemp(prefix="servicepulse-bench-kafka-"))
    port, controller = stack.free_port(), stack.free_port()
    # Kafka's own default, as on a production cluster (the local stack sets 0 to start
    # faster): instances started together join a new group in one generation, so the
    # two-instance figure measures two instances, not which of them reached the broker
    # first and the rebalance and restore that followed (docs/BENCHMARKS.md, 2026-12-07)
    proc = stack.kafka_process(
        run_dir,
        port,
        controller,
        heap="1g",
        extra_props={"group.initial.rebalance.delay.ms": str(INITIAL_REBALANCE_DELAY_MS)},
    )
    console.print(f"starting a Kafka {stack.KAFKA_VERSION} broker on 127.0.0.1:{port} ...")
    proc.start()
    try:
        yield (
            f"127.0.0.1:{port}",
            f"own single-node KRaft broker, Apache Kafka {stack.KAFKA_VERSION}, heap 1 GiB, "
            f"group.initial.rebalance.delay.ms {INITIAL_REBALANCE_DELAY_MS}, started by the "
            "benchmark",
        )
    finally:
        proc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


# -- the machine ---------------------------------------------------------------------


def _lscpu_model() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout  # noqa: S607
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[1],
        )
        if proc.returncode == 0:
            return proc.stdout.strip()
    return "unknown"


def _cpu_mhz() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return round(float(line.split(":", 1)[1]), 0)
    return 0.0


#: rounds of :func:`python_speed`'s workload per timing
_SPEED_ROUNDS: Final = 20_000
#: seconds of untimed work before :func:`python_speed` times
_SPEED_WARM_S: Final = 0.5


def python_speed(repeats: int = 5) -> float:
    """Nanoseconds of CPU per round of a fixed pure-Python workload, best of ``repeats``.

    The kind of work the engine does per event (dict and set lookups, an f-string, a
    small tuple and a method call), so that CPU-per-event figures of two days can be
    compared: hosts of one machine kind differ (the engine alone took 17.0 µs per event
    on 2026-12-07 and 24.2 µs on 2026-12-08, same code and data). CPU time of this
    thread, so other work on the machine changes it less than wall time would.
    """
    best = float("inf")
    # an idle virtual CPU runs slower for a while (read 0.92 µs per round right after a
    # 1 s sleep, against 0.57 µs busy): work for a while first, untimed
    warm_until = time.monotonic() + _SPEED_WARM_S
    while time.monotonic() < warm_until:
        for i in range(1_000):
            f"agency-{i}|{i}".upper()
    for _ in range(repeats):
        counts: dict[tuple[str, int], int] = {}
        seen: set[str] = set()
        t0 = time.thread_time_ns()
        for i in range(_SPEED_ROUNDS):
            key = f"agency-{i & 63}|{i}"
            cell = (key[:9], i & 7)
            counts[cell] = counts.get(cell, 0) + 1
            if key not in seen:
                seen.add(key)
            seen.discard(key.upper())
        best = min(best, (time.thread_time_ns() - t0) / _SPEED_ROUNDS)
    return round(best, 1)


def machine_info() -> dict[str, Any]:
    """CPU model (``lscpu``) and clock, cores, memory, OS, Python and library versions,
    and :func:`python_speed` (this host's speed at pure Python)."""
    try:
        import crc32c  # noqa: F401

        crc = "installed (C)"
    except ImportError:
        crc = "missing: kafka-python checks CRCs in pure Python"
    return {
        "cpu_model": _lscpu_model(),
        "cpu_mhz": _cpu_mhz(),
        "python_ns_per_round": python_speed(),
        "cores": os.cpu_count(),
        "memory_gib": round(_mem_total_gib(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka_python": _version("kafka-python"),
        "crc32c": crc,
        "msgspec": _version("msgspec"),
        "quixstreams": _version("quixstreams"),
        "confluent_kafka": _version("confluent-kafka"),
        "git_commit": _git_commit(),
    }


def loadavg() -> tuple[float, float, float]:
    """The 1/5/15-minute load averages (other work on the machine shows here)."""
    return os.getloadavg()


def python_child(code: str, *args: str) -> list[str]:
    """argv running ``code`` in this interpreter (child processes of a benchmark)."""
    return [sys.executable, "-c", code, *args]


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (monotonic, high resolution)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


BenchFn = Callable[[BenchContext], list[Figure]]
