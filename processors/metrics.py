"""The processor's operational metrics (its own ``/metrics`` port).

Only how the processor itself is doing: throughput, batch and commit time, lag,
restore time, state size, watermark delay, dead letters. Business counters are never
exposed per instance (DESIGN.md section 1): a partition moving between instances would
make them jump; the API exposes them from the aggregates topic instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class ProcessorMetrics:
    """Holder of the processor's metric objects (built by :func:`build_metrics`)."""

    events: Counter
    deadletters: Counter
    records_out: Counter
    transactions: Counter
    batch_seconds: Histogram
    commit_seconds: Histogram
    restore_seconds: Histogram
    restored_records: Counter
    restored_partitions: Counter
    lag: Gauge
    watermark_delay: Gauge
    state_entries: Gauge
    assigned_partitions: Gauge
    sessions: Counter
    skips: Counter
    retention_lost: Counter
    processing_errors: Counter
    days_closed: Counter


def build_metrics(registry: CollectorRegistry) -> ProcessorMetrics:
    """Create the processor's metrics in ``registry``."""
    p = "servicepulse_processor_"
    return ProcessorMetrics(
        events=Counter(
            p + "events", "Input records processed (valid, duplicates included)", registry=registry
        ),
        deadletters=Counter(
            p + "deadletters",
            "Input records sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        ),
        records_out=Counter(
            p + "records_out",
            "Records written in committed transactions, by topic kind",
            ["kind"],
            registry=registry,
        ),
        transactions=Counter(
            p + "transactions", "Transactions by result", ["result"], registry=registry
        ),
        batch_seconds=Histogram(
            p + "batch_seconds",
            "Time to process one transaction's records (decode, validate, apply)",
            buckets=_FAST,
            registry=registry,
        ),
        commit_seconds=Histogram(
            p + "commit_seconds",
            "Time to write outputs, offsets and commit one transaction",
            buckets=_FAST,
            registry=registry,
        ),
        restore_seconds=Histogram(
            p + "restore_seconds",
            "Time to restore the state of newly assigned partitions",
            buckets=_SLOW,
            registry=registry,
        ),
        restored_records=Counter(
            p + "restored_records",
            "Records read by restores (of newly assigned partitions, and of the owned ones "
            "after a refused commit), by topic kind (changelog, aggregates)",
            ["kind"],
            registry=registry,
        ),
        restored_partitions=Counter(
            p + "restored_partitions",
            "Input partitions whose state was restored from Kafka (a partition restored "
            "twice counts twice)",
            registry=registry,
        ),
        lag=Gauge(
            p + "lag_records",
            "Records behind the end of each assigned input partition",
            ["partition"],
            registry=registry,
        ),
        watermark_delay=Gauge(
            p + "watermark_delay_seconds",
            "Wall clock minus the event-time watermark, per assigned partition",
            ["partition"],
            registry=registry,
        ),
        state_entries=Gauge(
            p + "state_entries",
            "State held in memory, by kind (journeys, cases, appeals, requests, event_ids, "
            "rollup_cells, rollup_days, timers)",
            ["kind"],
            registry=registry,
        ),
        assigned_partitions=Gauge(
            p + "assigned_partitions", "Input partitions assigned", registry=registry
        ),
        sessions=Counter(
            p + "sessions",
            "Kafka sessions started (a restart after a failure starts a new one)",
            registry=registry,
        ),
        skips=Counter(
            p + "client_skips",
            "Times the Kafka client skipped input records, caught before a commit (the "
            "session restarted from the last commit)",
            registry=registry,
        ),
        retention_lost=Counter(
            p + "retention_lost",
            "Input offsets the events topic's retention deleted before they were processed "
            "(events lost; raise the topic's retention.ms or fix the processor's lag)",
            registry=registry,
        ),
        processing_errors=Counter(
            p + "processing_errors",
            "Valid events the processor raised on while applying them, by agency: each was "
            "set aside to the dead-letter topic (reason processing_error) and the batch went on",
            ["agency"],
            registry=registry,
        ),
        days_closed=Counter(
            p + "days_closed",
            "Closed days written to <prefix>.days in committed transactions (one record per "
            "day, input partition and agency, once the day is past the restatement horizon)",
            registry=registry,
        ),
    )
