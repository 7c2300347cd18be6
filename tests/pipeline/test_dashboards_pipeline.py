"""Every dashboard query returns data from the real pipeline fed by the real simulator.

Kafka (the session broker) -> ``servicepulse process`` (a subprocess) -> the API
(``api.app.create_app`` under uvicorn) -> a Prometheus of this module's own with the
generated rules, scraping the API, the processor and one target that is down. The
simulator replays five weeks of event time in about two minutes, so decisions, deadlines,
appeals and their 30-day term all happen while Prometheus watches. What the simulator
never sends is injected as a faulty source would: events for a service the agency does
not have (rejected), repeats of events already sent (duplicates) and second decisions
for decided journeys (late).
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

import httpx
import pytest

from contract.settings import CommonSettings
from contract.topics import Topics
from dashboards import pipeline
from dashboards import rules as R
from kafkaport import connect
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
DEADLINE = 420.0  # seconds for every query to have data
#: A 5-second scrape: rendering the real read model takes longer than a 1-second timeout.
SCRAPE = "5s"
#: A short dashboard range as Grafana would set it for a scrape interval of 5 s.
BUILTINS = {"__range": "1h", "__rate_interval": "1m", "__interval": "15s"}


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _inject_faults(settings: CommonSettings, topics: Topics) -> dict[str, int]:
    """Rejected, duplicate and late events, as a faulty agency system would send them."""
    producer = connect(settings).producer(client_id="test-faults")
    counts = {"rejected": 0, "duplicate": 0, "late": 0}
    try:
        for _ in range(20):
            bad = event(agency="minsoc", service="no_such_service")
            producer.send(topics.events, json.dumps(bad).encode(), bad["journey"].encode())
            counts["rejected"] += 1
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
            str(DEADLINE + 60),
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
            str(DEADLINE + 60),
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
        time.sleep(10)  # let real traffic reach the topic before the faults
        counts = _inject_faults(common, topics)
        assert counts == {"rejected": 20, "duplicate": 200, "late": 20}, counts
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
