"""Drives a PartitionEngine the way the runner does, with the topics kept as dicts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from contract import aggregates as agg
from processors import recovery
from processors.context import Context
from processors.engine import DeadLetterRecord, PartitionEngine
from processors.rollups import Stage
from processors.state import Journey
from tests.fixtures.aggregates import merged
from tests.fixtures.streams import records


class Harness:
    """One partition's engine plus its materialised changelog and aggregates."""

    def __init__(self, ctx: Context, partition: int = 0) -> None:
        self.ctx = ctx
        self.partition = partition
        self.engine = PartitionEngine(partition, ctx)
        self.aggregates: dict[bytes, bytes] = {}
        #: the ClosedDay records written to ``<prefix>.days``
        self.closed: dict[bytes, bytes] = {}
        self.changelog: dict[bytes, bytes | None] = {}
        self.dead: list[DeadLetterRecord] = []
        self.writes: list[tuple[bytes, bytes]] = []

    def feed(
        self, events: Iterable[dict[str, Any] | bytes], received: datetime | None = None
    ) -> None:
        """Process events as one transaction and commit."""
        self.dead += self.engine.process(
            records(events, partition=self.partition, received=received)
        )
        self.commit()

    def commit(self) -> None:
        out = self.engine.flush()
        for k, v in out.changelog:
            self.changelog[k] = v
        for k, v in out.aggregates:
            if v is None:  # the keys of a day made final
                assert k.startswith((b"r|", b"s|")), k
                self.aggregates.pop(k, None)
                continue
            self.aggregates[k] = v
            self.writes.append((k, v))
        for k, v in out.days:
            assert v is not None and k not in self.closed, f"day closed twice: {k!r}"
            self.closed[k] = v

    def restart(self, stage: Stage | None = None) -> None:
        """Replace the engine by one restored from the changelog and aggregates."""
        self.engine = self.restored(stage)

    def restored(self, stage: Stage | None = None) -> PartitionEngine:
        """A new engine restored from the changelog and aggregates written so far
        (closed days staged in ``stage``, else in one of the default size)."""
        engines = {self.partition: PartitionEngine(self.partition, self.ctx)}
        stage = Stage() if stage is None else stage
        recovery.load(
            engines,
            ((self.partition, k, v) for k, v in self.changelog.items()),
            self.aggregates.items(),
            stage,
        )
        recovery.finish(engines, stage)
        return engines[self.partition]

    def rollup(self, day: str | None = None, **dims: str) -> agg.Rollup:
        """Sum of the rollups of ``day`` (all days if None) matching ``dims``."""
        out = []
        for k, v in self.everything().items():
            key = agg.decode_key(k)
            if not isinstance(key, agg.RollupKey) or (day is not None and key.day != day):
                continue
            cell = key.dims._asdict()
            if all(cell[n] == val for n, val in dims.items()):
                out.append(agg.decode_rollup(v))
        return agg.sum_rollups(out)

    def gauges(self, **dims: str) -> agg.Gauges:
        """Sum of the gauge records matching ``dims``."""
        total = agg.Gauges()
        for k, v in self.aggregates.items():
            key = agg.decode_key(k)
            if not isinstance(key, agg.GaugeKey):
                continue
            cell = key.dims._asdict()
            if all(cell[n] == val for n, val in dims.items()):
                g = agg.decode_gauges(v)
                for f in agg.Gauges.__struct_fields__:
                    setattr(total, f, getattr(total, f) + getattr(g, f))
        return total

    def everything(self) -> dict[bytes, bytes]:
        """The live aggregates with the closed days as the records they replaced."""
        return merged(self.aggregates, self.closed)

    def days(self) -> dict[str, agg.Rollup]:
        """Rollups summed per day (closed days included)."""
        keys = (agg.decode_key(k) for k in self.everything())
        days = sorted({k.day for k in keys if isinstance(k, agg.RollupKey)})
        return {d: self.rollup(d) for d in days}


def fingerprint(e: PartitionEngine) -> dict[str, Any]:
    """Everything an engine holds that decides its future outputs, comparably."""
    enc = msgspec.msgpack.encode

    def table(d: dict[str, Any]) -> dict[str, bytes]:
        out = {}
        for k, v in d.items():
            if isinstance(v, Journey):
                v = msgspec.structs.replace(v, persisted=False)
            out[k] = enc(v)
        return out

    return {
        "journeys": table(e.journeys.journeys),
        "cases": table(e.journeys.cases),
        "appeals": table(e.appeals.appeals),
        "requests": table(e.appeals.requests),
        "closed": e.closed.items(),
        "dedup": e.dedup.items(),
        "watermark": (e.wm.max_event_ms, e.wm.watermark_ms, e.wm.live),
        "final_day": e.rollups.final_day,
        "gauges": {k: v for k, v in e.gauges.counts.items() if any(v)},
        "timers": sorted({_effective(e, t) for t in e.timers._heap if _live_timer(e, t)}),
    }


def _effective(e: PartitionEngine, t: tuple[int, int, str]) -> tuple[int, int, str]:
    """An abandon timer fires at last activity + timeout, wherever it sits in the heap
    (an earlier one re-arms itself when due)."""
    _due, kind, key = t
    if kind == 0:
        j = e.journeys.journeys[key]
        return (j.last_ms + e.ctx.services[j.dims[1]].abandon_ms, 0, key)
    return t


def _live_timer(e: PartitionEngine, t: tuple[int, int, str]) -> bool:
    due, kind, key = t
    if kind == 0:
        j = e.journeys.journeys.get(key)
        return j is not None and j.status == 0 and j.dims[3] in ("portal", "mobile")
    h = e.ctx.horizon_ms
    if kind == 1:
        j = e.journeys.journeys.get(key)
        return j is not None and j.deadline_ms == due and not j.overdue
    if kind == 2:
        a = e.appeals.appeals.get(key)
        return a is not None and a.answered_ms is None and not a.overdue and a.deadline_ms == due
    if kind == 4:
        c = e.journeys.cases.get(key)
        return c is not None and c.open <= 0 and c.idle_ms is not None and c.idle_ms + h == due
    if kind == 5:
        a = e.appeals.appeals.get(key)
        return a is not None and a.answered_ms is not None and a.answered_ms + h == due
    if kind == 6:
        q = e.appeals.requests.get(key)
        return q is not None and q.responded_ms is not None and q.responded_ms + h == due
    return True
