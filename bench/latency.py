"""Benchmark 2: produce -> visible in the API read model, p50/p99, at 2,000 events/s.

A child process produces ``journey.started`` marker events at a steady 2,000 events/s
in ticks of 50 ms (100 events per tick); every tick goes to a cell of its own
(service x municipality x channel), with ``occurred_at`` = now. One real
``servicepulse process`` instance processes them (exactly-once, read_committed
outputs) and the API's own read model (:class:`api.readmodel.ReadModel`, the object
``/metrics`` and the scorecards are served from) materialises the aggregates topic in
this process. A tick is visible when its cell's ``started`` count in the read model
reaches the tick's size; its latency is that moment minus the ``send()`` of the tick's
first event, so it is the latency of the tick's oldest event.

The first ``WARMUP_S`` seconds of ticks run at the same rate and are not measured (their
worst latency is kept in the details): on a broker that has just made the topics, the
first transactions of a new producer wait on the coordinator's markers of the previous
commit (``CONCURRENT_TRANSACTIONS``, retried), a start-up cost paid once, not the latency
an inspector sees at a sustained 2,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench import processor
from bench.harness import BenchContext, Figure, Goal, percentile, unavailable

RATE = 2_000.0
TICK = 0.05
GOAL_P99 = Goal("value", "<=", 0.5)  # issue 13 (it was 2 s)
WARMUP_S = 5.0
WARMUP_QUICK_S = 2.0
Cell = tuple[str, str, str, str]
#: a read-model cell: agency, service, municipality, channel, life situation
Cell5 = tuple[str, str, str, str, str]


def plan(ticks: int, seed: int = 11) -> list[Cell]:
    """``ticks + 1`` distinct (agency, service, municipality, channel) cells; [0] warms up."""
    from contract.catalog import load_catalog

    cat = load_catalog()
    cells = [
        (idx.service.agency, code, m, str(ch))
        for code, idx in sorted(cat.services.items())
        for m in sorted(cat.municipalities)
        for ch in idx.service.channels
    ]
    random.Random(seed).shuffle(cells)  # noqa: S311 - not a secret
    if ticks + 1 > len(cells):
        raise ValueError(f"{ticks} ticks need more distinct cells than the catalog has")
    return cells[: ticks + 1]


def marker_records(cell: Cell, tick: int, n: int) -> list[tuple[bytes, bytes]]:
    """``n`` valid ``journey.started`` events of one cell, occurring now."""
    from contract.events import Channel, Event, EventType, encode_event, event_key

    now = datetime.now(UTC)
    agency, service, municipality, channel = cell
    out = []
    for i in range(n):
        ev = Event(
            event_id=str(uuid.uuid4()),
            type=EventType.JOURNEY_STARTED,
            schema_version=1,
            occurred_at=now,
            agency=agency,
            service=service,
            municipality=municipality,
            channel=Channel(channel),
            journey=f"lat-{tick}-{i}",
        )
        out.append((event_key(ev), encode_event(ev)))
    return out


def produce_ticks(bootstrap: str, topic: str, ticks: int, rate: float, tick: float) -> list[float]:
    """Send ticks 1..``ticks`` on schedule; returns the wall time of each tick's first send."""
    import kafkaport
    from contract.settings import CommonSettings

    cells = plan(ticks)
    per_tick = round(rate * tick)
    producer = kafkaport.connect(CommonSettings(kafka_bootstrap=bootstrap)).producer(
        client_id="servicepulse-bench"
    )
    sent: list[float] = []
    try:
        start = time.monotonic() + 0.2
        for i in range(1, ticks + 1):
            records = marker_records(cells[i], i, per_tick)
            delay = start + (i - 1) * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(time.time())
            for key, value in records:
                producer.send(topic, value, key)
        producer.flush(120)
    finally:
        producer.close(10)
    return sent


def bench_latency(ctx: BenchContext) -> list[Figure]:
    """Figures 2a and 2b: p50 and p99 produce-to-read-model latency at 2,000 events/s."""
    names = [
        ("end-to-end latency p50 at 2,000 events/s", "s", None),
        ("end-to-end latency p99 at 2,000 events/s", "s", GOAL_P99),
    ]
    why = processor.missing()
    if why is None:
        try:
            from api.readmodel import ReadModel
        except ImportError:
            why = "the API read model (api/readmodel.py) is not built yet"
    if why:
        return unavailable("latency", names, why)
    import kafkaport
    from contract.catalog import load_catalog

    duration = 10.0 if ctx.quick else 60.0
    ticks = int(duration / TICK)
    warm = int((WARMUP_QUICK_S if ctx.quick else WARMUP_S) / TICK)
    per_tick = round(RATE * TICK)
    cells = plan(warm + ticks)
    topics, settings = ctx.topics("lat")
    model = ReadModel(settings, topics, load_catalog(), snapshot=None)
    model.start()
    procs = processor.spawn(settings, ctx.group("lat"), 1, ctx.work_dir / "logs")
    child: subprocess.Popen[bytes] | None = None
    try:
        ctx.say("latency: warming up (processor joins, read model catches up) ...")
        producer = kafkaport.connect(settings).producer(client_id="servicepulse-bench")
        for key, value in marker_records(cells[0], 0, per_tick):
            producer.send(topics.events, value, key)
        producer.flush(120)
        producer.close(10)
        want = {(*c, ""): per_tick for c in cells}
        seen: dict[Cell5, float] = {}
        _wait_visible(model, want, seen, [(*cells[0], "")], time.monotonic() + 120)
        if (*cells[0], "") not in seen:
            raise TimeoutError("warm-up tick not visible in the read model within 120 s")
        ctx.say(
            f"latency: {warm * TICK:.0f} s of warm-up, then {duration:.0f} s of "
            f"{RATE:,.0f} events/s, {per_tick} per {TICK * 1000:.0f} ms tick"
        )
        child = subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "bench.latency",
                ctx.bootstrap,
                topics.events,
                str(warm + ticks),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        pending = [(*c, "") for c in cells[1:]]
        with ctx.progress() as bar:
            task = bar.add_task("ticks visible", total=warm + ticks)
            _wait_visible(
                model,
                want,
                seen,
                pending,
                time.monotonic() + warm * TICK + duration + 60,
                lambda n: bar.update(task, completed=n - 1),
            )
        out, err = child.communicate(timeout=60)
        if child.returncode != 0:
            raise RuntimeError(f"marker producer failed: {err.decode()[-1500:]}")
        sent: list[float] = json.loads(out)
        commits = processor.histogram(procs, "servicepulse_processor_commit_seconds")
        batches = processor.histogram(procs, "servicepulse_processor_batch_seconds")
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        processor.stop(procs)
        model.stop()
    warm_lat = [seen[c] - t for c, t in zip(pending[:warm], sent[:warm], strict=True) if c in seen]
    pending, sent = pending[warm:], sent[warm:]
    lat = [seen[c] - t for c, t in zip(pending, sent, strict=True) if c in seen]
    missing = ticks - len(lat)
    span = sent[-1] - sent[0] + TICK if sent else 0.0
    achieved = ticks * per_tick / span if span else 0.0
    details: dict[str, Any] = {
        "ticks": ticks,
        "warmup_ticks": warm,
        "warmup_max": round(max(warm_lat), 4) if warm_lat else None,
        "events_per_tick": per_tick,
        "achieved_rate": round(achieved, 1),
        "not_visible": missing,
        "p90": round(percentile(lat, 0.9), 4),
        "max": round(max(lat), 4) if lat else None,
        "mean": round(sum(lat) / len(lat), 4) if lat else None,
        # the processor's own view: transactions by commit time and by batch time (le
        # -> cumulative count), to tell a slow commit from a slow read
        "commit_seconds_buckets": commits,
        "batch_seconds_buckets": batches,
    }
    note = (
        f"{ticks} ticks of {per_tick} journey.started events over {duration:.0f} s "
        f"after {warm * TICK:.0f} s of warm-up at the same rate "
        f"(achieved {achieved:,.0f} events/s; worst warm-up tick {details['warmup_max']} s), "
        f"1 processor, read model in the bench process; "
        f"latency of the oldest event of each tick from send() to visible; "
        f"p90 {details['p90']:.3f} s, max {details['max']} s"
        + (f"; {missing} ticks never became visible (counted as failures)" if missing else "")
    )
    ok = missing == 0
    p50 = percentile(lat, 0.5) if lat and ok else None
    p99 = percentile(lat, 0.99) if lat and ok else None
    ctx.say(f"  latency p50 {p50} s, p99 {p99} s")
    return [
        Figure("latency", names[0][0], p50, "s", note=note, details=details),
        Figure("latency", names[1][0], p99, "s", goal=GOAL_P99, note=note, details=details),
    ]


def _wait_visible(
    model: Any,
    want: dict[Cell5, int],
    seen: dict[Cell5, float],
    cells: list[Cell5],
    deadline: float,
    progress: Any = None,
) -> None:
    """Record in ``seen`` when each of ``cells`` reaches its count; until all or deadline."""
    todo = set(cells) - set(seen)
    version = -1
    while todo and time.monotonic() < deadline:
        if model.version != version:
            now = time.time()
            version = model.version
            with model.lock:
                for cell, r in model.totals_view():
                    if cell in todo and r.started >= want[cell]:
                        seen[cell] = now
                        todo.discard(cell)
            if progress is not None:
                progress(len(seen))
        time.sleep(0.002)


def main() -> None:
    """Child entry: ``python -m bench.latency BOOTSTRAP TOPIC TICKS``."""
    p = argparse.ArgumentParser(description="produce latency marker ticks")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("ticks", type=int)
    a = p.parse_args()
    print(json.dumps(produce_ticks(a.bootstrap, a.topic, a.ticks, RATE, TICK)))


if __name__ == "__main__":
    main()
