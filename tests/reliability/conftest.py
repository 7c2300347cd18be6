"""Fixtures of the reliability suite: a broker of its own, shared by the suite's tests.

The fault test stops and restarts this broker, so it is never the session's broker nor
the developer's (``SERVICEPULSE_TEST_BOOTSTRAP`` is ignored here on purpose). It is
started once for the package and stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.kafka import Broker, start_broker


@pytest.fixture(scope="package")
def rel_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private broker for the reliability suite (stopped and restarted by fault tests)."""
    broker = start_broker(tmp_path_factory.mktemp("rel-kafka"))
    try:
        yield broker
    finally:
        assert broker.process is not None
        broker.process.stop()
