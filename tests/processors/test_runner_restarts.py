"""The runner's restarts as pure logic: sessions replaced by scripted fakes (no broker), the
reconnect policy's pauses made short. What a real outage does is in test_broker_outage.py."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from contract.catalog import Catalog
from contract.errors import BusError, ConfigError
from contract.methodology import load_methodology
from kafkaport.reconnect import Backoff
from processors.metrics import build_metrics
from processors.runner import Processor
from processors.session import Session
from processors.settings import ProcessorSettings
from tests.fixtures.streams import CATALOG_PATH


class FakeSession:
    """Opens or fails to, then runs ``steps`` (each may raise), as a script says."""

    def __init__(self, open_error: BaseException | None, steps: list[Callable[[], None]]):
        self.open_error = open_error
        self.steps = steps
        self.closed: list[bool] = []

    def open(self) -> None:
        if self.open_error is not None:
            raise self.open_error

    def step(self) -> None:
        self.steps.pop(0)()

    def close(self, *, error: bool = False) -> None:
        self.closed.append(error)


class Scripted(Processor):
    def __init__(self, script: list[FakeSession]) -> None:
        super().__init__(
            ProcessorSettings(instance_id="t", kafka_bootstrap="127.0.0.1:1"),
            Catalog.from_file(CATALOG_PATH),
            load_methodology().standards,
            build_metrics(CollectorRegistry()),
            backoff=Backoff(first=0.001, longest=0.004, jitter=0.0),
        )
        self.script = script
        self.opened: list[FakeSession] = []

    def session(self) -> Session:
        s = self.script.pop(0)
        self.opened.append(s)
        return s  # type: ignore[return-value]


def _ok() -> None:
    pass


def _fail(exc: BaseException) -> Callable[[], None]:
    def step() -> None:
        raise exc

    return step


def _sample(p: Processor, name: str, **labels: str) -> float:
    for metric in [*p.metrics.sessions.collect(), *p.metrics.transactions.collect()]:
        for s in metric.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def test_failed_opens_and_failed_sessions_are_retried_and_progress_resets_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p: Scripted

    def stop() -> None:
        p.stop()

    p = Scripted(
        [
            FakeSession(BusError("broker 127.0.0.1:1 unreachable"), []),
            FakeSession(BusError("broker 127.0.0.1:1 unreachable"), []),
            # progress, then a bug whose message quotes a record
            FakeSession(None, [_ok, _ok, _fail(KeyError("+79991234567"))]),
            FakeSession(None, [_ok, stop]),
        ]
    )
    with caplog.at_level(logging.WARNING):
        p.run()
    assert not p.script and len(p.opened) == 4
    retries = [r.getMessage() for r in caplog.records if r.name == "kafkaport.reconnect"]
    assert len(retries) == 3, retries
    assert "failure 1 in a row" in retries[0] and "failure 2 in a row" in retries[1]
    # the third session made progress: its failure counts from one again
    assert "failure 1 in a row" in retries[2]
    assert "SessionError: unexpected KeyError in the session" in retries[2]
    assert "unexpected KeyError; restarting from the changelog" in caplog.text
    assert "7999" not in caplog.text
    assert p.opened[2].closed == [True] and p.opened[3].closed == [False]
    assert _sample(p, "servicepulse_processor_sessions_total") == 2
    assert _sample(p, "servicepulse_processor_transactions_total", result="aborted") == 1


def test_an_error_opening_that_is_not_kafkas_ends_the_run() -> None:
    p = Scripted([FakeSession(ConfigError("bad setting"), [])])
    with pytest.raises(ConfigError):
        p.run()
