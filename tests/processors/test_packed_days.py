"""Closed days held packed: the cells a late event can still change, compressed.

A book that packs and one that keeps every cell loose are fed the same restore and the
same changes; the records they write (``r|``, ``s|``, ClosedDay) must be the same bytes.
"""

from __future__ import annotations

from contract import aggregates as agg
from contract.aggregates import Dims, RollupKey
from processors.rollups import Records, RollupBook

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04")
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
    assert {agg.decode_key(k).day for k, _ in out} == {DAYS[1]}
    # the flush packed the group again, the touched cell as the bytes just written
    assert (DAYS[1], "soc") in packed.packed and not packed.cells[DAYS[1]]
    touch(packed, DAYS[1], d)
    touch(loose, DAYS[1], d)
    same(packed.flush(), loose.flush())
    assert agg.decode_rollup(dict(out)[RollupKey(0, DAYS[1], d).encode()]).started == 5


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
    closed = [agg.decode_closed_day(v) for _, v in days]
    soc = next(c for c in closed if (c.day, c.agency) == (DAYS[2], "soc"))
    assert soc.restatement is not None and soc.restatement.count == 1
    # 201..206 as restored, the touched cell (k=1) one more
    assert sorted(c.rollup.events for c in soc.cells) == [201, 203, 203, 204, 205, 206]
