"""The reconnect policy as pure logic: attempts that fail, an injected sleep that records
the pauses instead of waiting them, and a stop event."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from contract.errors import BusError
from kafkaport.reconnect import BACKOFF, Backoff, Reconnect, cause


class Flaky:
    """An attempt that fails ``failures`` times with ``error`` and then returns "ok"."""

    def __init__(
        self, failures: int, error: Callable[[], BaseException] = lambda: BusError("down")
    ):
        self.failures = failures
        self.error = error
        self.calls = 0
        self.before_call: Callable[[int], None] = lambda _n: None

    def __call__(self) -> str:
        self.calls += 1
        self.before_call(self.calls)
        if self.calls <= self.failures:
            raise self.error()
        return "ok"


def policy(
    stop: threading.Event | None = None, backoff: Backoff = BACKOFF
) -> tuple[Reconnect, list[float]]:
    pauses: list[float] = []
    r = Reconnect(
        "test",
        stop or threading.Event(),
        retry_on=(BusError,),
        backoff=backoff,
        sleep=pauses.append,
    )
    return r, pauses


def test_the_pauses_double_from_one_second_to_thirty_with_up_to_a_second_of_jitter() -> None:
    r, pauses = policy()
    attempt = Flaky(9)
    assert r.run(attempt) == "ok"
    assert attempt.calls == 10 and len(pauses) == 9
    for n, pause in enumerate(pauses, start=1):
        step = min(2.0 ** (n - 1), 30.0)
        assert step <= pause <= step + 1.0, (n, pause)
    assert pauses[-1] >= 30.0  # the cap is reached and held


def test_the_jitter_spreads_instances_that_failed_together() -> None:
    firsts = []
    for _ in range(50):
        r, pauses = policy()
        r.run(Flaky(1))
        firsts.append(pauses[0])
    assert all(1.0 <= p <= 2.0 for p in firsts)
    assert len(set(firsts)) > 25  # random, not one fixed instant


def test_progress_resets_the_pause_to_the_first_step() -> None:
    r, pauses = policy()
    attempt = Flaky(7)
    # the 5th attempt gets somewhere (a batch committed) before it fails again
    attempt.before_call = lambda n: r.progressed() if n == 5 else None
    assert r.run(attempt) == "ok"
    steps = [min(2.0 ** (n - 1), 30.0) for n in (1, 2, 3, 4, 1, 2, 3)]
    assert len(pauses) == len(steps)
    for step, pause in zip(steps, pauses, strict=True):
        assert step <= pause <= step + 1.0, (steps, pauses)


def test_the_stop_event_ends_the_retrying_without_another_attempt() -> None:
    stop = threading.Event()
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            stop.set()

    r = Reconnect("test", stop, retry_on=(BusError,), sleep=sleep)
    attempt = Flaky(100)
    assert r.run(attempt) is None
    assert attempt.calls == 3 and len(pauses) == 3


def test_a_stop_during_the_attempt_ends_it_after_that_failure_with_no_pause() -> None:
    stop = threading.Event()
    r, pauses = policy(stop)
    attempt = Flaky(100)
    attempt.before_call = lambda n: stop.set() if n == 2 else None
    assert r.run(attempt) is None
    assert attempt.calls == 2 and len(pauses) == 1


def test_an_error_that_is_not_retried_propagates_at_once() -> None:
    r, pauses = policy()
    attempt = Flaky(1, lambda: KeyError("bug"))
    with pytest.raises(KeyError):
        r.run(attempt)
    assert attempt.calls == 1 and pauses == []


def test_each_retry_is_logged_once_with_its_cause_and_the_next_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, pauses = policy()
    with caplog.at_level(logging.WARNING, logger="kafkaport.reconnect"):
        r.run(Flaky(2, lambda: BusError("broker 127.0.0.1:9092 unreachable")))
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 2, lines
    assert "test failed (BusError: broker 127.0.0.1:9092 unreachable)" in lines[0]
    assert "failure 1 in a row" in lines[0] and "failure 2 in a row" in lines[1]
    assert f"next attempt in {pauses[0]:.1f}s" in lines[0]
    assert f"next attempt in {pauses[1]:.1f}s" in lines[1]


def test_a_foreign_error_is_logged_by_its_type_only() -> None:
    # a library's or a bug's message may quote a record: never into the log
    assert cause(ValueError("phone +79991234567")) == "ValueError"
    assert cause(BusError("topic 'events' does not exist")) == (
        "BusError: topic 'events' does not exist"
    )


def test_the_default_sleep_is_the_stop_event_so_a_stop_ends_a_long_pause() -> None:
    stop = threading.Event()
    r = Reconnect("test", stop, retry_on=(BusError,), backoff=Backoff(first=600.0))
    attempt = Flaky(100)
    done = threading.Event()

    def run() -> None:
        r.run(attempt)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a bound for a busy machine, far below the pause
    while attempt.calls < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop.set()
    thread.join(60)
    assert done.is_set(), "a stop did not end a 600 s pause"
    assert attempt.calls == 1
