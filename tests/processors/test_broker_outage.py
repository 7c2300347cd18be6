"""The processor started while its broker is unreachable keeps trying (the reconnect
policy of kafkaport.reconnect: a logged failure, a pause, another attempt) and, once the
broker is back, processes the whole stream with totals equal to one clean pass."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from processors.runner import RunStats
from tests.fixtures.kafka import Broker, make_topics
from tests.fixtures.streams import generate
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

    private_broker.process.stop()
    stats: list[RunStats] = []
    runner = threading.Thread(
        target=lambda: stats.append(proc.run_until_caught_up(timeout_s=300)), daemon=True
    )
    with caplog.at_level(logging.WARNING, logger="kafkaport.reconnect"):
        runner.start()
        # a session cannot open without a broker: the policy logs the failure and retries
        deadline = time.monotonic() + 120  # a bound for a busy machine, not a speed
        while not any("processor session failed" in r.getMessage() for r in caplog.records):
            assert runner.is_alive(), "the processor gave up while the broker was down"
            assert time.monotonic() < deadline, "no failed attempt was logged"
            time.sleep(0.2)
        assert not stats and registry.get_sample_value("servicepulse_processor_sessions_total") == 0
        private_broker.process.start()
        runner.join(330)
    assert stats, "the processor did not resume and catch up after the broker returned"
    failures = [r.getMessage() for r in caplog.records if "processor session" in r.getMessage()]
    assert "failure 1 in a row" in failures[0] and "next attempt in" in failures[0]
    assert stats[0].events == sum(len(v) for v in STREAM.events.values())

    cells, gauges = summed(materialise(settings, topics))
    want, want_gauges = oracle.expected(STREAM)
    got = oracle.flatten(cells)
    diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
    assert not diff, f"cells differ from the oracle (want, got): {list(diff.items())[:5]}"
    assert {k: v for k, v in gauges.items() if v} == dict(want_gauges)
