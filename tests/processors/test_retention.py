"""Input deleted by retention before it was processed: counted, logged, processing goes on.

A processor that lags behind the events topic's retention (or a topic whose records
carry old timestamps under time retention) finds its committed offset below the log
start: the records in between are gone. The consumer is reset to the log start; the
processor must say how many events were lost (metric and error log), keep its state,
and count every event that is still there exactly once.

Deleting records by hand moves the log start the same way retention does.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from kafkaport import TopicPartition
from processors.settings import ProcessorSettings
from tests.fixtures.streams import Stream, generate
from tests.processors import oracle
from tests.processors.brokerio import materialise, new_processor, produce, summed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STREAM = generate(seed=31, journeys=120)
LOST = 5  # records of partition 0 deleted before they were processed


def test_input_deleted_before_processing_is_counted_and_the_rest_processed_once(
    settings: ProcessorSettings, caplog: pytest.LogCaptureFixture
) -> None:
    half = {p: len(evs) // 2 for p, evs in STREAM.events.items()}
    first = Stream(events={p: evs[: half[p]] for p, evs in STREAM.events.items()})
    second = Stream(events={p: evs[half[p] :] for p, evs in STREAM.events.items()})
    assert len(second.events[0]) > LOST

    proc, _ = new_processor(settings)
    produce(settings, proc.topics, first)
    assert proc.run_until_caught_up(timeout_s=120).events == len(first)

    produce(settings, proc.topics, second)
    tp = TopicPartition(proc.topics.events, 0)
    admin = proc.kafka.admin()
    try:  # what retention does: the log start moves past unprocessed records
        admin.delete_records({tp: half[0] + LOST}, 30)
    finally:
        admin.close()

    proc, registry = new_processor(settings)
    with caplog.at_level(logging.ERROR, logger="processors.runner"):
        stats = proc.run_until_caught_up(timeout_s=120)

    assert stats.retention_lost == LOST
    assert registry.get_sample_value("servicepulse_processor_retention_lost_total") == LOST
    assert any(
        f"offsets {half[0]}-{half[0] + LOST - 1} were deleted by the retention" in r.message
        for r in caplog.records
    ), [r.message for r in caplog.records]
    assert registry.get_sample_value("servicepulse_processor_client_skips_total") == 0
    assert stats.events == len(second) - LOST

    kept = Stream(
        events={
            p: evs[: half[p]] + evs[half[p] + (LOST if p == 0 else 0) :]
            for p, evs in STREAM.events.items()
        }
    )
    cells, gauges = summed(materialise(settings, proc.topics))
    # a lost response leaves its request open (the oracle has no such gauge)
    lost = STREAM.events[0][half[0] : half[0] + LOST]
    unanswered = sum(isinstance(e, dict) and e["type"] == "interagency.responded" for e in lost)
    oracle.assert_matches(kept, cells, gauges, extra_gauges=Counter(interagency_open=unanswered))


def test_a_gap_found_again_after_a_restart_is_counted_once(settings: ProcessorSettings) -> None:
    """A session that restarts before its commit (any session error) starts from the
    same committed offset and finds the same deleted range: it is reported once."""
    proc, registry = new_processor(settings)
    produce(settings, proc.topics, STREAM)
    tp = TopicPartition(proc.topics.events, 0)
    admin = proc.kafka.admin()
    try:
        admin.delete_records({tp: LOST}, 30)
    finally:
        admin.close()
    for _ in range(2):  # two sessions, each finding records from LOST where 0 was next
        session = proc.session()
        try:
            session.check_gap(tp, 0, LOST)
        finally:
            session.close()
    assert registry.get_sample_value("servicepulse_processor_retention_lost_total") == LOST
    assert proc.stats.retention_lost == LOST
