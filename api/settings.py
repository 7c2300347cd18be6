"""Settings of the API service (``SERVICEPULSE_*`` environment variables).

The app factory takes one :class:`ApiSettings`; ``servicepulse serve`` builds it from the
environment. Defaults suit the local stack: tokens and the read-model snapshot live under
the stack directory (``SERVICEPULSE_STACK_DIR``, default ``.servicepulse``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from contract.errors import ConfigError
from contract.settings import CommonSettings

MIB = 1024 * 1024


def _data_dir() -> Path:
    return Path(os.environ.get("SERVICEPULSE_STACK_DIR", ".servicepulse")) / "api-data"


class ApiSettings(CommonSettings):
    """What the API needs besides Kafka, topics and catalog."""

    api_host: str = Field("127.0.0.1", description="address `servicepulse serve` binds")
    api_port: int = Field(8000, ge=1, le=65535, description="port `servicepulse serve` binds")
    token_db: Path = Field(
        default_factory=lambda: _data_dir() / "tokens.db",
        description="SQLite file of API tokens (hashed)",
    )
    readmodel_snapshot: Path | None = Field(
        default_factory=lambda: _data_dir() / "readmodel.snapshot",
        description="file the read model is snapshotted to for cheap restarts; empty: none",
    )
    snapshot_interval: timedelta = Field(
        timedelta(seconds=30), gt=timedelta(0), description="snapshot period (ISO 8601)"
    )
    checkpoint_interval: timedelta = Field(
        timedelta(minutes=10),
        ge=timedelta(0),
        description="how often the API publishes its snapshot as the read model's checkpoint "
        "on <prefix>.readmodel, which a restart without a snapshot starts from (ISO 8601); "
        "PT0S: never",
    )
    max_body_bytes: int = Field(MIB, ge=1024, description="largest ingest request body")
    max_events: int = Field(1000, ge=1, description="most events in one ingest request")
    rate_limit_events_per_second: float = Field(
        2000.0, ge=0, description="sustained events/s per agency token; 0 disables the limit"
    )
    rate_limit_burst: int = Field(
        10_000, ge=1, description="events a token may send at once before the rate applies"
    )
    max_inflight_events: int = Field(
        50_000, ge=1, description="events produced and not yet acknowledged, over all requests"
    )
    backpressure_wait: timedelta = Field(
        timedelta(seconds=1),
        ge=timedelta(0),
        description="how long a request waits for in-flight room before a 503 (ISO 8601)",
    )
    request_timeout: timedelta = Field(
        timedelta(seconds=10),
        gt=timedelta(0),
        description="how long ingest waits for Kafka acknowledgements (ISO 8601)",
    )
    kafka_retry_after: timedelta = Field(
        timedelta(seconds=5),
        ge=timedelta(seconds=1),
        description="Retry-After sent when Kafka is unavailable (ISO 8601, whole seconds sent)",
    )
    dedup_cache_size: int = Field(
        200_000,
        ge=0,
        description="recent event ids remembered to answer 'duplicate' (24 bytes each, "
        "allocated at start)",
    )
    body_timeout: timedelta = Field(
        timedelta(seconds=30),
        gt=timedelta(0),
        description="how long a client may take to send a request body before a 408 (ISO 8601)",
    )
    max_concurrent_ingest: int = Field(
        64, ge=1, description="ingest requests handled at once; more are answered 503"
    )
    max_concurrent_ingest_per_token: int = Field(
        8,
        ge=1,
        description="ingest requests of one token at once (their bodies being read "
        "included); more are answered 429",
    )
    max_inflight_events_per_token: int = Field(
        10_000, ge=1, description="events of one token produced and not yet acknowledged"
    )
    header_timeout: timedelta = Field(
        timedelta(seconds=10),
        gt=timedelta(0),
        description="a request's headers must arrive within this of the connection opening "
        "or the previous answer, else 408 and the connection is closed (ISO 8601)",
    )
    keep_alive: timedelta = Field(
        timedelta(seconds=5),
        ge=timedelta(seconds=1),
        description="an idle keep-alive connection is closed after this (ISO 8601)",
    )
    trusted_proxies: str = Field(
        "",
        description="addresses or networks (comma-separated) whose X-Forwarded-For is "
        "believed; empty: none, the peer address counts",
    )
    metrics_token: SecretStr | None = Field(
        None, description="bearer token /metrics requires; empty: /metrics is open"
    )
    api_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /metrics on this port (at SERVICEPULSE_API_HOST) instead of the "
        "API port; empty: on the API port",
    )
    auth_failure_burst: int = Field(
        20, ge=1, description="failed authentications a client may make before it must wait"
    )
    auth_failures_per_minute: float = Field(
        10.0, gt=0, description="failed authentications a client may make per minute after that"
    )
    token_cache: timedelta = Field(
        timedelta(seconds=2),
        ge=timedelta(0),
        description="how long a checked token is trusted before SQLite is asked again (ISO 8601)",
    )
    key_db: Path | None = Field(
        None,
        description="SQLite file of agencies' signing keys and policies; default: keys.db "
        "next to the token database",
    )
    signature_window: timedelta = Field(
        timedelta(minutes=5),
        description="a signed batch's timestamp may differ this much from the API's clock "
        "(ISO 8601)",
    )
    signature_nonce_capacity: int = Field(
        200_000,
        ge=1,
        description="most nonces of signed batches remembered to refuse replays (about 300 "
        "bytes each)",
    )
    ledger_enabled: bool = Field(
        True, description="record every issued report in the hash-chained log (the ledger topic)"
    )
    ledger_key: Path | None = Field(
        None,
        description="Ed25519 key that signs the log; default: ledger.key next to the token "
        "database (created in local mode only)",
    )
    ledger_close_after: timedelta = Field(
        timedelta(days=2),
        description="a day's totals are closed in the log once data is complete this long "
        "after its end (ISO 8601)",
    )
    ledger_close_interval: timedelta = Field(
        timedelta(minutes=10),
        description="how often the API closes due days in the log (ISO 8601); PT0S: never",
    )

    @property
    def key_db_path(self) -> Path:
        """The key database: ``key_db``, else ``keys.db`` next to the token database."""
        return self.key_db or self.token_db.parent / "keys.db"

    @property
    def ledger_key_path(self) -> Path:
        """The log key: ``ledger_key``, else ``ledger.key`` next to the token database."""
        return self.ledger_key or self.token_db.parent / "ledger.key"

    @field_validator("readmodel_snapshot", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "off") else value

    @field_validator("metrics_token", "api_metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _check_proxies(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if isinstance(value, str):
            for v in value.split(","):
                try:
                    if v.strip():
                        ipaddress.ip_network(v.strip(), strict=False)
                except ValueError:
                    raise ConfigError(
                        f"SERVICEPULSE_TRUSTED_PROXIES: {v.strip()!r} is not an IP address "
                        "or network"
                    ) from None
        return value

    @property
    def proxies(self) -> list[str]:
        """``trusted_proxies`` as a list of addresses and networks."""
        return [v.strip() for v in self.trusted_proxies.split(",") if v.strip()]

    old_duration_names: ClassVar[Mapping[str, tuple[str, float]]] = {
        "snapshot_interval": ("SNAPSHOT_INTERVAL_SECONDS", 1.0),
        "backpressure_wait": ("BACKPRESSURE_WAIT_SECONDS", 1.0),
        "request_timeout": ("REQUEST_TIMEOUT_SECONDS", 1.0),
        "kafka_retry_after": ("KAFKA_RETRY_AFTER_SECONDS", 1.0),
        "body_timeout": ("BODY_TIMEOUT_SECONDS", 1.0),
        "header_timeout": ("HEADER_TIMEOUT_SECONDS", 1.0),
        "keep_alive": ("KEEP_ALIVE_SECONDS", 1.0),
        "token_cache": ("TOKEN_CACHE_SECONDS", 1.0),
    }

    @model_validator(mode="after")
    def _check(self) -> ApiSettings:
        if self.rate_limit_events_per_second and self.rate_limit_burst < self.max_events:
            raise ConfigError(
                f"SERVICEPULSE_RATE_LIMIT_BURST={self.rate_limit_burst} is below "
                f"SERVICEPULSE_MAX_EVENTS={self.max_events}: a full batch could never pass"
            )
        if self.max_inflight_events < self.max_events:
            raise ConfigError(
                f"SERVICEPULSE_MAX_INFLIGHT_EVENTS={self.max_inflight_events} is below "
                f"SERVICEPULSE_MAX_EVENTS={self.max_events}: a full batch could never pass"
            )
        if self.max_inflight_events_per_token < self.max_events:
            raise ConfigError(
                f"SERVICEPULSE_MAX_INFLIGHT_EVENTS_PER_TOKEN={self.max_inflight_events_per_token}"
                f" is below SERVICEPULSE_MAX_EVENTS={self.max_events}: a full batch could "
                "never pass"
            )
        if self.api_metrics_port is not None and self.api_metrics_port == self.api_port:
            raise ConfigError(
                f"SERVICEPULSE_API_METRICS_PORT={self.api_metrics_port} is the API port: "
                "leave it empty to serve /metrics there"
            )
        return self
