"""A poison event between valid ones, against the real broker (issue 12, item 1).

No contract-valid event makes the engine raise any more, so the fault is injected
through the engine's documented seam: its catalog. The processor runs over a test
catalog whose error-code lookup raises for the code ``poison`` (see docs/RELIABILITY.md,
"Poison events"). Every valid event must be counted once against the oracle, the poison
ones dead-lettered (``processing_error``, the exception's class, no data) and counted
per agency, and the session must never restart.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from contract.methodology import load_methodology
from processors.metrics import build_metrics
from processors.runner import Processor
from processors.settings import ProcessorSettings
from tests.fixtures.streams import CATALOG_PATH, Stream, event, generate
from tests.processors import oracle
from tests.processors.brokerio import materialise, new_processor, produce, read_all, summed
from tests.processors.test_extremes import PoisonCatalog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STREAM = generate(seed=41, journeys=150)


def _poison(near: dict[str, Any], n: int) -> dict[str, Any]:
    at = datetime.fromisoformat(str(near["occurred_at"])) + timedelta(seconds=1)
    return event("journey.error", at, journey=f"poison-{n}", code="poison")


def test_a_poison_event_is_set_aside_and_every_other_event_counted_once(
    settings: ProcessorSettings,
) -> None:
    poisoned = Stream(events={p: list(evs) for p, evs in STREAM.events.items()})
    planted: list[str] = []
    for n, p in enumerate(sorted(poisoned.events)[:2]):
        evs = poisoned.events[p]
        mid = len(evs) // 2
        while not isinstance(evs[mid], dict):
            mid += 1
        near = evs[mid]
        assert isinstance(near, dict)
        ev = _poison(near, n)
        evs.insert(mid + 1, ev)
        planted.append(ev["event_id"])

    registry = CollectorRegistry()
    proc = Processor(
        settings,
        PoisonCatalog.from_file(CATALOG_PATH),
        load_methodology().standards,
        build_metrics(registry),
    )
    produce(settings, proc.topics, poisoned)
    stats = proc.run_until_caught_up(timeout_s=180)
    assert stats.events == len(poisoned)  # input records, the poison ones included

    # every valid event counted once: the aggregates equal the oracle of the clean stream
    cells, gauges = summed(materialise(settings, proc.topics))
    oracle.assert_matches(STREAM, cells, gauges)

    dead = [msgspec.json.decode(v) for _, v in read_all(settings, proc.topics.deadletter) if v]
    isolated = [d for d in dead if d["reason"] == "processing_error"]
    assert sorted(d["event_id"] for d in isolated) == sorted(planted)
    for d in isolated:
        assert (d["agency"], d["error"], d["source"]) == ("soc", "ZeroDivisionError", "processor")
        assert "79123456789" not in str(d)  # the exception's text is never carried
    errors = registry.get_sample_value(
        "servicepulse_processor_processing_errors_total", {"agency": "soc"}
    )
    assert errors == len(planted)
    # no session restart: one session, no aborted transaction
    assert registry.get_sample_value("servicepulse_processor_sessions_total") == 1
    aborted = registry.get_sample_value(
        "servicepulse_processor_transactions_total", {"result": "aborted"}
    )
    assert not aborted


def test_a_year_zero_event_in_the_topic_is_rejected_and_stalls_nothing(
    settings: ProcessorSettings,
) -> None:
    """Item 1 as reported: ``0001-01-01T00:00:00+05:00`` (a .NET ``DateTime.MinValue``
    with a local offset) written by an API of the earlier version; it used to restart
    the session forever."""
    stream = Stream(events={p: list(evs) for p, evs in STREAM.events.items()})
    planted: list[str] = []
    for p in sorted(stream.events)[:3]:
        evs = stream.events[p]
        mid = len(evs) // 2
        while not isinstance(evs[mid], dict):
            mid += 1
        near = evs[mid]
        assert isinstance(near, dict)
        ev = dict(_poison(near, p))
        ev.update(occurred_at="0001-01-01T00:00:00+05:00", attrs={"code": "esia_timeout"})
        evs.insert(mid + 1, msgspec.json.encode(ev))
        planted.append(ev["event_id"])
    proc, registry = new_processor(settings)
    produce(settings, proc.topics, stream)
    proc.run_until_caught_up(timeout_s=120)

    cells, gauges = summed(materialise(settings, proc.topics))
    oracle.assert_matches(STREAM, cells, gauges)
    dead = [msgspec.json.decode(v) for _, v in read_all(settings, proc.topics.deadletter) if v]
    early = [d for d in dead if d["reason"] == "too_early"]
    assert sorted(d["event_id"] for d in early) == sorted(planted)
    assert registry.get_sample_value("servicepulse_processor_sessions_total") == 1
