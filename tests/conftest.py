"""Shared fixtures: the real Kafka broker (and, from tests/fixtures, Prometheus).

A failed test's captured output (stdout, stderr, log records) is cut to its last
``CAPTURED_LINES`` lines in the report: a client that logs every 100 ms through a broker
outage would otherwise print thousands of lines and bury the other failures of the run.
``SERVICEPULSE_TEST_FULL_OUTPUT=1`` keeps everything; the components' own logs are in
their run directories either way.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

# Installs the filter that holds back kafka-python's repeated errors (a client whose topic a
# test deleted logs one every 100 ms), also for the tests that use kafka-python directly.
import kafkaport.kafkapython  # noqa: F401
from tests.fixtures.kafka import (  # noqa: F401 - fixtures are found by name
    kafka_broker,
    private_broker,
    topic_factory,
)
from tests.fixtures.prometheus import prometheus_server  # noqa: F401 - found by name

#: Lines of each captured section a failed test's report keeps (the last ones: nearest
#: to the failure).
CAPTURED_LINES = 200


def cut(content: str, lines: int = CAPTURED_LINES) -> str:
    """The last ``lines`` lines of ``content``, with a note of how many were left out."""
    kept = content.splitlines()
    if len(kept) <= lines:
        return content
    dropped = len(kept) - lines
    return (
        f"[{dropped} earlier lines left out; SERVICEPULSE_TEST_FULL_OUTPUT=1 keeps them]\n"
        + "\n".join(kept[-lines:])
        + "\n"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not os.environ.get("SERVICEPULSE_TEST_FULL_OUTPUT"):
        report.sections = [(title, cut(content)) for title, content in report.sections]
    return report
