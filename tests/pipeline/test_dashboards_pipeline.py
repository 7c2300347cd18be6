"""Every dashboard query returns data from the real pipeline fed by the real simulator.

Kafka (the session broker) -> ``servicepulse process`` (a subprocess) -> the API
(``api.app.create_app`` under uvicorn) -> a Prometheus of this module's own with the
generated rules, scraping the API, the processor and one target that is down. The
simulator replays five weeks of event time in about two minutes, so decisions, deadlines,
appeals and their 30-day term all happen while Prometheus watches. What the simulator
never sends is injected as a faulty source would: events for a service the agency does
not have (rejected), repeats of events already sent (duplicates), second decisions
for decided journeys (late) and portal forms submitted without their steps (skipped
steps: the simulator always sends every step, so that panel's data otherwise came only
from processing-order effects that depend on timing - a run without burners had none).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.events import Event, decode_event, event_key
from contract.settings import CommonSettings
from contract.topics import Topics
from dashboards import pipeline
from dashboards import rules as R
from kafkaport import Producer, TopicPartition, connect
from kafkaport.topics import delete_topics
from servicepulse import stack
from tests.fixtures.api import api_settings, event, running_api
from tests.fixtures.kafka import Broker, make_topics, read_topic
from tests.fixtures.panels import MODELS, missing_data
from tests.fixtures.prometheus import PromServer, start_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Event time replayed: more than the 30-day appeal term, so overdue appeals exist.
DAYS = 35
ACCELERATE = 30_000.0
RATE = 0.02  # events per second of event time: ~60k events in all
LIVE_RATE = 5.0  # a second simulator keeps live traffic flowing for the rate panels
#: Seconds of wall clock the replay takes when the simulator keeps up (about 100).
REPLAY_NOMINAL = DAYS * 86_400 / ACCELERATE
#: Bound on the replay: the simulator falls behind its schedule when it gets little CPU,
#: and then sends the overdue events as fast as it can. Ten times the schedule is far
#: beyond the loaded runs measured (106 s with the tests held to half a CPU beside two
#: burners); a simulator that stalls is still caught.
REPLAY_BOUND = 10 * REPLAY_NOMINAL
#: Bound on the processor committing the whole replay once it is written (60k events: a
#: few seconds idle; its lag is what a busy CPU stretches).
CATCH_UP_BOUND = 300.0
#: Seconds for every query to have data once the pipeline holds the whole replay: the
#: API's read model, 5-second scrapes, rules evaluated every second and 1-minute rate
#: windows, so about a minute idle; the rest is slack for scrapes that a busy CPU slows.
DEADLINE = 420.0
#: The live simulator's own stop, in case the fixture's cleanup never runs: past every
#: bound above, so live traffic flows until the last panel check.
LIVE_FOR = REPLAY_BOUND + CATCH_UP_BOUND + DEADLINE + 120
#: A 5-second scrape: rendering the real read model takes longer than a 1-second timeout.
SCRAPE = "5s"
#: A short dashboard range as Grafana would set it for a scrape interval of 5 s.
BUILTINS = {"__range": "1h", "__rate_interval": "1m", "__interval": "15s"}


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for_decisions(settings: CommonSettings, topics: Topics, want: int) -> None:
    """Poll until the events topic holds ``want`` decisions (the late events copy them).

    The replay sends its first decisions a few seconds after it starts on an idle
    machine; how many seconds depends on how soon the simulator gets the CPU.
    """
    deadline = time.monotonic() + REPLAY_BOUND
    while True:
        decisions = sum(
            1
            for r in read_topic(settings, topics.events)
            if r.value is not None and json.loads(r.value)["type"] == "decision.made"
        )
        if decisions >= want:
            return
        assert time.monotonic() < deadline, (
            f"the replay wrote {decisions} decisions within {REPLAY_BOUND:.0f}s, want {want}"
        )
        time.sleep(2)


def _wait_replayed(
    settings: CommonSettings, topics: Topics, replay: stack.ManagedProcess, group: str
) -> None:
    """Wait until the replay simulator is done and the processor committed all it wrote.

    The replay ends by itself when its event time reaches the moment it started (it is an
    accelerated backfill); the live simulator goes on, so the processor is checked
    against the end offsets as they were when the replay ended, not a moving end.
    """
    deadline = time.monotonic() + REPLAY_BOUND
    while replay.running():
        assert time.monotonic() < deadline, f"the replay did not end within {REPLAY_BOUND:.0f}s"
        time.sleep(1)
    consumer = connect(settings).consumer(
        client_id="test-lag", group_id=group, isolation="read_uncommitted"
    )
    try:
        tps = [
            TopicPartition(topics.events, q)
            for q in sorted(consumer.partitions_for(topics.events, 30))
        ]
        ends = {tp: end for tp, (_, end) in consumer.watermarks(tps, 30).items()}
        deadline = time.monotonic() + CATCH_UP_BOUND
        while True:
            committed = consumer.committed(tps, 30)
            behind = sum(max(0, end - (committed[tp] or 0)) for tp, end in ends.items())
            if behind == 0:
                return
            assert time.monotonic() < deadline, (
                f"the processor is {behind} events behind the replay after {CATCH_UP_BOUND:.0f}s"
            )
            time.sleep(1)
    finally:
        consumer.close()


def _send(producer: Producer, topics: Topics, ev: dict[str, Any]) -> None:
    """Send one event under its canonical key: under any other key the processor
    dead-letters it as ``wrong_key`` and never counts what it was injected for."""
    raw = json.dumps(ev).encode()
    decoded = decode_event(raw)
    assert isinstance(decoded, Event), decoded
    producer.send(topics.events, raw, event_key(decoded))


def _inject_faults(settings: CommonSettings, topics: Topics) -> dict[str, int]:
    """Rejected, duplicate and late events, and forms submitted without their steps, as a
    faulty agency system would send them."""
    _wait_for_decisions(settings, topics, 20)
    producer = connect(settings).producer(client_id="test-faults")
    counts = {"rejected": 0, "duplicate": 0, "late": 0, "skipped_steps": 0}
    try:
        for _ in range(20):
            _send(producer, topics, event(agency="minsoc", service="no_such_service"))
            counts["rejected"] += 1
        now = datetime.now(UTC)
        for _ in range(5):
            started = event(occurred_at=now - timedelta(seconds=30))
            _send(producer, topics, started)
            _send(producer, topics, event("journey.submitted", journey=started["journey"]))
            counts["skipped_steps"] += 1
        for record in read_topic(settings, topics.events):
            if record.value is None:
                continue
            if counts["duplicate"] < 200:
                producer.send(topics.events, record.value, record.key)
                counts["duplicate"] += 1
            ev = json.loads(record.value)
            if ev["type"] == "decision.made" and counts["late"] < 20:
                again = {**ev, "event_id": str(uuid.uuid4())}
                producer.send(topics.events, json.dumps(again).encode(), record.key)
                counts["late"] += 1
            if counts["duplicate"] >= 200 and counts["late"] >= 20:
                break
        producer.flush(30)
    finally:
        producer.close(5)
    return counts


@pytest.fixture(scope="module")
def real_pipeline(
    kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PromServer]:
    topics, common = make_topics(kafka_broker)
    tmp = tmp_path_factory.mktemp("pipeline")
    env = {
        "SERVICEPULSE_KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "SERVICEPULSE_TOPIC_PREFIX": topics.prefix,
        "SERVICEPULSE_GROUP_ID": f"{topics.prefix}-processor",
        "SERVICEPULSE_STACK_DIR": str(tmp),
        # The replay's first day is DAYS back in UTC: with the default 35-day horizon it
        # is already final in the region's time zone (UTC+5) from 19:00 UTC on, and its
        # events (the injected duplicates among them) would count only as too_late.
        "SERVICEPULSE_RESTATEMENT_HORIZON": f"P{DAYS + 5}D",
        "PYTHONUNBUFFERED": "1",
    }
    metrics_port = stack.free_port()
    processor = stack.ManagedProcess(
        "processor",
        tmp,
        argv=[
            sys.executable,
            "-m",
            "servicepulse",
            "process",
            "--metrics-port",
            str(metrics_port),
            "--instance",
            "1",
        ],
        env=env,
        ready=lambda: _http_ok(f"http://127.0.0.1:{metrics_port}/metrics"),
        ready_timeout=90,
    )
    start = (datetime.now(UTC) - timedelta(days=DAYS)).date().isoformat()
    simulator = stack.ManagedProcess(
        "simulator",
        tmp,
        argv=[
            sys.executable,
            "-m",
            "servicepulse",
            "simulate",
            "--target",
            "kafka",
            "--from",
            start,
            "--accelerate",
            str(ACCELERATE),
            "--rate",
            str(RATE),
            "--seed",
            "20260601",
            "--quiet",
            "--duration",
            str(REPLAY_BOUND + 60),
        ],
        env=env,
        ready_timeout=5,
    )
    live = stack.ManagedProcess(
        "simulator-live",
        tmp,
        argv=[
            sys.executable,
            "-m",
            "servicepulse",
            "simulate",
            "--target",
            "kafka",
            "--rate",
            str(LIVE_RATE),
            "--warmup-hours",
            "0",
            "--seed",
            "7",
            "--quiet",
            "--duration",
            str(LIVE_FOR),
        ],
        env=env,
        ready_timeout=5,
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(
            delete_topics,
            connect(common),
            [topics.events, topics.changelog, topics.aggregates, topics.deadletter],
        )
        try:
            processor.start()
        except stack.StackError as exc:
            pytest.fail(f"processor did not start: {exc}", pytrace=False)
        cleanup.callback(processor.stop)
        api = cleanup.enter_context(running_api(api_settings(common, tmp)))
        # Stopped before the API, so no scrape is cut off by the API's shutdown.
        prometheus = start_prometheus(tmp / "prometheus", scrape_interval=SCRAPE)
        cleanup.callback(prometheus.process.stop)
        down = f"127.0.0.1:{stack.free_port()}"
        prometheus.scrape(
            {
                pipeline.JOB_API: [api.url.removeprefix("http://")],
                pipeline.JOB_PROCESSOR: [f"127.0.0.1:{metrics_port}", down],
            }
        )
        for sim in (simulator, live):
            sim.start()
            cleanup.callback(sim.stop)
        counts = _inject_faults(common, topics)
        assert counts == {"rejected": 20, "duplicate": 200, "late": 20, "skipped_steps": 5}, counts
        _wait_replayed(common, topics, simulator, env["SERVICEPULSE_GROUP_ID"])
        yield prometheus


def test_every_panel_returns_data_from_the_real_pipeline(real_pipeline: PromServer) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        missing = [
            m
            for uid in MODELS
            for m in missing_data(real_pipeline, uid, first=False, builtins=BUILTINS)
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert missing == [], f"{len(missing)} queries without data:\n" + "\n".join(missing)


def test_index_has_a_value_for_the_region(real_pipeline: PromServer) -> None:
    for w in ("1d", "7d", "30d"):
        [sample] = real_pipeline.wait_for(R.index(R.REGION, w), timeout=60)
        assert 0 < float(sample["value"][1]) <= 100


def test_forms_submitted_without_their_steps_are_counted(real_pipeline: PromServer) -> None:
    # the five injected forms of minsoc's large_family_status on the portal; the simulator
    # sends every step, so processing-order effects add at most a few more
    expr = (
        "sum(servicepulse_journeys_skipped_steps_total"
        '{agency="minsoc", service="large_family_status", channel="portal"}) >= 5'
    )
    real_pipeline.wait_for(expr, timeout=DEADLINE)
