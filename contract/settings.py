"""Settings shared by every component, read from ``SERVICEPULSE_*`` environment variables.

Each component subclasses :class:`CommonSettings` with its own fields; the entry point
(a CLI command or the FastAPI app factory) builds one instance and passes it down.
Every variable is listed in ``.env.example`` and in the README.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.errors import ConfigError
from contract.events import EARLIEST_OCCURRED_AT, EARLIEST_POSSIBLE

logger = logging.getLogger(__name__)

_PLACEHOLDERS = frozenset({"", "changeme", "change-me", "secret", "local-dev-secret"})


def millis(duration: timedelta) -> int:
    """Whole milliseconds of a duration (Kafka client configs count in milliseconds)."""
    return duration // timedelta(milliseconds=1)


def renamed_durations(
    data: Any, renamed: Mapping[str, tuple[str, float]], prefix: str = "SERVICEPULSE_"
) -> Any:
    """Take a duration from its old, unit-suffixed variable, with a warning.

    Durations are ISO 8601 (``PT0.5S``, ``P7D``) under names without a unit; the old
    names (``..._MS``, ``..._S``, ``..._SECONDS``) counted in their unit. The one
    ``mode="before"`` model validator of :class:`CommonSettings` calls this with the
    class's :attr:`CommonSettings.old_duration_names`: a field mapped to its old variable
    (without the prefix) and the seconds one unit of it is. Old names are read from the
    process environment, the ``.env`` file and keyword arguments (``commit_interval_ms=``);
    the new name wins when both are set.
    """
    if not isinstance(data, dict):
        return data
    for field, (old, unit_s) in renamed.items():
        raw = data.get(old.lower(), os.environ.get(prefix + old))
        data = {k: v for k, v in data.items() if k != old.lower()}
        if raw is None or field in data:
            continue
        new = prefix + field.upper()
        try:
            value = timedelta(seconds=float(raw) * unit_s)
        except ValueError as exc:
            raise ConfigError(f"{prefix + old}={raw!r} is not a number (use {new})") from exc
        logger.warning("%s is deprecated: use %s (an ISO 8601 duration)", prefix + old, new)
        data = {**data, field: value}
    return data


class CommonSettings(BaseSettings):
    """What every component needs: where Kafka is, which topics, which catalog."""

    model_config = SettingsConfigDict(
        env_prefix="SERVICEPULSE_", env_file=".env", extra="ignore", frozen=True
    )

    #: Duration fields whose earlier, unit-suffixed variable is still read, with a
    #: warning: field -> (old variable without ``SERVICEPULSE_``, seconds per unit).
    #: Each component sets its own; the validator below is the one that reads them.
    old_duration_names: ClassVar[Mapping[str, tuple[str, float]]] = {}

    mode: Literal["local", "production"] = Field(
        "local", description="`local` (development, demo, tests) or `production`"
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: str | None = Field(None, description="e.g. SCRAM-SHA-512")
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(None, description="CA certificate file for SSL")
    topic_prefix: str = Field("servicepulse", description="prefix of every topic name")
    catalog: Path | None = Field(None, description="catalog YAML; default: the demo catalog")
    methodology: Path | None = Field(None, description="methodology YAML; default: shipped")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    earliest_occurred_at: datetime = Field(
        EARLIEST_OCCURRED_AT,
        description="events with an earlier occurred_at are rejected (too_early); "
        "ISO 8601 date or date-time, UTC if no offset",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_duration_names(cls, data: Any) -> Any:
        return renamed_durations(data, cls.old_duration_names)

    @field_validator("earliest_occurred_at")
    @classmethod
    def _aware_and_in_range(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value < EARLIEST_POSSIBLE:
            raise ValueError(f"must be {EARLIEST_POSSIBLE.date().isoformat()} or later")
        return value

    @model_validator(mode="after")
    def _real_kafka_password(self) -> Self:
        # the one secret every component holds: a placeholder must not reach production
        if self.kafka_sasl_mechanism:
            refuse_placeholder(self, "kafka_sasl_password", self.kafka_sasl_password)
        return self

    def kafka_config(self) -> dict[str, object]:
        """Connection settings for the Kafka client, security included."""
        cfg: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            cfg["sasl_mechanism"] = self.kafka_sasl_mechanism
            cfg["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                cfg["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            cfg["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return cfg


def refuse_placeholder(settings: CommonSettings, name: str, value: SecretStr | None) -> None:
    """Raise if a secret is missing or a placeholder while not in local mode."""
    if settings.mode != "local" and (value is None or value.get_secret_value() in _PLACEHOLDERS):
        raise ConfigError(
            f"SERVICEPULSE_{name.upper()} is unset or a placeholder; set a real secret "
            "(placeholders are only accepted with SERVICEPULSE_MODE=local)"
        )
