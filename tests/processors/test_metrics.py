"""The processor's own metrics: operational only, never a business family; restores are
counted by the records they read."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from contract.metrics import FAMILIES
from processors.metrics import build_metrics
from processors.settings import ProcessorSettings
from tests.fixtures.kafka import read_topic
from tests.fixtures.streams import generate
from tests.processors.brokerio import new_processor, produce


def test_processor_metrics_are_operational_only() -> None:
    registry = CollectorRegistry()
    m = build_metrics(registry)
    m.events.inc(3)
    m.deadletters.labels("invalid_json").inc()
    m.lag.labels("4").set(17)
    text = generate_latest(registry).decode()
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert all(n.startswith("servicepulse_processor_") for n in names)
    assert not names & {f.full for f in FAMILIES}
    assert registry.get_sample_value("servicepulse_processor_events_total") == 3
    assert (
        registry.get_sample_value(
            "servicepulse_processor_deadletters_total", {"reason": "invalid_json"}
        )
        == 1
    )
    assert registry.get_sample_value("servicepulse_processor_lag_records", {"partition": "4"}) == 17


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_full_restore_counts_every_record_of_the_changelog_and_the_aggregates(
    settings: ProcessorSettings,
) -> None:
    first, first_registry = new_processor(settings)
    produce(settings, first.topics, generate(seed=31, journeys=60))
    first.run_until_caught_up(timeout_s=120)
    # the first owner found empty state topics: 12 partitions restored from nothing
    assert first_registry.get_sample_value("servicepulse_processor_restored_partitions_total") == 12
    for kind in ("changelog", "aggregates"):
        assert _restored(first_registry, kind) == 0

    second, registry = new_processor(settings)
    second.run_until_caught_up(timeout_s=120)
    topics = second.topics
    assert registry.get_sample_value("servicepulse_processor_restored_partitions_total") == 12
    changelog = len(read_topic(settings, topics.changelog))
    aggregates = len(read_topic(settings, topics.aggregates))
    assert changelog > 0 and aggregates > 0
    assert _restored(registry, "changelog") == changelog
    assert _restored(registry, "aggregates") == aggregates
    assert second.stats.restored_records == changelog + aggregates


def _restored(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value(
        "servicepulse_processor_restored_records_total", {"kind": kind}
    )
