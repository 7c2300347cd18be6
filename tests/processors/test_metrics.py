"""The processor's own metrics: operational only, never a business family."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from contract.metrics import FAMILIES
from processors.metrics import build_metrics


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
