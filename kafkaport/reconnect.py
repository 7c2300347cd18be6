"""The one reconnect policy of every long-running Kafka client: processor sessions, the
API's producer link and the read model's consumer.

An attempt (connect, or connect and then work until something fails) that raises is
repeated after an exponential pause with jitter: 1 s, 2 s, 4 s ... capped at 30 s, each
plus up to 1 s at random, so instances that lost the broker together do not all return in
the same instant. Progress (a committed batch, records read) resets the pause to the
first step: a component that worked for an hour and then lost its broker waits 1 s, not
30 s. The component's stop event ends the pause at once and ends the retrying.

Built on tenacity (its ``Retrying`` loop, stop, wait and sleep hooks); only the count of
failures since the last progress is ours, since tenacity counts attempts since the start.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from contract.errors import ServicePulseError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """The pauses between failed attempts, in seconds.

    The n-th failure in a row waits ``min(first * 2**(n-1), longest)`` plus a uniform
    random ``0..jitter``.
    """

    first: float = 1.0
    longest: float = 30.0
    jitter: float = 1.0


#: the policy of every component (docs/RELIABILITY.md, "Kafka unreachable")
BACKOFF: Final = Backoff()


class _Stopped:
    """The result of an attempt skipped because the stop event was set."""


_STOPPED: Final = _Stopped()


def cause(exc: BaseException | None) -> str:
    """What a log line may say about a failure: our own errors' messages (which by the
    project's rule carry no personal data: they name topics, partitions, brokers), and
    only the type of anything else (a library's or a bug's message may quote a record)."""
    if exc is None:
        return "no error"
    if isinstance(exc, ServicePulseError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class Reconnect:
    """Repeat an attempt until it returns or ``stop`` is set, pausing per :data:`BACKOFF`.

    Args:
        what: names the component in the log ("processor session", "API producer").
        stop: the component's stop event; set, it ends a pause at once and no further
            attempt is made.
        retry_on: the exception types that are retried; anything else propagates.
        backoff: the pauses; default :data:`BACKOFF`.
        sleep: waits the given seconds (default ``stop.wait``); tests record the pauses.

    Each retry is logged once at WARNING with its cause (:func:`cause`), the number of
    failures in a row and the pause before the next attempt.
    """

    def __init__(
        self,
        what: str,
        stop: threading.Event,
        *,
        retry_on: tuple[type[BaseException], ...],
        backoff: Backoff = BACKOFF,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.what = what
        self._stop = stop
        self._retry_on = retry_on
        self._wait = wait_exponential(multiplier=backoff.first, max=backoff.longest) + wait_random(
            0, backoff.jitter
        )
        self._sleep = sleep or stop.wait
        #: failed attempts since the start or the last :meth:`progressed`
        self.failures = 0

    def progressed(self) -> None:
        """The current attempt made progress: the next failure pauses the first step."""
        self.failures = 0

    def run(self, attempt: Callable[[], T]) -> T | None:
        """Call ``attempt`` until it returns; its result, or None once ``stop`` is set.

        Raises:
            BaseException: whatever ``attempt`` raises that is not in ``retry_on``.
        """

        def once() -> T | _Stopped:
            if self._stop.is_set():
                return _STOPPED
            return attempt()

        retrying = Retrying(
            retry=retry_if_exception_type(self._retry_on),
            stop=lambda _state: self._stop.is_set(),
            wait=self._delay,
            sleep=self._pause,
            before_sleep=self._log,
            retry_error_callback=lambda _state: _STOPPED,
        )
        result = retrying(once)
        return None if isinstance(result, _Stopped) else result

    def _delay(self, state: RetryCallState) -> float:
        self.failures += 1
        # tenacity's strategies count from the first attempt; ours from the last progress
        since = copy.copy(state)
        since.attempt_number = self.failures
        return float(self._wait(since))

    def _pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def _log(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s failed (%s); failure %d in a row, next attempt in %.1fs",
            self.what,
            cause(exc),
            self.failures,
            delay,
        )
