"""The simulation engine: a seeded discrete-event loop that yields events in time order.

Arrivals of residents follow a non-homogeneous Poisson process (hour of day, weekday,
production calendar, scenario peaks), drawn by thinning. Each arrival starts one or more
journeys (``journeys.py``); the heap holds the next due event of every live journey,
keyed by (event time, sequence number), so the output is in event-time order and the
same seed with the same options gives the same stream, event ids included.

The mean event rate is set in events per second of event time: a short pilot run with
a fixed seed measures how many events one arrival makes under the scenario, and the
arrival intensity is scaled so that the weekly mean rate equals the requested one.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Final

from contract.catalog import Catalog
from producers.pseudonym import Pseudonymizer
from producers.simulator.journeys import Item, Pending, World
from producers.simulator.model import RegionModel
from producers.simulator.scenario import DEFAULT_SCENARIO, Scenario

#: Pseudonym secret of simulated people when none is configured (synthetic data only).
SIMULATOR_SECRET: Final = "servicepulse-simulator"  # noqa: S105 - not a credential
PILOT_ARRIVALS: Final = 1500
_PILOT_SEED: Final = 20_240_601

#: One generated event as the JSON object it becomes (contract.events.Event is the decoded one)
EventBody = dict[str, Any]


class Simulation:
    """A reproducible stream of simulated events for a region.

    Args:
        catalog: the region's catalog (agencies, services, municipalities, offices).
        seed: the random seed; same seed and options give the same events and ids.
        start: the event time the simulation starts at (timezone-aware).
        rate: mean events per second of event time, averaged over a week.
        scenario: knobs (default: ordinary traffic).
        pseudonymizer: makes citizen pseudonyms of the synthetic people; default: a
            fixed simulator secret.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        seed: int,
        start: datetime,
        rate: float = 20.0,
        scenario: Scenario | None = None,
        pseudonymizer: Pseudonymizer | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware, got {start.isoformat()!r}")
        if rate <= 0:
            raise ValueError(f"rate must be positive events per second, got {rate!r}")
        self.catalog = catalog
        self.seed = seed
        self.start = start
        self.rate = rate
        self.scenario = scenario or DEFAULT_SCENARIO
        self.model = RegionModel(catalog, self.scenario)
        self.pseudonymizer = pseudonymizer or Pseudonymizer(SIMULATOR_SECRET)
        self.tag = "s" + hashlib.blake2b(str(seed).encode(), digest_size=3).hexdigest()
        self._events_per_arrival: float | None = None

    # -- calibration -------------------------------------------------------------------

    def _mean_intensity(self) -> float:
        t0 = self.start.timestamp()
        samples = [self.model.intensity(self.model.local(t0 + h * 3600.0)) for h in range(168)]
        return sum(samples) / len(samples)

    @property
    def events_per_arrival(self) -> float:
        """Mean events one arrival makes under the scenario (measured by a pilot run)."""
        if self._events_per_arrival is None:
            per_s = PILOT_ARRIVALS / (7 * 86_400.0) / self._mean_intensity()
            run = _Run(self, random.Random(_PILOT_SEED), arrivals_per_s=per_s, pilot=True)
            count = sum(1 for _ in run.loop(None))
            self._events_per_arrival = max(1.0, count / max(1, run.world.arrivals))
        return self._events_per_arrival

    @property
    def arrivals_per_second(self) -> float:
        """Mean arrivals per second of event time at intensity 1."""
        return self.rate / self.events_per_arrival / self._mean_intensity()

    # -- output ------------------------------------------------------------------------

    def timed_events(self, end: datetime | None = None) -> Iterator[tuple[float, EventBody]]:
        """``(epoch seconds, event dict)`` in event-time order, up to ``end`` (exclusive).

        With ``end=None`` the stream never ends (live mode). The dicts are valid v1 events
        ready to encode as JSON; ``occurred_at`` is in the region's time zone.
        """
        run = _Run(self, random.Random(self.seed), self.arrivals_per_second)
        yield from run.loop(end.timestamp() if end is not None else None)


class _Run:
    """One pass of the engine: its heap, random source, and id stream."""

    def __init__(
        self, sim: Simulation, rng: random.Random, arrivals_per_s: float, *, pilot: bool = False
    ) -> None:
        self.sim = sim
        self.rng = rng
        self.ids = random.Random(f"{sim.seed}:event-ids")
        self.heap: list[tuple[float, int, str | None, Any, Any, Iterator[Item] | None]] = []
        self.seq = 0
        self.now = sim.start.timestamp()
        self.pilot = pilot
        self.world = World(
            sim.model, rng, sim.tag, sim.pseudonymizer, self.spawn, self.defer, sim.seed
        )
        model = sim.model
        self.max_factor = model.max_factor
        self.lam_max = arrivals_per_s * self.max_factor
        self.tz = model.tz
        self.spawn(self.now, self._arrivals())

    def spawn(self, t: float, gen: Iterator[Item]) -> None:
        """Schedule a generator to be advanced first at ``t`` (never before now)."""
        self.seq += 1
        heapq.heappush(self.heap, (max(t, self.now), self.seq, None, None, None, gen))

    def defer(self, pending: Pending) -> None:
        """Schedule the post-submission part of a journey, kept in compact form."""
        items = self.world.after_items(pending)
        if items:
            self.seq += 1
            heapq.heappush(
                self.heap, (max(items[0][0], self.now), self.seq, None, pending, 0, None)
            )

    def _arrivals(self) -> Iterator[Item]:
        rng = self.rng
        model = self.sim.model
        world = self.world
        t = self.now
        end = t + 7 * 86_400.0 if self.pilot else None
        while True:
            t += rng.expovariate(self.lam_max)
            if end is not None and (t >= end or world.arrivals >= PILOT_ARRIVALS):
                return
            yield t, None, None, None
            if rng.random() * self.max_factor <= model.intensity(model.local(t)):
                world.arrive(t)

    def loop(self, end: float | None) -> Iterator[tuple[float, EventBody]]:
        heap = self.heap
        pop = heapq.heappop
        push = heapq.heappush
        ids = self.ids
        tz = self.tz
        fromtimestamp = datetime.fromtimestamp
        after_items = self.world.after_items
        pilot = self.pilot
        while heap:
            t, _, etype, base, attrs, gen = heap[0]
            if end is not None and t >= end:
                return
            pop(heap)
            self.now = t
            if gen is None:
                # a deferred journey: rebuild its items, emit the due one, queue the next
                pending, k = base, attrs
                items = after_items(pending)
                _, etype, base, attrs = items[k]
                if k + 1 < len(items):
                    self.seq += 1
                    push(heap, (max(items[k + 1][0], t), self.seq, None, pending, k + 1, None))
            if etype is not None:
                if pilot:
                    yield t, {}
                else:
                    event: EventBody = {
                        "event_id": str(uuid.UUID(int=ids.getrandbits(128), version=4)),
                        "type": etype,
                        "schema_version": 1,
                        "occurred_at": fromtimestamp(t, tz).isoformat(timespec="milliseconds"),
                        **base,
                    }
                    if attrs is not None:
                        event["attrs"] = attrs
                    yield t, event
            if gen is not None:
                nxt = next(gen, None)
                if nxt is not None:
                    self.seq += 1
                    push(heap, (max(nxt[0], t), self.seq, nxt[1], nxt[2], nxt[3], gen))

    @property
    def scheduled(self) -> int:
        """Journeys and arrivals waiting in the heap."""
        return len(self.heap)


def generate(
    catalog: Catalog,
    seed: int,
    start: datetime,
    end: datetime,
    *,
    rate: float = 20.0,
    scenario: Scenario | None = None,
    pseudonymizer: Pseudonymizer | None = None,
) -> Iterator[EventBody]:
    """Simulated events with ``start <= occurred_at < end``, in event-time order.

    Events whose turn comes after ``end`` (a decision due next week) are not produced:
    the period is a cut through the region's traffic, as a backfill of the past is.
    See :class:`Simulation` for the arguments.
    """
    sim = Simulation(
        catalog, seed=seed, start=start, rate=rate, scenario=scenario, pseudonymizer=pseudonymizer
    )
    for _, event in sim.timed_events(end):
        yield event


def period(days: float, now: datetime) -> tuple[datetime, datetime]:
    """``(start, now)`` where start is local midnight ``days`` days before ``now``'s day.

    Aligning the start to midnight makes two runs with the same seed on the same day
    produce the same stream up to the earlier end.
    """
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    whole = int(days)
    start = midnight - timedelta(days=whole)
    if days > whole:
        start = now - timedelta(days=days)
    return start, now
