"""Settings of the stream processor (``SERVICEPULSE_*`` environment variables)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar

from pydantic import Field

from contract.settings import CommonSettings


def _default_instance() -> str:
    return socket.gethostname() or "1"


class ProcessorSettings(CommonSettings):
    """What ``servicepulse process`` reads from the environment.

    The transactional id of an instance is ``<group_id>-<instance_id>``: an instance
    restarted with the same id fences its previous incarnation and aborts its open
    transaction at once, so give every instance a stable, unique id (``--instance N``
    locally; the container hostname in compose, the default).
    """

    group_id: str = Field("servicepulse-processor", description="Kafka consumer group")
    instance_id: str = Field(
        default_factory=_default_instance,
        description="stable id of this instance (transactional id suffix); default hostname",
    )
    allowed_lateness: timedelta = Field(
        timedelta(minutes=5), description="watermark = newest event time - this (ISO 8601)"
    )
    dedup_horizon: timedelta = Field(
        timedelta(days=7),
        description="event ids are remembered this long in receive time (the Kafka record "
        "timestamp); closed journeys this long in event time",
    )
    restatement_horizon: timedelta = Field(
        timedelta(days=35),
        gt=timedelta(0),
        description="a day is final once the watermark passed its end plus this (ISO 8601): "
        "until then late events restate it, after it they are counted too_late and the "
        "day's rollups move to <prefix>.days",
    )
    # 100 ms, as Kafka Streams under exactly-once: outputs are invisible until their
    # transaction commits, so this interval is most of the end-to-end latency (at
    # 500 ms the p99 at 2,000 events/s was 0.82 s). Catching up, a transaction runs
    # past it while polls come back full (CATCH_UP_EXTRA_S), so bulk throughput does
    # not pay for the short interval.
    commit_interval: timedelta = Field(
        timedelta(milliseconds=100),
        ge=timedelta(milliseconds=10),
        description="at most this long per transaction while live (ISO 8601)",
    )
    max_batch: int = Field(100_000, ge=1, description="at most this many events per transaction")
    poll_records: int = Field(2_000, ge=1, description="records per consumer poll")
    metrics_port: int = Field(9400, description="port of the processor's /metrics")
    session_timeout: timedelta = Field(
        timedelta(seconds=10),
        ge=timedelta(seconds=6),
        description="consumer group session timeout (ISO 8601)",
    )
    transaction_timeout: timedelta = Field(
        timedelta(minutes=1),
        ge=timedelta(seconds=1),
        description="broker aborts a transaction left open this long (ISO 8601)",
    )
    restore_timeout: timedelta = Field(
        timedelta(minutes=2),
        gt=timedelta(0),
        description="give up a restore that has read no record for this long (ISO 8601)",
    )
    idle_tick: timedelta = Field(
        timedelta(seconds=1),
        ge=timedelta(milliseconds=100),
        description="how often live idle partitions advance with the wall clock (ISO 8601)",
    )

    old_duration_names: ClassVar[Mapping[str, tuple[str, float]]] = {
        "commit_interval": ("COMMIT_INTERVAL_MS", 0.001),
        "session_timeout": ("SESSION_TIMEOUT_MS", 0.001),
        "transaction_timeout": ("TRANSACTION_TIMEOUT_MS", 0.001),
        "restore_timeout": ("RESTORE_TIMEOUT_S", 1.0),
        "idle_tick": ("IDLE_TICK_MS", 0.001),
    }

    @property
    def transactional_id(self) -> str:
        """The transactional id of this instance."""
        return f"{self.group_id}-{self.instance_id}"
