"""Shared fixtures: the real Kafka broker (and, from tests/fixtures, Prometheus)."""

from tests.fixtures.kafka import (  # noqa: F401 - fixtures are found by name
    kafka_broker,
    private_broker,
    topic_factory,
)
from tests.fixtures.prometheus import prometheus_server  # noqa: F401 - found by name
