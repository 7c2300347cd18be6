"""The typed Kafka port: Protocols of the clients the project uses, and their adapters.

Components depend on :mod:`kafkaport.ports` and :mod:`kafkaport.types` only; the
adapters (:mod:`kafkaport.confluent` over librdkafka, :mod:`kafkaport.kafkapython` over
the pure-Python client) are the only modules that import a Kafka client library.
:func:`connect` picks one.
"""

from __future__ import annotations

from typing import Literal

from contract.settings import CommonSettings
from kafkaport.ports import (
    Admin,
    Consumer,
    GroupMetadata,
    Kafka,
    Producer,
    RebalanceListener,
    TransactionalProducer,
)
from kafkaport.types import (
    BEGINNING,
    END,
    FencedError,
    Held,
    KafkaError,
    KafkaTimeoutError,
    Record,
    TopicExistsError,
    TopicPartition,
    UnknownTopicError,
)

Client = Literal["confluent", "kafka-python"]


def connect(settings: CommonSettings, client: Client = "confluent") -> Kafka:
    """The client factory of the cluster in ``settings`` over ``client``'s library
    (connects only when a client is opened)."""
    if client == "kafka-python":
        from kafkaport.kafkapython import KafkaPython

        return KafkaPython(settings)
    from kafkaport.confluent import ConfluentKafka

    return ConfluentKafka(settings)


__all__ = [
    "BEGINNING",
    "END",
    "Admin",
    "Client",
    "Consumer",
    "FencedError",
    "GroupMetadata",
    "Held",
    "Kafka",
    "KafkaError",
    "KafkaTimeoutError",
    "Producer",
    "RebalanceListener",
    "Record",
    "TopicExistsError",
    "TopicPartition",
    "TransactionalProducer",
    "UnknownTopicError",
    "connect",
]
