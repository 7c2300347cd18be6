"""kafka-python's repeated errors are held back, not lost (issue 16: one line made up
2,325 of a test log's 2,928)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from kafkaport.kafkapython import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster_log(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[logging.Logger, Clock]]:
    clock = Clock()
    log = logging.getLogger("tests.kafka.cluster")
    repeats = RepeatFilter(every_s=60.0, clock=clock)
    log.addFilter(repeats)
    caplog.set_level(logging.INFO, logger=log.name)
    yield log, clock
    log.removeFilter(repeats)


def test_a_repeated_error_shows_once_a_minute_with_the_count_held_back(
    cluster_log: tuple[logging.Logger, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, clock = cluster_log
    for _ in range(480):  # a minute of metadata retries every 125 ms
        log.error("Topic %s not found in cluster metadata", "sp-abc.events")
        clock.now += 0.125
    log.error("Topic %s not found in cluster metadata", "sp-abc.events")
    assert [r.getMessage() for r in caplog.records] == [
        "Topic sp-abc.events not found in cluster metadata",
        "Topic sp-abc.events not found in cluster metadata (479 more like it in the last 60 s)",
    ]


def test_other_topics_other_errors_and_info_lines_are_not_held_back(
    cluster_log: tuple[logging.Logger, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = cluster_log
    for _ in range(3):
        log.error("Topic %s not found in cluster metadata", "sp-abc.events")
        log.error("Topic %s not found in cluster metadata", "sp-xyz.events")
        log.error("Topic %s is not authorized for this client", "sp-abc.events")
        log.info("Updated cluster metadata")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Updated cluster metadata") == 3
    assert len(messages) == 3 + 3
    assert "Topic sp-xyz.events not found in cluster metadata" in messages
    assert "Topic sp-abc.events is not authorized for this client" in messages


def test_kafka_pythons_own_loggers_have_the_filter() -> None:
    for name in ("kafka.cluster", "kafka.client", "kafka.conn"):
        assert any(isinstance(f, RepeatFilter) for f in logging.getLogger(name).filters), name
