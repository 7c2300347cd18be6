"""Fixtures of the reliability suite: a broker of its own, shared by the suite's tests.

The fault test stops and restarts this broker, so it is never the session's broker nor
the developer's (``SERVICEPULSE_TEST_BOOTSTRAP`` is ignored here on purpose). It is
started once for the package and stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servicepulse import stack
from tests.fixtures.kafka import Broker


@pytest.fixture(scope="package")
def rel_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private broker for the reliability suite (stopped and restarted by fault tests).

    Its heap is touched at start (``-XX:+AlwaysPreTouch``), so its resident memory
    measures what the broker holds, not the JVM paging in a heap it reserved at start.
    """
    run_dir = tmp_path_factory.mktemp("rel-kafka")
    port, controller = stack.free_port(), stack.free_port()
    proc = stack.kafka_process(run_dir, port, controller, heap="512m")
    proc.env["JAVA_TOOL_OPTIONS"] = "-XX:+AlwaysPreTouch"
    try:
        proc.start()
    except stack.StackError as exc:
        pytest.fail(f"could not start the reliability suite's broker: {exc}", pytrace=False)
    broker = Broker(f"127.0.0.1:{port}", proc)
    try:
        yield broker
    finally:
        proc.stop()
