"""The benchmark data set: valid contract-v1 events in event-time order, and topic loading.

The events come from the traffic simulator (``producers.simulator.generate``) when it is
built; otherwise from :func:`journeys`, a small deterministic generator of journeys over
the demo catalog (start, catalog steps, submission or cancel or nothing, decision,
feedback). Either way every event is valid against the contract and the catalog, so
the processor does its full work on each one, and the results file says which source
was used.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

import kafkaport
from contract.catalog import Catalog, load_catalog
from contract.events import (
    Attrs,
    Channel,
    Event,
    EventType,
    Outcome,
    decode_event,
    encode_event,
    event_key,
)
from contract.settings import CommonSettings

logger = logging.getLogger(__name__)

#: Event time of the first generated event: a Monday inside the catalog's calendar years.
EPOCH = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=5)))


@dataclass(frozen=True, slots=True)
class Dataset:
    """Encoded events ready to produce: ``(key, value)`` pairs in event-time order.

    Attributes:
        records: the Kafka records.
        source: ``simulator`` or ``bench generator``.
        started: how many ``journey.started`` events (for checking totals).
        submitted: how many ``journey.submitted`` events.
    """

    records: list[tuple[bytes, bytes]]
    source: str
    started: int
    submitted: int

    @property
    def bytes(self) -> int:
        """Total size of keys and values."""
        return sum(len(k) + len(v) for k, v in self.records)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def journeys(
    n_events: int,
    *,
    seed: int = 7,
    catalog: Catalog | None = None,
    agency: str | None = None,
    epoch: datetime = EPOCH,
) -> Iterator[Event]:
    """About ``n_events`` valid events of independent journeys, in event-time order.

    Journeys start uniformly over ``max(1, n_events // 50_000)`` days from ``epoch``;
    each has a start, 1..all catalog steps, then a submission (65%), a cancel (15%) or
    nothing (20%: abandoned by timeout on self-service channels); 70% of submissions
    get a decision, 20% feedback. Deterministic for a seed.
    With ``agency``, only that agency's services (an agency token may send only its own).
    """
    cat = catalog or load_catalog()
    rng = random.Random(seed)  # noqa: S311 - traffic shapes, not secrets
    services = [
        idx.service for idx in cat.services.values() if agency in (None, idx.service.agency)
    ]
    weights = [s.demand for s in services]
    municipalities = list(cat.municipalities)
    days = max(1, n_events // 50_000)
    span = days * 86_400.0
    pending: list[tuple[float, int, Event]] = []
    seq = 0
    made = 0
    journey_no = 0
    while made < n_events:
        svc = rng.choices(services, weights)[0]
        channel = Channel(rng.choice(svc.channels))
        journey_no += 1
        jid = f"bench-{seed}-{journey_no}"
        t = rng.uniform(0.0, span)
        base = {
            "schema_version": 1,
            "agency": svc.agency,
            "service": svc.code,
            "municipality": rng.choice(municipalities),
            "channel": channel,
            "journey": jid,
        }

        def add(
            etype: EventType, at: float, attrs: Attrs | None = None, base: dict[str, Any] = base
        ) -> None:
            nonlocal seq, made
            seq += 1
            made += 1
            ev = Event(
                event_id=_uuid(rng),
                type=etype,
                occurred_at=epoch + timedelta(seconds=at),
                attrs=attrs or Attrs(),
                **base,
            )
            pending.append((at, seq, ev))

        add(EventType.JOURNEY_STARTED, t)
        for step in svc.steps[: rng.randint(1, len(svc.steps))]:
            t += rng.uniform(20.0, 240.0)
            add(EventType.JOURNEY_STEP, t, Attrs(step=step.code))
        fate = rng.random()
        if fate < 0.65:
            t += rng.uniform(10.0, 120.0)
            add(EventType.JOURNEY_SUBMITTED, t)
            if rng.random() < 0.7:
                t += rng.uniform(600.0, 3 * 86_400.0)
                outcome = Outcome.APPROVED if rng.random() < 0.85 else Outcome.REJECTED
                add(EventType.DECISION_MADE, t, Attrs(outcome=outcome))
            if rng.random() < 0.2:
                t += rng.uniform(60.0, 3_600.0)
                add(EventType.FEEDBACK_GIVEN, t, Attrs(score=rng.choices([1, 2, 3, 4, 5])[0]))
        elif fate < 0.80:
            t += rng.uniform(10.0, 600.0)
            add(EventType.JOURNEY_ABANDONED, t)
    pending.sort(key=lambda p: (p[0], p[1]))
    for _, _, ev in pending:
        yield ev


#: Event time the simulated data set starts at: a Monday, local midnight, in the past.
SIM_START = datetime(2026, 10, 5, tzinfo=ZoneInfo("Asia/Yekaterinburg"))
#: The simulated data set covers about this many days of the region's traffic.
SIM_DAYS = 3


def _from_simulator(n_events: int, seed: int) -> Iterator[Event] | None:
    """The first ``n_events`` of the simulator over :data:`SIM_DAYS` days, or ``None``.

    The rate is chosen so that ``n_events`` span about :data:`SIM_DAYS` days of event
    time (daily and weekly peaks, decisions and feedback days after the start).
    """
    try:
        from producers.simulator import generate
    except ImportError:
        return None
    rate = n_events / (SIM_DAYS * 86_400)
    end = SIM_START + timedelta(days=SIM_DAYS * 3)
    gen = generate(load_catalog(), seed, SIM_START, end, rate=rate)

    def take() -> Iterator[Event]:
        encode = msgspec.json.Encoder().encode
        for i, item in enumerate(gen):
            if i >= n_events:
                return
            # The simulator yields event dicts; decoding makes them contract Events.
            ev = decode_event(encode(item)) if isinstance(item, dict) else item
            if isinstance(ev, list):
                raise ValueError(f"the simulator made an invalid event: {ev[0].message}")
            yield ev

    return take()


def dataset(n_events: int, *, seed: int = 7, prefer_simulator: bool = True) -> Dataset:
    """``n_events`` encoded events, from the simulator if available, else :func:`journeys`."""
    source = "simulator"
    events = _from_simulator(n_events, seed) if prefer_simulator else None
    if events is None:
        source = "bench generator"
        events = journeys(n_events, seed=seed)
    records: list[tuple[bytes, bytes]] = []
    started = submitted = 0
    for ev in events:
        if ev.type is EventType.JOURNEY_STARTED:
            started += 1
        elif ev.type is EventType.JOURNEY_SUBMITTED:
            submitted += 1
        records.append((event_key(ev), encode_event(ev)))
    return Dataset(records, source, started, submitted)


def fill(settings: CommonSettings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Produce ``records`` to ``topic`` (keyed, idempotent, acks=all); returns seconds taken."""
    import time

    producer = kafkaport.connect(settings).producer(
        client_id="servicepulse-bench", linger_ms=20, batch_bytes=512 * 1024
    )
    try:
        t0 = time.perf_counter()
        send = producer.send
        for key, value in records:
            send(topic, value, key)
        if producer.flush(600):
            raise TimeoutError(f"records to {topic} not acknowledged")
        return time.perf_counter() - t0
    finally:
        producer.close(10)


def expected_totals(
    records: list[tuple[bytes, bytes]], tz_name: str = "Asia/Yekaterinburg"
) -> dict[tuple[str, str], tuple[int, int]]:
    """Journeys started and submitted per (service, event-time day), computed directly.

    The rules of DESIGN.md section 5 for these two counters: an ``event_id`` counts
    once; a journey counts as started once; a submission counts for a journey not yet
    submitted, decided or abandoned. The referee for both our processor and the peer.
    """
    tz = ZoneInfo(tz_name)
    seen: set[str] = set()
    status: dict[tuple[str, str], str] = {}
    totals: dict[tuple[str, str], list[int]] = {}
    decode = msgspec.json.Decoder(Event).decode
    for _, value in records:
        ev = decode(value)
        if ev.event_id in seen or ev.journey is None or ev.service is None:
            continue
        seen.add(ev.event_id)
        jk = (ev.agency, ev.journey)
        st = status.get(jk)
        cell = (ev.service, ev.occurred_at.astimezone(tz).date().isoformat())
        if ev.type is EventType.JOURNEY_STARTED:
            if st is None:
                status[jk] = "open"
                totals.setdefault(cell, [0, 0])[0] += 1
        elif ev.type is EventType.JOURNEY_SUBMITTED:
            if st in (None, "open"):
                status[jk] = "submitted"
                totals.setdefault(cell, [0, 0])[1] += 1
        elif ev.type in (EventType.JOURNEY_ABANDONED, EventType.DECISION_MADE):
            status[jk] = "closed"
        elif st is None:
            status[jk] = "open"
    return {k: (v[0], v[1]) for k, v in totals.items()}
