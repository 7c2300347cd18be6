"""Operational metrics of the pipeline that are not business families.

The business families (``contract.metrics.FAMILIES``) are exposed by the API. The stream
processor (``processors/metrics.py``) and the API (``api/exposition.py``) also expose
their own operational metrics; those names are not in ``contract/``, and ``dashboards``
may not import the components, so the rules and dashboards refer to them through this
table. ``tests/dashboards/test_pipeline_names.py`` fails when it drifts from the components' own
metric definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contract.metrics import MetricKind

#: Prometheus job names, the same locally and in compose.
JOB_API: Final = "servicepulse-api"
JOB_PROCESSOR: Final = "servicepulse-processor"
JOB_PROMETHEUS: Final = "prometheus"


@dataclass(frozen=True, slots=True)
class OpsMetric:
    """A processor metric the rules and dashboards use (full exposed name)."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


PROCESSOR_EVENTS: Final = OpsMetric(
    "servicepulse_processor_events_total", "counter", "Input records processed"
)
PROCESSOR_DEADLETTERS: Final = OpsMetric(
    "servicepulse_processor_deadletters_total",
    "counter",
    "Input records sent to the dead-letter topic, by reason",
    ("reason",),
)
PROCESSOR_TRANSACTIONS: Final = OpsMetric(
    "servicepulse_processor_transactions_total", "counter", "Transactions by result", ("result",)
)
PROCESSOR_LAG: Final = OpsMetric(
    "servicepulse_processor_lag_records",
    "gauge",
    "Records behind the end of each assigned input partition",
    ("partition",),
)
PROCESSOR_WATERMARK_DELAY: Final = OpsMetric(
    "servicepulse_processor_watermark_delay_seconds",
    "gauge",
    "Wall clock minus the event-time watermark, per assigned partition",
    ("partition",),
)
PROCESSOR_BATCH: Final = OpsMetric(
    "servicepulse_processor_batch_seconds", "histogram", "Time to process one batch"
)
PROCESSOR_COMMIT: Final = OpsMetric(
    "servicepulse_processor_commit_seconds", "histogram", "Time to commit one transaction"
)
PROCESSOR_RESTORE: Final = OpsMetric(
    "servicepulse_processor_restore_seconds",
    "histogram",
    "Time to restore the state of newly assigned partitions",
)
PROCESSOR_STATE: Final = OpsMetric(
    "servicepulse_processor_state_entries", "gauge", "State held in memory, by kind", ("kind",)
)
PROCESSOR_PARTITIONS: Final = OpsMetric(
    "servicepulse_processor_assigned_partitions", "gauge", "Input partitions assigned"
)
PROCESSOR_RETENTION_LOST: Final = OpsMetric(
    "servicepulse_processor_retention_lost_total",
    "counter",
    "Input offsets the events topic's retention deleted before they were processed",
)
PROCESSOR_PROCESSING_ERRORS: Final = OpsMetric(
    "servicepulse_processor_processing_errors_total",
    "counter",
    "Valid events the processor raised on and set aside, by agency",
    ("agency",),
)
PROCESSOR_SESSIONS: Final = OpsMetric(
    "servicepulse_processor_sessions_total",
    "counter",
    "Kafka sessions started (a restart after a failure starts a new one)",
)

PROCESSOR_METRICS: Final = (
    PROCESSOR_EVENTS,
    PROCESSOR_DEADLETTERS,
    PROCESSOR_TRANSACTIONS,
    PROCESSOR_LAG,
    PROCESSOR_WATERMARK_DELAY,
    PROCESSOR_BATCH,
    PROCESSOR_COMMIT,
    PROCESSOR_RESTORE,
    PROCESSOR_STATE,
    PROCESSOR_PARTITIONS,
    PROCESSOR_RETENTION_LOST,
    PROCESSOR_PROCESSING_ERRORS,
    PROCESSOR_SESSIONS,
)

API_REQUESTS: Final = OpsMetric(
    "servicepulse_api_requests_total",
    "counter",
    "HTTP requests by route template, method and status",
    ("route", "method", "status"),
)
API_LATENCY: Final = OpsMetric(
    "servicepulse_api_request_duration_seconds",
    "histogram",
    "HTTP request latency by route template and method",
    ("route", "method"),
)
API_INGEST: Final = OpsMetric(
    "servicepulse_api_ingest_events_total",
    "counter",
    "Events received by POST /v1/events, by result",
    ("result",),
)
API_READMODEL_READY: Final = OpsMetric(
    "servicepulse_api_readmodel_ready", "gauge", "1 once the read model caught up with Kafka"
)
API_READMODEL_LAG: Final = OpsMetric(
    "servicepulse_api_readmodel_lag_records",
    "gauge",
    "Records between the read model and the end offsets seen at start",
)

API_BUSINESS_WITHHELD: Final = OpsMetric(
    "servicepulse_api_business_withheld",
    "gauge",
    "1 while the business families are left out of /metrics (read model catching up)",
)
API_BUSINESS_SERIES: Final = OpsMetric(
    "servicepulse_api_business_series",
    "gauge",
    "Series of the business families, by family",
    ("family",),
)
API_BUSINESS_SERIES_BUDGET: Final = OpsMetric(
    "servicepulse_api_business_series_budget",
    "gauge",
    "Most series a business family can have for the catalog",
    ("family",),
)

API_METRICS: Final = (
    API_REQUESTS,
    API_LATENCY,
    API_INGEST,
    API_READMODEL_READY,
    API_READMODEL_LAG,
    API_BUSINESS_WITHHELD,
    API_BUSINESS_SERIES,
    API_BUSINESS_SERIES_BUDGET,
)

#: Russian names of the values of the processor's own closed-set labels, shown on the
#: pipeline dashboard in place of the codes (``tests/dashboards/test_pipeline_names.py``
#: checks they are the values the processor writes).
TRANSACTION_RESULTS_RU: Final = {
    "committed": "транзакции зафиксированы",
    "aborted": "транзакции отменены",
}
STATE_KINDS_RU: Final = {
    "journeys": "заявления",
    "closed_journeys": "закрытые заявления",
    "cases": "случаи жизненных ситуаций",
    "appeals": "жалобы",
    "requests": "межведомственные запросы",
    "event_ids": "идентификаторы событий для отсева повторов",
    "rollup_cells": "ячейки сводок",
    "rollup_days": "дни сводок",
    "timers": "таймеры",
}
