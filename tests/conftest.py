"""Shared fixtures: the real Kafka broker (and, from tests/fixtures, Prometheus)."""

# Installs the filter that holds back kafka-python's repeated errors (a client whose topic a
# test deleted logs one every 100 ms), also for the tests that use kafka-python directly.
import kafkaport.kafkapython  # noqa: F401
from tests.fixtures.kafka import (  # noqa: F401 - fixtures are found by name
    kafka_broker,
    private_broker,
    topic_factory,
)
from tests.fixtures.prometheus import prometheus_server  # noqa: F401 - found by name
