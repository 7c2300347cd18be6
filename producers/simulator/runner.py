"""Runs a simulation into a sink: backfill as fast as possible, live, or accelerated.

The stream is in event-time order; the runner decides *when* each event leaves:

- events of the past leave at once (backfill);
- with ``accelerate = X`` event time runs X times faster than the wall clock from the
  start of the run, until it catches up with the wall clock;
- after that (and in plain live mode) an event leaves when the wall clock reaches its
  ``occurred_at``, so decisions scheduled for next Tuesday arrive next Tuesday.

Event time therefore never gets ahead of the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

from producers.simulator.engine import Simulation
from producers.simulator.sinks import Sink

logger = logging.getLogger(__name__)


class Clock(Protocol):
    """Where the runner reads the time and waits: the system's, or a test's own."""

    def time(self) -> float:
        """The wall clock, in seconds since the epoch (when events are due)."""

    def monotonic(self) -> float:
        """A monotonic clock, in seconds (durations of the run)."""

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds``; True if ``stop`` was set."""


class SystemClock:
    """The real clocks and a real wait."""

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """``stop.wait(seconds)``."""
        return stop.wait(seconds)


SYSTEM_CLOCK: Final = SystemClock()


@dataclass(frozen=True, slots=True)
class Plan:
    """When to start and stop, and how fast event time runs.

    Attributes:
        end: stop before this event time; ``None`` runs on live until stopped.
        accelerate: event time runs this many times faster than the wall clock until
            it reaches the wall clock (``None``: past events leave at once).
        max_events: stop after this many events.
        duration_s: stop after this many wall-clock seconds.
    """

    end: datetime | None = None
    accelerate: float | None = None
    max_events: int | None = None
    duration_s: float | None = None


@dataclass(slots=True)
class SimulationStats:
    """What a run produced so far; the summary at the end."""

    events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_agency: Counter[str] = field(default_factory=Counter)
    started_wall: float = field(default_factory=time.monotonic)
    elapsed_s: float = 0.0
    event_time: float | None = None
    first_event_time: float | None = None
    #: seconds the latest event left after its due time (live lag)
    lag_s: float = 0.0
    live: bool = False
    stopped_by: str = ""

    @property
    def rate(self) -> float:
        """Events per wall-clock second over the run."""
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run(
    sim: Simulation,
    sink: Sink,
    plan: Plan,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[SimulationStats], None] | None = None,
    status_every_s: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> SimulationStats:
    """Generate events and hand them to ``sink`` on time; closes the sink at the end.

    Args:
        sim: the simulation (its ``start`` is the first event time).
        sink: where events go.
        plan: when to stop and how fast event time runs.
        stop: set it (e.g. from a signal handler) to end the run cleanly.
        progress: called with the stats at most every 0.2 s.
        status_every_s: log a status line this often (for runs without a progress bar).
        clock: the clocks to read and wait on (tests pass one they drive).
    """
    stop = stop or threading.Event()
    stats = SimulationStats(started_wall=clock.monotonic())
    wall0 = clock.time()
    t0 = sim.start.timestamp()
    x = plan.accelerate
    mono0 = stats.started_wall
    next_progress = 0.0
    next_status = mono0 + status_every_s if status_every_s else float("inf")
    by_type = stats.by_type
    by_agency = stats.by_agency
    try:
        for t, event in sim.timed_events(plan.end):
            if stop.is_set():
                stats.stopped_by = "signal"
                break
            if plan.max_events is not None and stats.events >= plan.max_events:
                stats.stopped_by = "events"
                break
            due = t if x is None else max(wall0 + (t - t0) / x, t)
            now = clock.time()
            if due > now:
                stats.live = True
                if not _sleep_until(due, sink, stop, plan, mono0, stats, progress, clock):
                    break
                now = clock.time()
            mono = clock.monotonic()
            if plan.duration_s is not None and mono - mono0 >= plan.duration_s:
                stats.stopped_by = "duration"
                break
            sink.send(event)
            stats.events += 1
            by_type[event["type"]] += 1
            by_agency[event["agency"]] += 1
            stats.event_time = t
            if stats.first_event_time is None:
                stats.first_event_time = t
            stats.lag_s = max(0.0, now - due) if stats.live else 0.0
            if mono >= next_progress:
                stats.elapsed_s = mono - mono0
                next_progress = mono + 0.2
                if progress is not None:
                    progress(stats)
                if mono >= next_status:
                    next_status = mono + (status_every_s or 60.0)
                    _log_status(stats, sim)
        else:
            stats.stopped_by = stats.stopped_by or "end"
    finally:
        try:
            sink.close()
        finally:
            stats.elapsed_s = clock.monotonic() - mono0
            if progress is not None:
                progress(stats)
    return stats


def _sleep_until(
    due: float,
    sink: Sink,
    stop: threading.Event,
    plan: Plan,
    mono0: float,
    stats: SimulationStats,
    progress: Callable[[SimulationStats], None] | None,
    clock: Clock,
) -> bool:
    """Wait for the wall clock to reach ``due``; False if the run must end first."""
    while True:
        sink.idle()
        left = due - clock.time()
        if left <= 0:
            return True
        if plan.duration_s is not None:
            remaining = plan.duration_s - (clock.monotonic() - mono0)
            if remaining <= 0:
                stats.stopped_by = "duration"
                return False
            left = min(left, remaining)
        if clock.wait(stop, min(left, 0.5)):
            stats.stopped_by = "signal"
            return False
        stats.elapsed_s = clock.monotonic() - mono0
        if progress is not None:
            progress(stats)


def _log_status(stats: SimulationStats, sim: Simulation) -> None:
    when = (
        datetime.fromtimestamp(stats.event_time, sim.model.tz).isoformat(timespec="seconds")
        if stats.event_time
        else "-"
    )
    logger.info(
        "simulate: events=%d rate=%.1f/s event_time=%s live=%s lag=%.2fs",
        stats.events,
        stats.rate,
        when,
        stats.live,
        stats.lag_s,
    )
