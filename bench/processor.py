"""Benchmark 1: processor throughput with transactions, against raw consume of the same topic.

For 1 and 2 instances: a fresh set of topics, the data set produced into the events
topic, then the real ``servicepulse process`` command started as child processes (one
consumer group, exactly-once) and timed by the group referee
(:mod:`bench.offsets`) until every input offset is committed. The raw
confluent-kafka consume rate of the same topic is measured just before and just after;
the faster of the two is the baseline. The aggregates it wrote are read back and its
journeys started/submitted per service and day compared with totals computed directly
from the events, so a fast but wrong processor cannot pass.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kafkaport
from bench import baselines, offsets, workload
from bench.harness import BenchContext, Figure, Goal, unavailable
from contract import aggregates
from contract.settings import CommonSettings
from contract.topics import Topics
from servicepulse import stack

GOAL = Goal("ratio", ">=", 0.60)
#: The /metrics port of every processor child this process started, by pid.
_METRICS_PORTS: dict[int, int] = {}
BASELINE = "raw confluent-kafka consume, same topic"
#: Seconds a read of the aggregates may go without progress: more than the processor's
#: transaction timeout (1 min), after which the broker aborts a transaction a stopped
#: child left open and ``read_committed`` readers move on.
READ_STALL_S = 120.0


def missing() -> str | None:
    """Why the processor cannot be benchmarked yet, or ``None``."""
    if importlib.util.find_spec("servicepulse.processcmd") is None:
        return "`servicepulse process` is not built yet (servicepulse/processcmd.py missing)"
    return None


def dataset(ctx: BenchContext) -> workload.Dataset:
    """The run's throughput data set (made once, shared by benchmarks 1 and 5)."""
    if "dataset" not in ctx.cache:
        ctx.say(f"generating {ctx.events:,} events ...")
        ctx.cache["dataset"] = workload.dataset(ctx.events)
    ds: workload.Dataset = ctx.cache["dataset"]
    return ds


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far, over all cores (the
    ``cpu`` line of ``/proc/stat``; idle and I/O wait are not busy). ``(0, 0)`` where
    it cannot be read."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    idle = sum(ticks[3:5])
    total = sum(ticks[:8])
    return (total - idle) / tick, total / tick


def cores_used(
    ours0: float,
    ours1: float,
    machine0: tuple[float, float],
    machine1: tuple[float, float],
    cores: int | None = None,
) -> dict[str, float]:
    """How many cores the processors and everything else (the benchmark's broker, this
    process) kept busy between two readings, and the machine's busy fraction
    (``cores``: the machine's, by default ``os.cpu_count()``)."""
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    cores = cores or os.cpu_count() or 1
    if total <= 0:
        return {}
    wall = total / cores
    return {
        "all_in_machine_busy": round(busy / total, 3),
        "all_in_cores_processors": round((ours1 - ours0) / wall, 2),
        "all_in_cores_others": round(max(0.0, busy - (ours1 - ours0)) / wall, 2),
    }


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds of a live process's threads, summed by kind: ``python`` (the
    interpreter's threads) and ``librdkafka`` (its ``rdk:`` threads: broker I/O, the
    main loop, the producer's batching), from ``/proc/<pid>/task``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"python": 0.0, "librdkafka": 0.0}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended between the listing and the read
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        kind = "librdkafka" if name.startswith("rdk:") else "python"
        out[kind] += (int(fields[11]) + int(fields[12])) / tick
    return out


def spawn(
    settings: CommonSettings,
    group: str,
    instances: int,
    log_dir: Path,
    *,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    first: int = 1,
) -> list[subprocess.Popen[bytes]]:
    """Start ``instances`` ``servicepulse process`` children in one consumer group.

    ``argv`` replaces the command (e.g. to run it under a profiler); ``env`` adds
    settings. The instance ids are ``first``, ``first + 1``, ... (a child started later
    into the same group needs an id of its own). Output goes to
    ``<log_dir>/<group>-<id>.log``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(first, first + instances):
        port = stack.free_port()
        child_env = {
            **os.environ,
            "SERVICEPULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SERVICEPULSE_TOPIC_PREFIX": settings.topic_prefix,
            "SERVICEPULSE_GROUP_ID": group,
            "SERVICEPULSE_INSTANCE_ID": str(i),
            "SERVICEPULSE_METRICS_PORT": str(port),
            "SERVICEPULSE_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with (log_dir / f"{group}-{i}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(  # noqa: S603 - our own CLI (or it under a profiler)
                    argv or [sys.executable, "-m", "servicepulse", "process"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=child_env,
                )
            )
        _METRICS_PORTS[procs[-1].pid] = port
    return procs


def metrics_port(proc: subprocess.Popen[bytes]) -> int | None:
    """The ``/metrics`` port of a child :func:`spawn` started, else ``None``."""
    return _METRICS_PORTS.get(proc.pid)


def _samples(procs: list[subprocess.Popen[bytes]]) -> Iterator[Any]:
    """Every sample of every child's own ``/metrics`` (children that do not answer are
    left out)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    for p in procs:
        port = _METRICS_PORTS.get(p.pid)
        if port is None:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for fam in text_string_to_metric_families(text):
            yield from fam.samples


def histogram(procs: list[subprocess.Popen[bytes]], name: str) -> dict[str, float]:
    """The cumulative buckets (``le`` -> count) of histogram ``name`` (without
    ``_bucket``), summed over the children's ``/metrics``; empty if none answers."""
    out: dict[str, float] = {}
    for s in _samples(procs):
        if s.name == name + "_bucket":
            le = s.labels["le"]
            out[le] = out.get(le, 0.0) + s.value
    return out


def _all_in(catch: offsets.CatchUp, all_in: list[tuple[float, int]]) -> dict[str, float]:
    """The rate from the moment every instance had committed a transaction to the last
    commit: what the instances do together once all are in (empty if never seen, or
    if it was seen only at the end)."""
    if not all_in:
        return {}
    t, committed = all_in[0]
    seconds = catch.done - t
    if seconds <= 0 or committed >= catch.records:
        return {}
    return {
        "all_in_after_s": round(t - catch.started, 3),
        "committed_when_all_in": committed,
        "all_in_events_per_s": round((catch.records - committed) / seconds, 1),
    }


def scrape(procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """Output records by kind and committed transactions, summed over the children.

    Read from each child's own ``/metrics`` (``servicepulse_processor_records_out_total``,
    ``servicepulse_processor_transactions_total``); empty if none answers.
    """
    out: dict[str, float] = {}
    for s in _samples(procs):
        if s.name == "servicepulse_processor_records_out_total":
            k = f"records_out_{s.labels.get('kind', '')}"
        elif (
            s.name == "servicepulse_processor_transactions_total"
            and s.labels.get("result") == "committed"
        ):
            k = "transactions"
        else:
            continue
        out[k] = out.get(k, 0.0) + s.value
    return out


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM the children we started, SIGKILL what is left after ``grace`` seconds."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def read_rollup_totals(
    settings: CommonSettings, topic: str
) -> dict[tuple[str, str], tuple[int, int]]:
    """Journeys started/submitted per (service, day) from the aggregates topic.

    Reads ``read_committed`` from the beginning to the end, keeps the latest value of
    every ``r|`` key and sums the partitions, as the API's read model does.

    Raises:
        TimeoutError: the read made no progress for ``READ_STALL_S`` seconds. It used to
            stop at a fixed 120 s and compare what it had, so a read slowed by a busy
            CPU reported the processor's totals as wrong.
    """
    end = offsets.end_offsets(settings, topic)
    consumer = kafkaport.connect(settings).consumer(client_id="servicepulse-bench")
    latest: dict[bytes, aggregates.Rollup] = {}
    try:
        consumer.assign(dict.fromkeys(end, kafkaport.BEGINNING))
        last_progress = time.monotonic()
        behind = sum(end.values())
        while behind > 0:
            for rec in consumer.poll(0.5, 5_000):
                if rec.key and rec.key.startswith(b"r|") and rec.value is not None:
                    latest[rec.key] = aggregates.decode_rollup(rec.value)
            now_behind = sum(max(0, off - (consumer.position(tp) or 0)) for tp, off in end.items())
            if now_behind < behind:
                behind, last_progress = now_behind, time.monotonic()
            elif time.monotonic() - last_progress > READ_STALL_S:
                raise TimeoutError(
                    f"reading {topic}: {now_behind} records short of its end, "
                    f"no progress for {READ_STALL_S:.0f}s"
                )
    finally:
        consumer.close()
    totals: dict[tuple[str, str], list[int]] = {}
    for key, r in latest.items():
        k = aggregates.decode_key(key)
        assert isinstance(k, aggregates.RollupKey)  # noqa: S101 - only r| keys were kept
        cell = totals.setdefault((k.dims.service, k.day), [0, 0])
        cell[0] += r.started
        cell[1] += r.submitted
    return {k: (v[0], v[1]) for k, v in totals.items() if v != [0, 0]}


def compare(
    got: dict[tuple[str, str], tuple[int, int]], want: dict[tuple[str, str], tuple[int, int]]
) -> str | None:
    """``None`` when the totals agree, else a short description of the first differences."""
    want = {k: v for k, v in want.items() if v != (0, 0)}
    if got == want:
        return None
    diffs = [
        f"{k[0]} {k[1]}: got {got.get(k)}, want {want.get(k)}"
        for k in sorted(set(got) | set(want))
        if got.get(k) != want.get(k)
    ]
    return f"{len(diffs)} (service, day) cells differ, e.g. " + "; ".join(diffs[:3])


def _cpu_note(details: dict[str, Any]) -> str:
    steady = details.get("steady_cpu_us_per_event")
    whole = f"{details['cpu_us_per_event']:.1f} µs CPU per event from spawn"
    if steady is None:
        return whole
    return f"{steady:.1f} µs CPU per event after the first commit ({whole})"


def _all_in_note(details: dict[str, Any]) -> str:
    rate = details.get("all_in_events_per_s")
    if rate is None:
        return ""
    cores = ""
    if "all_in_machine_busy" in details:
        cores = (
            f", the machine {details['all_in_machine_busy']:.0%} busy then: processors "
            f"{details['all_in_cores_processors']:.2f} cores, everything else (the broker) "
            f"{details['all_in_cores_others']:.2f}"
        )
    return (
        f"; {rate:,.0f} events/s from the moment every instance had committed a "
        f"transaction ({details['all_in_after_s']:.1f} s after spawn) to the last commit"
        f"{cores}"
    )


def _steady_cpu(cpu: float, events: int, at_first: list[float]) -> dict[str, float]:
    """CPU per event after the first commit (``at_first``: CPU seconds and records
    committed then); empty when the first commit was not seen before the end."""
    if len(at_first) != 2 or events - at_first[1] <= 0:
        return {}
    cpu0, done = at_first
    return {
        "cpu_seconds_at_first_commit": round(cpu0, 2),
        "steady_cpu_us_per_event": round((cpu - cpu0) / (events - done) * 1e6, 1),
    }


@dataclass
class OursRun:
    """One timed run of our processor on a freshly filled topic."""

    instances: int
    topics: Topics
    settings: CommonSettings
    raw: baselines.Rate
    catch_up: offsets.CatchUp
    cpu_seconds: float
    check: str | None
    details: dict[str, Any] = field(default_factory=dict)


def run_ours(ctx: BenchContext, instances: int) -> OursRun:
    """Fill a fresh topic, measure raw consume on it, then time ``instances`` processors.

    Raw consume is measured right before and right after the processors run, and the
    faster of the two is the baseline: a load spike on the shared machine can only
    make our ratio look worse, never better.

    Cached per instance count: the peer benchmark reuses the 1-instance run's topic
    and figure.
    """
    key = f"ours-{instances}"
    if key in ctx.cache:
        run: OursRun = ctx.cache[key]
        return run
    ds = dataset(ctx)
    topics, settings = ctx.topics(f"p{instances}")
    ctx.say(f"processor x{instances}: producing {len(ds.records):,} events to {topics.events}")
    fill_s = workload.fill(settings, topics.events, ds.records)
    ctx.say(f"processor x{instances}: raw consume baseline ...")
    raw_before = baselines.raw_consume(settings, topics.events, len(ds.records))
    ctx.say(f"  raw consume {raw_before.per_second:,.0f} records/s")
    end = offsets.end_offsets(settings, topics.events)
    group = ctx.group(f"proc{instances}")
    procs = spawn(settings, group, instances, ctx.work_dir / "logs")
    cpu = 0.0
    # CPU and records at the first commit: what the processes spend from then on is
    # the steady cost per event, without the interpreter's start, the imports, the
    # group join and the restore (a fixed cost a 200,000-event run would spread thin)
    at_first: list[float] = []

    def sample_first(committed: int) -> None:
        at_first.extend((sum(cpu_seconds(p.pid) for p in procs), committed))

    # when every instance has committed a transaction of its own (all are processing:
    # the group join, the second instance's restore and the first rebalance are behind)
    all_in: list[tuple[float, int]] = []
    # the processors' CPU and the machine's from then on: whether the cores were full
    all_in_cpu: list[tuple[float, tuple[float, float]]] = []

    def sample_all_in(now: float, committed: int) -> None:
        if not all_in and committed and all(scrape([p]).get("transactions") for p in procs):
            all_in.append((now, committed))
            all_in_cpu.append((sum(cpu_seconds(p.pid) for p in procs), machine_cpu()))

    written: dict[str, float] = {}
    threads: list[dict[str, float]] = []
    machine_end = (0.0, 0.0)
    try:
        with ctx.progress() as bar:
            task = bar.add_task(f"processor x{instances}", total=len(ds.records))
            catch = offsets.watch(
                settings,
                topics.events,
                end,
                group=group,
                procs=procs,
                on_progress=lambda n: bar.update(task, completed=n),
                on_first=sample_first,
                on_tick=sample_all_in,
            )
        cpu = sum(cpu_seconds(p.pid) for p in procs)
        machine_end = machine_cpu()
        threads = [cpu_by_thread(p.pid) for p in procs]
        written = scrape(procs)
    finally:
        stop(procs)
    ctx.say(
        f"  processor x{instances}: {catch.rate:,.0f} events/s ({catch.rate_kind}), "
        f"{catch.wall_rate:,.0f} events/s from spawn"
    )
    raw_after = baselines.raw_consume(settings, topics.events, len(ds.records))
    ctx.say(f"  raw consume again {raw_after.per_second:,.0f} records/s")
    raw = max(raw_before, raw_after, key=lambda r: r.per_second)
    check = compare(
        read_rollup_totals(settings, topics.aggregates), workload.expected_totals(ds.records)
    )
    run = OursRun(
        instances,
        topics,
        settings,
        raw,
        catch,
        cpu,
        check,
        {
            "events": len(ds.records),
            "fill_seconds": round(fill_s, 3),
            "raw_consume_before_per_s": round(raw_before.per_second, 1),
            "raw_consume_after_per_s": round(raw_after.per_second, 1),
            "raw_consume_cpu_us_per_record": round(
                min(raw_before.cpu_us_per_record, raw_after.cpu_us_per_record), 2
            ),
            "wall_seconds": round(catch.wall_seconds, 3),
            "wall_events_per_s": round(catch.wall_rate, 1),
            "steady_seconds": round(catch.steady_seconds, 3),
            "steady_events_per_s": round(catch.steady_rate, 1),
            "rate_kind": catch.rate_kind,
            "committed_at_first_commit": catch.committed_at_first,
            **_all_in(catch, all_in),
            **(
                cores_used(all_in_cpu[0][0], cpu, all_in_cpu[0][1], machine_end)
                if all_in_cpu
                else {}
            ),
            "cpu_seconds": round(cpu, 2),
            "cpu_us_per_event": round(cpu / len(ds.records) * 1e6, 1),
            **_steady_cpu(cpu, len(ds.records), at_first),
            # from spawn, so the interpreter's start and the imports are in ``python``
            **{
                f"cpu_us_per_event_{kind}": round(
                    sum(t[kind] for t in threads) / len(ds.records) * 1e6, 1
                )
                for kind in ("python", "librdkafka")
            },
            "totals_match": check is None,
            **{k: int(v) for k, v in written.items()},
            "records_out_per_event": round(
                (written.get("records_out_changelog", 0) + written.get("records_out_aggregates", 0))
                / len(ds.records),
                3,
            ),
        },
    )
    ctx.cache[key] = run
    return run


def bench_processor(ctx: BenchContext) -> list[Figure]:
    """Figures 1a and 1b: processor events/s over raw consume, 1 and 2 instances."""
    names = [(f"processor events/s, {n} instance{'s' * (n > 1)}", "events/s") for n in (1, 2)]
    why = missing()
    if why:
        return unavailable("processor", [(n, u, GOAL) for n, u in names], why)
    figures = []
    for (name, unit), n in zip(names, (1, 2), strict=True):
        try:
            run = run_ours(ctx, n)
        except Exception as exc:
            figures.append(
                Figure("processor", name, None, unit, BASELINE, goal=GOAL, note=f"failed: {exc}")
            )
            continue
        note = (
            f"{n} `servicepulse process` process(es), one group, exactly-once; rate "
            f"{run.catch_up.rate_kind} of the input offsets (from spawn: "
            f"{run.catch_up.wall_rate:,.0f} events/s"
            + _all_in_note(run.details)
            + "); "
            + _cpu_note(run.details)
            + " (raw consume "
            f"{run.details['raw_consume_cpu_us_per_record']:.1f} µs per record); "
            f"{run.details['records_out_per_event']:.2f} records written per event in "
            f"{run.details.get('transactions', 0)} transactions; started/submitted totals "
            + ("match the events" if run.check is None else f"WRONG: {run.check}")
        )
        figures.append(
            Figure(
                "processor",
                name,
                run.catch_up.rate if run.check is None else None,
                unit,
                BASELINE,
                run.raw.per_second,
                GOAL,
                note,
                run.details,
            )
        )
    return figures
