"""How much state an open journey costs: memory and changelog bytes (for benchmarks).

:func:`open_journey_state` builds ``n`` open portal journeys (a start and one step each,
with their event ids remembered) in one engine and measures what that state takes:
Python heap (``tracemalloc``, everything the engine allocated: journey objects, dict
entries, keys, timers, gauge and rollup cells, event-id hashes) and the changelog bytes
that persist it (keys and values of the records one flush writes).
"""

from __future__ import annotations

import tracemalloc
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from contract.events import Channel, Event, decode_event
from processors.context import Context
from processors.engine import PartitionEngine


@dataclass(frozen=True, slots=True)
class StateSize:
    """Bytes of state per open journey."""

    journeys: int
    memory_bytes_per_journey: float
    changelog_bytes_per_journey: float
    journey_record_bytes: float


def _events(ctx: Context, n: int) -> list[Event]:
    cat = ctx.catalog
    svc = next(
        s.service
        for s in cat.services.values()
        if Channel.PORTAL in s.service.channels and s.service.steps
    )
    muni = next(iter(cat.municipalities))
    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    out: list[Event] = []
    for i in range(n):
        at = t0 + timedelta(milliseconds=i)
        for etype, attrs in (
            ("journey.started", {}),
            ("journey.step", {"step": svc.steps[0].code}),
        ):
            body = {
                "event_id": str(uuid.UUID(int=len(out) + 1)),
                "type": etype,
                "schema_version": 1,
                "occurred_at": at.isoformat(),
                "agency": svc.agency,
                "service": svc.code,
                "municipality": muni,
                "channel": "portal",
                "journey": f"journey-{i:08d}-{uuid.UUID(int=i).hex[:12]}",
                "attrs": attrs,
            }
            ev = decode_event(msgspec.json.encode(body))
            assert isinstance(ev, Event), ev  # noqa: S101 - built valid above
            out.append(ev)
    return out


def open_journey_state(ctx: Context, n: int = 20_000) -> StateSize:
    """Measure the state of ``n`` open journeys (two events each) in one engine."""
    events = _events(ctx, n)
    received = int(datetime(2026, 3, 2, 10, 1, tzinfo=UTC).timestamp() * 1000)
    engine = PartitionEngine(0, ctx)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for ev in events:
            engine.apply(ev, received)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    out = engine.flush()
    journey_bytes = [len(k) + len(v or b"") for k, v in out.changelog if k.startswith(b"j|")]
    changelog = sum(len(k) + len(v or b"") for k, v in out.changelog)
    return StateSize(
        journeys=n,
        memory_bytes_per_journey=grown / n,
        changelog_bytes_per_journey=changelog / n,
        journey_record_bytes=sum(journey_bytes) / max(1, len(journey_bytes)),
    )
