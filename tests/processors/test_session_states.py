"""The session's state machine (no broker: a session does no I/O until it opens)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from contract.catalog import Catalog
from contract.methodology import load_methodology
from processors.errors import SessionError
from processors.metrics import build_metrics
from processors.runner import Processor
from processors.session import Session, State
from processors.settings import ProcessorSettings
from tests.fixtures.streams import CATALOG_PATH


def _processor() -> Processor:
    return Processor(
        ProcessorSettings(instance_id="t", kafka_bootstrap="127.0.0.1:1"),
        Catalog.from_file(CATALOG_PATH),
        load_methodology().standards,
        build_metrics(CollectorRegistry()),
    )


def _state(session: Session) -> State:
    """The session's state now (read afresh: mypy keeps a narrowed attribute across calls)."""
    return session.state


def test_a_new_session_holds_no_clients_and_cannot_process() -> None:
    session = _processor().session()
    assert session.state is State.NEW
    assert session.consumer is None and session.producer is None
    with pytest.raises(SessionError, match="cannot process in state new"):
        session.step()
    session.close()
    assert _state(session) is State.CLOSED


def test_transitions_outside_the_machine_are_refused() -> None:
    session = _processor().session()
    with pytest.raises(SessionError, match="from new to running"):
        session._to(State.RUNNING)
    session._to(State.OPENING)
    session._to(State.FAILED)
    with pytest.raises(SessionError, match="from failed to running"):
        session._to(State.RUNNING)


def test_a_failed_session_never_commits_on_revocation() -> None:
    session = _processor().session()
    session._to(State.OPENING)
    session._to(State.FAILED)
    # no checkpoint, no consumer: a commit attempt would fail loudly
    session.on_revoked([])
    assert session.state is State.FAILED


def test_losing_partitions_fails_a_running_session() -> None:
    from kafkaport import TopicPartition

    proc = _processor()
    session = proc.session()
    session._to(State.OPENING)
    session._to(State.RUNNING)
    with pytest.raises(SessionError, match="evicted"):
        session.on_lost([TopicPartition(proc.topics.events, 0)])
    assert session.state is State.FAILED
