"""Settings of the producer library and the simulator (``SERVICEPULSE_*`` variables)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from contract.settings import CommonSettings


class ProducerSettings(CommonSettings):
    """Kafka, catalog and the pseudonym secret of an agency's producer."""

    pseudonym_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key for citizen pseudonyms; shared by agencies that must "
        "link one person across them; placeholders are refused outside local mode",
    )
    producer_delivery_timeout: timedelta = Field(
        timedelta(minutes=2),
        gt=timedelta(0),
        description="how long Kafka may take to acknowledge an event (ISO 8601)",
    )
    producer_client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka client of the producer library: kafka-python (pure Python) or "
        "confluent (librdkafka)",
    )

    old_duration_names: ClassVar[Mapping[str, tuple[str, float]]] = {
        "producer_delivery_timeout": ("PRODUCER_DELIVERY_TIMEOUT_S", 1.0)
    }
