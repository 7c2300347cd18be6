"""Settings of the stream processor (``SERVICEPULSE_*`` environment variables)."""

from __future__ import annotations

import socket
from datetime import timedelta

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
    commit_interval_ms: int = Field(500, ge=10, description="at most this long per transaction")
    max_batch: int = Field(100_000, ge=1, description="at most this many events per transaction")
    poll_records: int = Field(2_000, ge=1, description="records per consumer poll")
    metrics_port: int = Field(9400, description="port of the processor's /metrics")
    session_timeout_ms: int = Field(10_000, ge=6_000, description="consumer group session timeout")
    transaction_timeout_ms: int = Field(
        60_000, ge=1_000, description="broker aborts a transaction left open this long"
    )
    restore_timeout_s: float = Field(
        120.0, gt=0, description="give up a restore that has read no record for this long"
    )
    idle_tick_ms: int = Field(
        1_000, ge=100, description="how often live idle partitions advance with the wall clock"
    )

    @property
    def transactional_id(self) -> str:
        """The transactional id of this instance."""
        return f"{self.group_id}-{self.instance_id}"
