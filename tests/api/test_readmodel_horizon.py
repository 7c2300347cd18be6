"""Closed days in the read model (docs/AGGREGATES.md, "Bounded history"), without a broker.

The processor closes a day of a partition by writing its ClosedDay records to
``<prefix>.days`` and tombstoning the ``r|``/``s|`` keys they replace. The read model
reads both topics independently, so the records arrive in any interleaving, and after
compaction either side may be gone. Every interleaving and every compacted variant must
give the same totals and per-day sums as an independent count, /metrics must not move
when a day closes, and a frozen day must sum as a decoded one.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from api.readmodel import ReadModel
from contract import aggregates as agg
from contract.aggregates import ClosedCell, ClosedDay, Dims, Restatement, Rollup, RollupKey
from contract.catalog import load_catalog
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import TopicPartition

CATALOG = load_catalog()
TOPICS = Topics("unit")
DAYS = ("2026-10-01", "2026-10-02", "2026-10-03")
PARTS = (0, 1, 2)
CELLS = (
    ("minsoc", "large_family_status", "75701000", "portal", ""),
    ("minsoc", "large_family_status", "75738000", "mfc", ""),
    ("minsoc", "housing_subsidy", "75701000", "mobile", ""),
    ("minobr", "", "75742000", "office", ""),
)
#: (day, partition, agency) closed in the scenario: the first two days everywhere
CLOSED = {(d, p, a) for d in DAYS[:2] for p in PARTS for a in ("minsoc", "minobr")}

Rec = tuple[str, bytes, bytes | None]  # (topic, key, value)


def _rollup(rng: random.Random, scale: int) -> Rollup:
    r = Rollup(started=rng.randint(1, 9) * scale, submitted=rng.randint(0, 5) * scale)
    r.decisions = {"approved:on_time": rng.randint(0, 4) * scale}
    r.office_visits = {"mfc_center:true": rng.randint(0, 3) * scale}
    return r


class Scenario:
    """Rollup versions of every key, the ClosedDay records and the true final values."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.versions: dict[bytes, list[Rollup]] = {}
        self.final: dict[bytes, Rollup] = {}
        for day in DAYS:
            for p in PARTS:
                for a, s, m, c, ls in CELLS:
                    if rng.random() < 0.25:
                        continue
                    key = RollupKey(p, day, Dims(a, s, m, c, ls)).encode()
                    vs = []
                    acc = Rollup()
                    for _ in range(rng.randint(1, 3)):
                        acc.add(_rollup(rng, 1))
                        vs.append(agg.decode_rollup(agg.encode(acc)))
                    self.versions[key] = vs
                    self.final[key] = vs[-1]
        # one closed cell the aggregates topic lost to compaction (never seen as r|)
        lost = RollupKey(1, DAYS[0], Dims("minsoc", "housing_subsidy", "75738000", "portal", ""))
        self.final[lost.encode()] = _rollup(rng, 7)
        self.days: list[tuple[bytes, bytes]] = []
        for day, p, a in sorted(CLOSED):
            cells = []
            for key, r in self.final.items():
                _, kp, kd, ka, s, m, c, ls = key.decode().split("|")
                if (kd, int(kp), ka) == (day, p, a):
                    cells.append(ClosedCell(s, m, c, ls, r))
            rs = Restatement(count=2, last_at="2026-10-09T10:00:00+05:00") if p == 1 else None
            cd = ClosedDay(day, p, a, cells, rs, closed_at=1.0)
            self.days.append((agg.closed_day_key(day, p, a), agg.encode(cd)))
        self.lost = lost.encode()

    @staticmethod
    def closed(key: bytes) -> bool:
        _, p, day, a, *_ = key.decode().split("|")
        return (day, int(p), a) in CLOSED

    def aggregates(self, compacted: str) -> list[Rec]:
        """The aggregates topic: full log, compacted (tombstones kept) or tombstones gone."""
        out: list[Rec] = []
        for key, vs in self.versions.items():
            closed = self.closed(key)
            if compacted == "full":
                out.extend((TOPICS.aggregates, key, agg.encode(v)) for v in vs)
                if closed:
                    out.append((TOPICS.aggregates, key, None))
            elif compacted == "latest":
                out.append((TOPICS.aggregates, key, None if closed else agg.encode(vs[-1])))
            elif not closed:  # "gone": tombstones past delete.retention.ms
                out.append((TOPICS.aggregates, key, agg.encode(vs[-1])))
        for day, p, a in sorted(CLOSED):
            if p == 1 and compacted == "full":
                rs = agg.encode(Restatement(count=1, last_at="2026-10-08T10:00:00+05:00"))
                out.append((TOPICS.aggregates, agg.restatement_key(p, day, a), rs))
                out.append((TOPICS.aggregates, agg.restatement_key(p, day, a), None))
        return out

    def expected(self) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, str], int]]:
        """started by cell over all days, and by (day, agency)."""
        by_cell: dict[tuple[str, ...], int] = defaultdict(int)
        by_day: dict[tuple[str, str], int] = defaultdict(int)
        for key, r in self.final.items():
            _, _p, day, a, s, m, c, ls = key.decode().split("|")
            by_cell[(a, s, m, c, ls)] += r.started
            by_day[(day, a)] += r.started
        return dict(by_cell), dict(by_day)


def interleave(rng: random.Random, a: Sequence[Rec], b: Sequence[Rec]) -> Iterator[Rec]:
    """A random merge of two streams keeping the order within each."""
    i = j = 0
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and rng.random() < 0.5):
            yield a[i]
            i += 1
        else:
            yield b[j]
            j += 1


def feed(m: ReadModel, records: Iterator[Rec]) -> None:
    with m.lock:
        for topic, key, value in records:
            m._apply(topic, key, value, 0)


def observed(m: ReadModel) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, str], int]]:
    by_cell: dict[tuple[str, ...], int] = {c: r.started for c, r in m.totals() if r.started}
    by_day = {}
    for day in m.days():
        for a, r in m.period(day, day, lambda g: g[0]).items():
            if r.started:
                by_day[(day, a)] = r.started
    return by_cell, by_day


def _model() -> ReadModel:
    return ReadModel(CommonSettings(), TOPICS, CATALOG)


@pytest.mark.parametrize("compacted", ["full", "latest", "gone"])
@pytest.mark.parametrize("order", ["days_first", "days_last", "interleaved"])
def test_closed_days_are_exact_in_every_order(compacted: str, order: str) -> None:
    sc = Scenario(15)
    days: list[Rec] = [(TOPICS.days, k, v) for k, v in sc.days]
    aggregates = sc.aggregates(compacted)
    for seed in range(8 if order == "interleaved" else 1):
        m = _model()
        if order == "days_first":
            stream: Iterator[Rec] = iter(days + aggregates)
        elif order == "days_last":
            stream = iter(aggregates + days)
        else:
            stream = interleave(random.Random(seed), aggregates, days)
        feed(m, stream)
        assert observed(m) == sc.expected(), (compacted, order, seed)
        mem = m.memory()
        # nothing of a closed day is held per key; the live day's keys are
        live = sum(1 for k in sc.versions if not sc.closed(k))
        assert (mem["live_keys"], mem["pending_keys"], mem["closed"]) == (live, 0, len(CLOSED))
        # the closed day's restatement log replaces the s| records
        rs = {(d, a): r.count for d, a, r in m.restatements(DAYS[0], DAYS[-1])}
        assert rs == {(d, a): 2 for d in DAYS[:2] for a in ("minobr", "minsoc")}
        assert m.conflicting_days == 0 and m.bad_records == 0


def test_records_of_a_closed_day_arriving_later_are_ignored() -> None:
    sc = Scenario(3)
    m = _model()
    feed(m, iter([(TOPICS.days, k, v) for k, v in sc.days]))
    feed(m, iter(sc.aggregates("latest")))
    want = sc.expected()
    # a stale value of a closed key, and the same d| record again: nothing moves
    stale = next(k for k in sc.versions if sc.closed(k))
    feed(m, iter([(TOPICS.aggregates, stale, agg.encode(_rollup(random.Random(1), 50)))]))
    feed(m, iter([(TOPICS.days, *sc.days[0])]))
    assert observed(m) == want
    # a different record for a closed (day, partition, agency) is refused and counted
    key, value = sc.days[0]
    other = agg.decode_closed_day(value)
    other.cells.append(
        ClosedCell("housing_subsidy", "75742000", "mfc", "", _rollup(random.Random(2), 9))
    )
    feed(m, iter([(TOPICS.days, key, agg.encode(other))]))
    assert observed(m) == want
    assert m.conflicting_days == 1


def test_metrics_do_not_move_when_a_day_closes() -> None:
    sc = Scenario(21)
    m = _model()
    live = [(t, k, v) for t, k, v in sc.aggregates("full") if v is not None]
    feed(m, iter(live))
    with m.lock:
        before = m.exposition.payload()
    # the cell lost to compaction is in the ClosedDay only: leave it out of this check
    sc.days = [(k, agg.encode(_without(agg.decode_closed_day(v), sc.lost))) for k, v in sc.days]
    tombstones = [(t, k, v) for t, k, v in sc.aggregates("full") if v is None]
    days = [(TOPICS.days, k, v) for k, v in sc.days]
    # after every single record of the close, in either order: not a byte moves
    for rec in interleave(random.Random(4), tombstones, days):
        feed(m, iter([rec]))
        with m.lock:
            assert m.exposition.payload() == before, rec[1]
    assert m.memory()["closed"] == len(CLOSED)


def _without(cd: ClosedDay, key: bytes) -> ClosedDay:
    cd.cells = [
        c
        for c in cd.cells
        if RollupKey(
            cd.partition,
            cd.day,
            Dims(cd.agency, c.service, c.municipality, c.channel, c.life_situation),
        ).encode()
        != key
    ]
    return cd


def test_frozen_days_sum_as_decoded_ones_and_thaw_on_change() -> None:
    sc = Scenario(8)
    m = _model()
    values = [(t, k, v) for t, k, v in sc.aggregates("full") if v is not None]
    feed(m, iter(values))
    with m.lock:
        assert m.freeze(older_than=0.0) == len(DAYS)
    mem = m.memory()
    assert (mem["days_decoded"], mem["live_keys_decoded"]) == (0, 0)
    assert mem["live_keys"] == len(sc.versions)
    # closing frozen days, tombstones and records interleaved, then freezing again
    tombstones = [(t, k, v) for t, k, v in sc.aggregates("full") if v is None]
    days = [(TOPICS.days, k, v) for k, v in sc.days]
    feed(m, interleave(random.Random(2), tombstones, days))
    want = sc.expected()
    assert observed(m) == want
    with m.lock:
        m.freeze(older_than=0.0)
    assert m.memory()["days_decoded"] == 0
    assert observed(m) == want
    # a rewrite of a live key thaws its day and its values and is applied exactly once
    key = next(k for k in sc.versions if not sc.closed(k))
    grown = agg.decode_rollup(agg.encode(sc.final[key]))
    grown.started += 5
    feed(m, iter([(TOPICS.aggregates, key, agg.encode(grown))]))
    assert m.memory()["days_decoded"] == 1
    cell_want, day_want = want
    _, _p, day, a, s, mu, c, ls = key.decode().split("|")
    cell_want[(a, s, mu, c, ls)] += 5
    day_want[(day, a)] += 5
    assert observed(m) == (cell_want, day_want)
    # frozen again: new bytes, so the sums remembered for the old ones are not used
    with m.lock:
        m.freeze(older_than=0.0)
    assert observed(m) == (cell_want, day_want)


def test_a_period_of_whole_months_equals_its_days() -> None:
    m = _model()
    rng = random.Random(5)
    days = ["2026-08-31", "2026-09-01", "2026-09-17", "2026-09-30", "2026-10-01", "2026-10-02"]
    for day in days:
        for p in PARTS:
            for a, s, mu, c, ls in CELLS:
                key = RollupKey(p, day, Dims(a, s, mu, c, ls)).encode()
                feed(m, iter([(TOPICS.aggregates, key, agg.encode(_rollup(rng, 1)))]))
    with m.lock:
        m.freeze(older_than=0.0)

    def by_days(d0: str, d1: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for day in m.days():
            if d0 <= day <= d1:
                for a, r in m.period(day, day, lambda g: g[0]).items():
                    out[a] += r.started
        return dict(out)

    # September whole (its month summary), with and without partial months around it
    for d0, d1 in [
        ("2026-09-01", "2026-09-30"),
        ("2026-08-31", "2026-10-01"),
        ("2026-01-01", "2026-12-31"),
        ("2026-09-02", "2026-09-30"),
    ]:
        got = {a: r.started for a, r in m.period(d0, d1, lambda g: g[0]).items()}
        assert got == by_days(d0, d1), (d0, d1)


def test_the_snapshot_keeps_closed_days_frozen_values_and_refuses_a_truncated_file(
    tmp_path: Path,
) -> None:
    sc = Scenario(11)
    snap = tmp_path / "rm.snapshot"
    m = ReadModel(CommonSettings(), TOPICS, CATALOG, snapshot=snap)
    full = sc.aggregates("full")
    # values, then half the close: tombstones read, no d| record yet (values pending)
    feed(m, iter([r for r in full if r[2] is not None]))
    with m.lock:
        m.freeze(older_than=0.0)
    feed(m, iter([r for r in full if r[2] is None]))
    feed(m, iter([(TOPICS.days, k, v) for k, v in sc.days[:3]]))
    with m.lock:
        m._offsets = {(TOPICS.aggregates, 0): 5}
    m.save_snapshot()
    ends = {TopicPartition(TOPICS.aggregates, 0): 5}

    back = ReadModel(CommonSettings(), TOPICS, CATALOG, snapshot=snap)
    back._start_from_saved(ends)
    assert back.status.restored_from_snapshot
    assert observed(back) == observed(m) and back.memory() == m.memory()
    # the rest of the close after the restart: exact
    feed(back, iter([(TOPICS.days, k, v) for k, v in sc.days[3:]]))
    assert observed(back) == sc.expected()
    assert back.memory()["pending_keys"] == 0

    snap.write_bytes(snap.read_bytes()[:-10])
    cut = ReadModel(CommonSettings(), TOPICS, CATALOG, snapshot=snap)
    cut._start_from_saved(ends)
    assert not cut.status.restored_from_snapshot and cut.days() == []
