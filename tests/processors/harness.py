"""Drives a PartitionEngine the way the runner does, with the topics kept as dicts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from contract import aggregates as agg
from processors.context import Context
from processors.engine import DeadLetter, PartitionEngine
from tests.fixtures.streams import records


class Harness:
    """One partition's engine plus its materialised changelog and aggregates."""

    def __init__(self, ctx: Context, partition: int = 0) -> None:
        self.ctx = ctx
        self.partition = partition
        self.engine = PartitionEngine(partition, ctx)
        self.aggregates: dict[bytes, bytes] = {}
        self.changelog: dict[bytes, bytes | None] = {}
        self.dead: list[DeadLetter] = []
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
            assert v is not None
            self.aggregates[k] = v
            self.writes.append((k, v))

    def restart(self) -> None:
        """Replace the engine by one restored from the changelog and aggregates."""
        e = PartitionEngine(self.partition, self.ctx)
        for k, v in self.changelog.items():
            e.restore_changelog(k, v)
        for k, v in self.aggregates.items():
            parts = k.decode().split("|")
            if int(parts[1]) == self.partition:
                e.restore_aggregate(parts, v)
        e.finish_restore()
        self.engine = e

    def rollup(self, day: str | None = None, **dims: str) -> agg.Rollup:
        """Sum of the rollups of ``day`` (all days if None) matching ``dims``."""
        names = ("agency", "service", "municipality", "channel", "life_situation")
        out = []
        for k, v in self.aggregates.items():
            parts = k.decode().split("|")
            if parts[0] != "r" or (day is not None and parts[2] != day):
                continue
            cell = dict(zip(names, parts[3:], strict=True))
            if all(cell[n] == val for n, val in dims.items()):
                out.append(agg.decode_rollup(v))
        return agg.sum_rollups(out)

    def gauges(self, **dims: str) -> agg.Gauges:
        """Sum of the gauge records matching ``dims``."""
        names = ("agency", "service", "municipality", "channel")
        total = agg.Gauges()
        for k, v in self.aggregates.items():
            parts = k.decode().split("|")
            if parts[0] != "g":
                continue
            cell = dict(zip(names, parts[2:], strict=True))
            if all(cell[n] == val for n, val in dims.items()):
                g = agg.decode_gauges(v)
                for f in agg.Gauges.__struct_fields__:
                    setattr(total, f, getattr(total, f) + getattr(g, f))
        return total

    def days(self) -> dict[str, agg.Rollup]:
        """Rollups summed per day."""
        days = sorted({k.decode().split("|")[2] for k in self.aggregates if k.startswith(b"r|")})
        return {d: self.rollup(d) for d in days}
