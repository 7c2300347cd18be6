"""Operational metrics of the pipeline that are not business families.

The business families (``contract.metrics.FAMILIES``) are exposed by the API. The stream
processor exposes its own operational metrics on its ``/metrics`` port (issue 3: events/s,
batch and commit time, lag per partition, restore duration, state size, watermark delay).
Their names are not part of ``contract/`` yet, so the rules and dashboards refer to them
only through this table; when the processor settles on names, change them here (or move
the table into ``contract.metrics``) and regenerate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contract.metrics import Kind

#: Prometheus job names, the same locally and in compose.
JOB_API: Final = "servicepulse-api"
JOB_PROCESSOR: Final = "servicepulse-processor"
JOB_PROMETHEUS: Final = "prometheus"


@dataclass(frozen=True, slots=True)
class OpsMetric:
    """A processor metric the rules and dashboards use (full exposed name)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


PROCESSOR_EVENTS: Final = OpsMetric(
    "servicepulse_processor_events_total", "counter", "Input events consumed"
)
PROCESSOR_LAG: Final = OpsMetric(
    "servicepulse_processor_consumer_lag",
    "gauge",
    "Records behind the end of the partition (consumer lag)",
    ("partition",),
)
PROCESSOR_WATERMARK_DELAY: Final = OpsMetric(
    "servicepulse_processor_watermark_delay_seconds",
    "gauge",
    "Wall clock minus the partition's event-time watermark",
    ("partition",),
)
PROCESSOR_BATCH: Final = OpsMetric(
    "servicepulse_processor_batch_duration_seconds", "histogram", "Time to process one batch"
)
PROCESSOR_COMMIT: Final = OpsMetric(
    "servicepulse_processor_commit_duration_seconds",
    "histogram",
    "Time to commit one Kafka transaction",
)
PROCESSOR_RESTORE: Final = OpsMetric(
    "servicepulse_processor_restore_duration_seconds",
    "gauge",
    "Duration of the last state restore from the changelog",
    ("partition",),
)
PROCESSOR_STATE: Final = OpsMetric(
    "servicepulse_processor_state_entries",
    "gauge",
    "Entries held in state, by kind (journeys, cases, appeals, dedup)",
    ("kind",),
)

PROCESSOR_METRICS: Final = (
    PROCESSOR_EVENTS,
    PROCESSOR_LAG,
    PROCESSOR_WATERMARK_DELAY,
    PROCESSOR_BATCH,
    PROCESSOR_COMMIT,
    PROCESSOR_RESTORE,
    PROCESSOR_STATE,
)
