"""The peer: ServicePulse's core aggregation written with Quix Streams, for comparison.

Journeys started and submitted per service per event-time day, counted once per
journey (duplicates of an ``event_id`` ignored, a submission counted only for a journey
still open), with RocksDB state backed by changelog topics and
``processing_guarantee="exactly-once"``: the same job as the heart of our processor,
written the way the Quix Streams documentation shows stateful pipelines:

1. a stateful ``apply`` keyed by the event's Kafka key (case or journey) keeps each
   journey's status and the event ids it has seen, and emits an increment
   (``started`` or ``submitted``) or nothing;
2. ``group_by`` re-keys the increments by ``service|day`` (Quix's repartition topic);
3. a second stateful ``apply`` adds them to the day's counters and publishes the
   running totals to an output topic.

This module is ours, written for the benchmark against the Quix Streams 3.x API
(``Application``, ``StreamingDataFrame``, ``State``); Quix Streams is a benchmark-only
dependency (the ``bench`` extra). It runs in a child process, like our processor does,
started by :func:`run_peer`: ``python -m bench.peer_quix --bootstrap ...``
prints one JSON line with its timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.offsets import CatchUp

logger = logging.getLogger(__name__)

#: How many recent event ids a journey remembers for de-duplication.
DEDUP_PER_JOURNEY = 64

_OPEN, _SUBMITTED, _CLOSED = "open", "submitted", "closed"


def _day(occurred_at: str, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(occurred_at).astimezone(tz).date().isoformat()


def journey_increment(event: dict[str, Any], state: Any, tz: ZoneInfo) -> dict[str, Any] | None:
    """Step 1 (per Kafka key): the started/submitted increment an event causes, if any.

    State per key (a case or a journey): ``j:<journey>`` -> status, ``e:<journey>`` ->
    recent event ids. Non-lifecycle events and events without a journey change nothing.
    """
    journey = event.get("journey")
    etype = event["type"]
    if journey is None or not etype.startswith(("journey.", "decision.")):
        return None
    seen_key = f"e:{journey}"
    seen: list[str] = state.get(seen_key, [])
    if event["event_id"] in seen:
        return None
    seen.append(event["event_id"])
    state.set(seen_key, seen[-DEDUP_PER_JOURNEY:])
    status_key = f"j:{journey}"
    status = state.get(status_key)
    started = submitted = 0
    if etype == "journey.started":
        if status is None:
            state.set(status_key, _OPEN)
            started = 1
    elif etype == "journey.submitted":
        if status in (None, _OPEN):
            state.set(status_key, _SUBMITTED)
            submitted = 1
    elif etype in ("journey.abandoned", "decision.made"):
        if status != _CLOSED:
            state.set(status_key, _CLOSED)
    elif status is None:
        state.set(status_key, _OPEN)
    if not (started or submitted):
        return None
    return {
        "service": event["service"],
        "day": _day(event["occurred_at"], tz),
        "started": started,
        "submitted": submitted,
    }


def add_to_day(inc: dict[str, Any], state: Any) -> dict[str, Any]:
    """Step 3 (per ``service|day``): add an increment; returns the day's running totals."""
    totals: dict[str, int] = state.get("totals", {"started": 0, "submitted": 0})
    totals["started"] += inc["started"]
    totals["submitted"] += inc["submitted"]
    state.set("totals", totals)
    return {"service": inc["service"], "day": inc["day"], **totals}


def run_app(
    bootstrap: str,
    topic: str,
    output: str,
    group: str,
    state_dir: Path,
    expected: int,
    timezone: str,
    commit_interval: float,
) -> dict[str, Any]:
    """Run the Quix pipeline over ``topic`` until all ``expected`` events are processed.

    Returns the timing: seconds from ``Application.run`` to its return (group join,
    processing and the final transaction commit), seconds from the first processed
    message, and the message counts per topic.
    """
    from quixstreams import Application

    tz = ZoneInfo(timezone)
    counts: dict[str, int] = defaultdict(int)
    emitted = [0]
    first: list[float] = []

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=str(state_dir),
        commit_interval=commit_interval,
        loglevel="WARNING",
        on_message_processed=lambda t, p, o: on_processed(t),
    )

    def on_processed(t: str) -> None:
        if not first:
            first.append(time.perf_counter())
        counts[t] += 1
        if counts[topic] >= expected and sum(counts.values()) - counts[topic] >= emitted[0]:
            app.stop()

    def step1(value: dict[str, Any], state: Any) -> dict[str, Any] | None:
        inc = journey_increment(value, state, tz)
        if inc is not None:
            emitted[0] += 1
        return inc

    events = app.topic(topic, value_deserializer="json", key_deserializer="bytes")
    out = app.topic(output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(events)
    sdf = sdf.apply(step1, stateful=True)
    sdf = sdf.filter(lambda v: v is not None)
    sdf = sdf.group_by(lambda v: f"{v['service']}|{v['day']}", name="svcday")
    sdf = sdf.apply(add_to_day, stateful=True)
    sdf.to_topic(out, key=lambda v: f"{v['service']}|{v['day']}")
    t0 = time.perf_counter()
    app.run()
    t1 = time.perf_counter()
    return {
        "seconds": t1 - t0,
        "seconds_from_first": t1 - first[0] if first else None,
        "counts": dict(counts),
        "increments": emitted[0],
    }


@dataclass(frozen=True, slots=True)
class PeerResult:
    """The peer's run: as the group referee saw it, and as the peer timed itself."""

    catch_up: CatchUp
    seconds: float
    seconds_from_first: float | None
    counts: dict[str, int]
    increments: int


def run_peer(
    bootstrap: str,
    topic: str,
    output: str,
    group: str,
    state_dir: Path,
    expected: int,
    *,
    timezone: str = "Asia/Yekaterinburg",
    commit_interval: float = 1.0,
    log: Path | None = None,
    timeout: float = 1800.0,
    on_progress: Callable[[int], None] | None = None,
) -> PeerResult:
    """Run the peer in a child process (as our processor runs) until it has committed all.

    Timed by :func:`bench.offsets.watch` on the peer's consumer group, the
    same referee as our processor. Raises ``RuntimeError`` with the tail of the peer's
    log if it fails.
    """
    from bench import offsets
    from contract.settings import CommonSettings

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    end = offsets.end_offsets(settings, topic)
    argv = [
        sys.executable,
        "-m",
        "bench.peer_quix",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--output",
        output,
        "--group",
        group,
        "--state-dir",
        str(state_dir),
        "--expected",
        str(expected),
        "--timezone",
        timezone,
        "--commit-interval",
        str(commit_interval),
    ]
    log = log or state_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)  # noqa: S603 - our own module
        try:
            catch_up = offsets.watch(
                settings,
                topic,
                end,
                group=group,
                procs=[proc],
                exited_ok=True,
                timeout=timeout,
                on_progress=on_progress,
            )
            stdout, _ = proc.communicate(timeout=120)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    lines = [ln for ln in stdout.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"quix peer exited {proc.returncode}; log {log}:\n"
            f"{log.read_text(errors='replace')[-2000:]}"
        )
    return PeerResult(catch_up=catch_up, **json.loads(lines[-1]))


def read_totals(bootstrap: str, output: str) -> dict[tuple[str, str], tuple[int, int]]:
    """The peer's final totals per (service, day), read back ``read_committed``."""
    import kafkaport
    from contract.settings import CommonSettings

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    consumer = kafkaport.connect(settings).consumer(client_id="servicepulse-bench")
    try:
        parts = [kafkaport.TopicPartition(output, p) for p in consumer.partitions_for(output, 30)]
        consumer.assign(dict.fromkeys(parts, kafkaport.BEGINNING))
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3.0:
            recs = consumer.poll(0.5, 10_000)
            if recs:
                idle_since = time.monotonic()
            for rec in recs:
                if rec.value is None:
                    continue
                v = json.loads(rec.value)
                totals[(v["service"], v["day"])] = (v["started"], v["submitted"])
        return totals
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> None:
    """Child-process entry point: run the pipeline, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--expected", type=int, required=True)
    p.add_argument("--timezone", default="Asia/Yekaterinburg")
    p.add_argument("--commit-interval", type=float, default=1.0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run_app(
        a.bootstrap,
        a.topic,
        a.output,
        a.group,
        a.state_dir,
        a.expected,
        a.timezone,
        a.commit_interval,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
