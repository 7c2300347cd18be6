"""Settings of the producer library and the simulator (``SERVICEPULSE_*`` variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from contract.settings import CommonSettings


class ProducerSettings(CommonSettings):
    """Kafka, catalog and the pseudonym secret of an agency's producer."""

    pseudonym_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key for citizen pseudonyms; shared by agencies that must "
        "link one person across them; placeholders are refused outside local mode",
    )
    producer_delivery_timeout_s: float = Field(
        120.0, gt=0, description="how long Kafka may take to acknowledge an event"
    )
    producer_client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka client of the producer library: kafka-python (pure Python) or "
        "confluent (librdkafka)",
    )
