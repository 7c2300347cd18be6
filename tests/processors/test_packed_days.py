"""Closed days held packed: the cells a late event can still change, compressed.

A book that packs and one that keeps every cell loose are fed the same restore and the
same changes; the records they write (``r|``, ``s|``, ClosedDay) must be the same bytes.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import pytest

from contract import aggregates as agg
from contract.aggregates import Dims, RollupKey
from contract.catalog import Catalog
from contract.methodology import load_methodology
from processors import recovery, rollups
from processors import state as st
from processors.context import Context
from processors.engine import PartitionEngine
from processors.rollups import Records, RollupBook, Stage
from tests.fixtures.streams import CATALOG_PATH

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04")
CTX = Context(
    Catalog.from_file(CATALOG_PATH),
    load_methodology().standards,
    restatement_horizon=timedelta(days=35),
)
AGENCIES = ("mvd", "soc", "zags")


class Loose(RollupBook):
    """The book as it was before packing: every cell stays in ``cells``."""

    def pack(self) -> int:
        return 0


def dims(agency: str, k: int) -> Dims:
    return Dims(agency, f"svc{'abc'[k % 3]}", f"mun{'xyz'[k // 3 % 3]}", "mfc", "")


def restored(book: RollupBook) -> RollupBook:
    """Three closed days and one open one, a few cells per agency, as restored bytes."""
    for n, day in enumerate(DAYS):
        for agency in AGENCIES:
            for k in range(6):
                r = agg.Rollup(events=n * 100 + k + 1, started=k, late={"too_late": n})
                key = RollupKey(book.partition, day, dims(agency, k))
                book.restore(key, agg.encode(r), book.intern)
    book.open_day = DAYS[-1]
    book.final_day = DAYS[0]
    return book


def pair() -> tuple[RollupBook, RollupBook]:
    packed, loose = restored(RollupBook(0)), restored(Loose(0))
    assert packed.pack() == 3 * len(AGENCIES) * 6  # the closed days (none final)
    return packed, loose


def touch(book: RollupBook, day: str, d: Dims) -> None:
    r = book.cell(day, d, "started")
    r.started += 1
    r.events += 1
    book.end_event(1_772_600_000_000, "journey.started")


def value(v: bytes | None) -> bytes:
    """A record's value that is not a tombstone."""
    assert v is not None
    return v


def day_of(key: bytes) -> str:
    """The day of a record key of a day (``r|``, ``s|`` or ``d|``)."""
    k = agg.decode_key(key)
    assert isinstance(k, RollupKey | agg.RestatementKey | agg.ClosedDayKey), k
    return k.day


def same(a: Records, b: Records) -> None:
    assert sorted(a, key=repr) == sorted(b, key=repr)


def test_packing_keeps_every_cell_and_leaves_open_days_loose() -> None:
    packed, loose = pair()
    assert len(packed) == len(loose) == len(DAYS) * len(AGENCIES) * 6
    assert sorted(packed.packed) == [(d, a) for d in DAYS[:3] for a in AGENCIES]
    assert sorted(packed.cells) == sorted(DAYS), "a packed day keeps its row"
    assert not any(packed.cells[d] for d in DAYS[:3])
    assert packed.cells[DAYS[3]] == loose.cells[DAYS[3]], "the open day stays loose"
    assert packed.pack() == 0, "nothing loose is left to pack"


def test_a_touch_unpacks_its_group_only_and_writes_the_same_bytes() -> None:
    packed, loose = pair()
    d = dims("soc", 4)
    for book in (packed, loose):
        touch(book, DAYS[1], d)
    assert (DAYS[1], "soc") not in packed.packed
    assert (DAYS[1], "mvd") in packed.packed and (DAYS[2], "soc") in packed.packed
    soc = {k: v for k, v in loose.cells[DAYS[1]].items() if k.agency == "soc"}
    assert packed.cells[DAYS[1]] == soc and len(soc) == 6  # soc's cells, all six
    out = packed.flush()
    same(out, loose.flush())
    assert {day_of(k) for k, _ in out} == {DAYS[1]}
    # the flush packed the group again, the touched cell as the bytes just written
    assert (DAYS[1], "soc") in packed.packed and not packed.cells[DAYS[1]]
    touch(packed, DAYS[1], d)
    touch(loose, DAYS[1], d)
    same(packed.flush(), loose.flush())
    assert agg.decode_rollup(value(dict(out)[RollupKey(0, DAYS[1], d).encode()])).started == 5


def test_a_new_cell_of_a_packed_group_joins_it() -> None:
    packed, loose = pair()
    d = Dims("zags", "svcnew", "munx", "portal", "")
    for book in (packed, loose):
        touch(book, DAYS[2], d)
    assert len(packed.cells[DAYS[2]]) == 7
    same(packed.flush(), loose.flush())
    assert packed.packed[(DAYS[2], "zags")][0] == 7


def test_a_dirty_group_is_not_packed_until_flushed() -> None:
    packed, _ = pair()
    d = dims("mvd", 0)
    touch(packed, DAYS[2], d)
    assert packed.pack() == 0 and (DAYS[2], "mvd") not in packed.packed
    packed.flush()
    assert (DAYS[2], "mvd") in packed.packed


def test_finalize_from_packed_groups_writes_the_same_closed_days() -> None:
    packed, loose = pair()
    for book in (packed, loose):
        touch(book, DAYS[2], dims("soc", 1))  # a restatement of a packed day
        assert book.finalize(DAYS[3], 1_772_700_000_000) == 3  # the three closed days
    assert not packed.packed and sorted(packed.cells) == [DAYS[3]]
    days = packed.flush_days()
    assert days == loose.flush_days() and len(days) == 3 * len(AGENCIES)
    same(packed.flush(), loose.flush())
    closed = [agg.decode_closed_day(value(v)) for _, v in days]
    soc = next(c for c in closed if (c.day, c.agency) == (DAYS[2], "soc"))
    assert soc.restatement is not None and soc.restatement.count == 1
    # 201..206 as restored, the touched cell (k=1) one more
    assert sorted(c.rollup.events for c in soc.cells) == [201, 203, 203, 204, 205, 206]


# -- staged by a restore ---------------------------------------------------------------------


class Watched(Stage):
    """A stage that remembers how much it held after every record."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.sizes: list[int] = []

    def add(self, book: RollupBook, day: str, agency: str, tail: str, value: bytes | None) -> None:
        super().add(book, day, agency, tail, value)
        self.sizes.append(self.size)


def history(days: int, per_agency: int) -> Iterator[tuple[bytes, bytes]]:
    """``r|`` records of ``days`` days from 1 March, ``per_agency`` cells per agency a
    day, each about 300 bytes, in the order a processor writes them (day by day)."""
    for n in range(days):
        day = f"2026-03-{n + 1:02d}"
        for k in range(per_agency):
            for agency in AGENCIES:
                r = agg.Rollup(
                    events=n * 1000 + k, started=k, steps={f"step{q}": q + k for q in range(12)}
                )
                d = Dims(agency, f"svc{k}", "75701000", "mfc", "")
                yield RollupKey(0, day, d).encode(), agg.encode(r)


def every_cell(book: RollupBook) -> dict[tuple[str, Dims], bytes]:
    """Every cell the book holds, packed or loose, as record bytes (unpacking all)."""
    for day, agency in list(book.packed):
        book._unpack(day, agency, book.cells.setdefault(day, {}))
    return {
        (day, d): v if isinstance(v, bytes) else agg.encode(v)
        for day, row in book.cells.items()
        for d, v in row.items()
    }


def restore_engine(
    records: Sequence[tuple[bytes, bytes | None]], stage: Stage, open_day: str, final_day: str
) -> PartitionEngine:
    """A partition engine restored from a changelog holding just the watermark (noon of
    ``open_day``) and ``final_day``, and ``records`` of the aggregates topic."""
    wm = round(datetime.fromisoformat(f"{open_day}T12:00:00+05:00").timestamp() * 1000)
    meta = st.encode(st.Meta(wm + 300_000, wm, False, wm, final_day))
    engines = {0: PartitionEngine(0, CTX)}
    recovery.load(engines, [(0, st.META_KEY, meta)], records, stage)
    recovery.finish(engines, stage)
    return engines[0]


def test_a_restore_never_stages_more_than_its_limit_and_loses_no_cell() -> None:
    limit = 16 * 1024
    records = list(history(8, 40))
    # an uncompacted tail: newer values of a few keys of closed days, long after the first
    rewritten = records[200][0], records[700][0]
    records += [(k, agg.encode(agg.Rollup(events=999_999))) for k in rewritten]
    staged = 0  # the raw bytes of the closed days' records: tails and values
    for k, v in records:
        parts = agg.split_rollup_key(k)
        assert parts is not None
        if "2026-03-02" <= parts[1] < "2026-03-08":
            staged += len(parts[3]) + len(v)
    assert staged > 6 * limit, "the history must be several stages"
    stage = Watched(limit)
    e = restore_engine(records, stage, open_day="2026-03-08", final_day="2026-03-02")
    assert max(stage.sizes) <= limit and stage.peak <= limit
    assert stage.packs > staged // limit
    book = e.rollups
    assert not book.staged and stage.size == 0
    # the open day loose, closed days packed (in several parts), the final day not held
    assert {d for d, row in book.cells.items() if row} == {"2026-03-08"}
    assert {d for d, _ in book.packed} == {f"2026-03-0{n}" for n in range(2, 8)}
    assert "2026-03-01" not in book.cells
    assert max(len(parts) for _, parts in book.packed.values()) > 1
    want = {
        (k.day, k.dims): v
        for k, v in ((agg.decode_key(k), v) for k, v in records)
        if isinstance(k, RollupKey) and k.day >= "2026-03-02" and v is not None
    }
    assert every_cell(book) == want  # the later values of the rewritten keys
    assert sum(agg.decode_rollup(v).events == 999_999 for v in want.values()) == 2


def test_a_tombstone_staged_after_a_value_deletes_it_across_parts() -> None:
    records: list[tuple[bytes, bytes | None]] = list(history(3, 30))
    gone = records[3][0]
    records.append((gone, None))
    stage = Watched(4 * 1024)
    e = restore_engine(records, stage, open_day="2026-03-03", final_day="")
    assert stage.packs > 2
    held = every_cell(e.rollups)
    key = agg.decode_key(gone)
    assert isinstance(key, RollupKey) and (key.day, key.dims) not in held
    assert len(held) == 3 * 30 * len(AGENCIES) - 1


def test_records_of_final_days_are_never_held_even_before_their_tombstones() -> None:
    records: list[tuple[bytes, bytes | None]] = list(history(4, 10))
    stage = Watched(1 << 30)
    e = restore_engine(records, stage, open_day="2026-03-04", final_day="2026-03-03")
    assert all(k[0] >= "2026-03-03" for k in e.rollups.packed)
    assert {d for d, row in e.rollups.cells.items() if row} == {"2026-03-04"}
    # nothing of 1 and 2 March was staged at all
    assert len(stage.sizes) == 10 * len(AGENCIES)


def test_a_closed_day_near_the_record_limit_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    packed, _ = pair()
    loose = restored(Loose(0))
    loose.finalize(DAYS[3], 1_772_700_000_000)
    sizes = sorted(len(value(v)) for _, v in loose.flush_days())
    cut = sizes[len(sizes) // 2]
    monkeypatch.setattr(rollups, "DAYS_WARN_BYTES", cut)
    with caplog.at_level(logging.WARNING, logger="processors.rollups"):
        packed.finalize(DAYS[3], 1_772_700_000_000)
    days = packed.flush_days()
    over = [agg.decode_closed_day(value(v)) for _, v in days if len(value(v)) > cut]
    assert over and len(over) < len(days)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(over)
    assert all(f"partition=0 agency={c.agency} " in m for c, m in zip(over, logged, strict=True))


def test_a_packed_frame_holds_only_its_own_bytes() -> None:
    """python-zstandard hands back a frame in a buffer of the input's size: packed
    groups would then hold several times their frames (1.4 GiB instead of 145 MiB at
    a year of the demo's rate)."""
    data = b"".join(agg.encode(agg.Rollup(events=k, started=k % 7)) for k in range(20_000))
    tracemalloc.start()
    try:
        frame = rollups._compress(data)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frame) * 5 < len(data), "the data must compress well for this to tell"
    assert held < 2 * len(frame) + 4096, (held, len(frame))
