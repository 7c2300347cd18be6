"""The processor and the API's read model started while their broker is unreachable keep
trying (the reconnect policy of kafkaport.reconnect: a logged failure, a pause, another
attempt) and, once the broker is back, the processor processes the whole stream with
totals equal to one clean pass and the read model serves those totals."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from api.readmodel import ReadModel
from contract.catalog import Catalog
from processors.runner import RunStats
from tests.fixtures.kafka import Broker, make_topics
from tests.fixtures.streams import CATALOG_PATH, generate
from tests.processors import oracle
from tests.processors.brokerio import (
    materialise,
    new_processor,
    processor_settings,
    produce,
    summed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

STREAM = generate(seed=31, journeys=60)


def test_the_processor_resumes_once_an_unreachable_broker_returns(
    private_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    assert private_broker.process is not None
    topics, common = make_topics(private_broker)
    settings = processor_settings(topics, common)
    produce(settings, topics, STREAM)
    proc, registry = new_processor(settings)
    model = ReadModel(settings, topics, Catalog.from_file(CATALOG_PATH))

    private_broker.process.stop()
    stats: list[RunStats] = []
    runner = threading.Thread(
        target=lambda: stats.append(proc.run_until_caught_up(timeout_s=300)), daemon=True
    )
    with caplog.at_level(logging.WARNING, logger="kafkaport.reconnect"):
        runner.start()
        model.start()
        # a session cannot open without a broker: the policy logs the failure and retries
        deadline = time.monotonic() + 120  # a bound for a busy machine, not a speed
        while not any("processor session failed" in r.getMessage() for r in caplog.records):
            assert runner.is_alive(), "the processor gave up while the broker was down"
            assert time.monotonic() < deadline, "no failed attempt was logged"
            time.sleep(0.2)
        assert not stats and registry.get_sample_value("servicepulse_processor_sessions_total") == 0
        # the read model's first attempt gives up after 10 s, the processor's after 30 s
        deadline = time.monotonic() + 60
        while not any("read model consumer failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the read model logged no failed attempt"
            time.sleep(0.2)
        private_broker.process.start()
        runner.join(330)
    assert stats, "the processor did not resume and catch up after the broker returned"
    failures = [r.getMessage() for r in caplog.records if "processor session" in r.getMessage()]
    assert "failure 1 in a row" in failures[0] and "next attempt in" in failures[0]
    assert stats[0].events == sum(len(v) for v in STREAM.events.values())

    cells, gauges = summed(materialise(settings, topics))
    oracle.assert_matches(STREAM, cells, gauges)

    # the read model, started in the outage too, serves what the processor committed
    started = sum(r.started for r in cells.values())
    assert started > 0
    deadline = time.monotonic() + 120
    try:
        while not model.status.ready or sum(r.started for _, r in model.totals()) != started:
            assert time.monotonic() < deadline, (
                f"read model did not resume: {model.status}, "
                f"{sum(r.started for _, r in model.totals())} of {started} journeys started"
            )
            time.sleep(0.2)
    finally:
        model.stop()
