"""State that outlives its objects is bounded: timers of closed journeys, the archive.

A decided journey's deadline timer may lie weeks ahead and the archive remembers a week
of closed journeys; both must cost memory in proportion to what they are for, and
neither may change a single output.
"""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.aggregates import Dims
from processors import archive, watermark
from processors.archive import HOUR_MS, ClosedJourneys, key_hash
from processors.context import Context
from processors.state import ABANDONED, DECIDED, Intern
from processors.watermark import ABANDON, EVICT_JOURNEY, OVERDUE, Timers
from tests.fixtures.streams import event, generate, local
from tests.processors.harness import Harness, fingerprint

DAY_MS = 86_400_000
DIMS = Dims("minsoc", "svc", "muni", "portal", "")


# -- timers ------------------------------------------------------------------------------


def test_timers_of_forgotten_keys_are_dropped_and_the_rest_fire_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watermark, "_MIN_COMPACT", 8)
    live: dict[str, int] = {}
    timers = Timers()
    timers.watch(OVERDUE, live)
    expected = []
    for i in range(100):
        key = f"j{i}"
        live[key] = i
        timers.add(1000 - i, OVERDUE, key)
        if i % 10:
            del live[key]  # closed: its timer fires into nothing
        else:
            expected.append((1000 - i, OVERDUE, key))
    timers.add(5, EVICT_JOURNEY, "unwatched")  # a kind nobody watches is always kept
    expected.append((5, EVICT_JOURNEY, "unwatched"))
    assert len(timers) < 8 + 2 * len(expected)
    fired = []
    while (t := timers.pop_due(10**9)) is not None:
        fired.append(t)
    # every timer of a live key fired, in order; of the dropped ones only some are left
    assert [t for t in fired if t[2] in live or t[1] == EVICT_JOURNEY] == sorted(expected)
    assert fired == sorted(fired)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.sampled_from([ABANDON, OVERDUE]), st.integers(0, 30)),
        max_size=300,
    ),
    st.sets(st.integers(0, 30)),
)
def test_compaction_never_drops_a_timer_of_a_live_key(
    adds: list[tuple[int, int, int]], closed: set[int]
) -> None:
    live = {f"k{i}": None for i in range(31)}
    timers = Timers()
    timers.watch(ABANDON, live)
    timers.watch(OVERDUE, live)
    for n, (due, kind, key) in enumerate(adds):
        if n == len(adds) // 2:
            for k in closed:
                live.pop(f"k{k}", None)
        timers.add(due, kind, f"k{key}")
        timers._compact()
    fired = []
    while (t := timers.pop_due(100)) is not None:
        fired.append(t)
    want = sorted((d, k, f"k{key}") for d, k, key in adds if f"k{key}" in live)
    assert [t for t in fired if t[2] in live] == want


@pytest.mark.slow  # a soak's journeys through the engine
def test_decided_journeys_leave_no_timers_behind(ctx: Context) -> None:
    """A soak's journeys: started, submitted (a deadline weeks ahead), decided at once."""
    h = Harness(ctx)
    t = local("2026-03-02 10:00")
    n = 3000
    for batch in range(n // 100):
        evs = []
        for i in range(batch * 100, batch * 100 + 100):
            at = t + timedelta(seconds=i)
            j = {"journey": f"j{i}", "channel": "portal"}
            evs += [
                event("journey.started", at, **j),
                event("journey.submitted", at + timedelta(milliseconds=1), **j),
                event("decision.made", at + timedelta(milliseconds=2), outcome="approved", **j),
            ]
        h.feed(evs)
    # before: two timers (abandon, deadline) per journey ever seen, until their due
    assert len(h.engine.journeys.journeys) == 0
    assert len(h.engine.timers) <= 2 * watermark._MIN_COMPACT
    assert len(h.engine.closed) == n


@pytest.mark.parametrize("seed", [5, 11])
def test_compacting_timers_and_a_tiny_archive_table_change_no_output(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    stream = generate(seed=seed, journeys=400, partitions=1).events[0]
    runs = []
    for compact in (False, True):
        with monkeypatch.context() as m:
            m.setattr(watermark, "_MIN_COMPACT", 4 if compact else 10**9)
            m.setattr(archive, "_MIN_SLOTS", 2 if compact else 1024)
            h = Harness(ctx)
            most = 0  # timers held, summed over the transactions
            for n, i in enumerate(range(0, len(stream), 97)):
                h.feed(stream[i : i + 97])
                most += len(h.engine.timers)
                if n in (7, 14):
                    h.restart()
            runs.append((h.everything(), h.changelog, fingerprint(h.engine), most))
    assert runs[0][:3] == runs[1][:3]
    assert runs[1][3] < runs[0][3]  # timers were dropped along the way


# -- the archive's table -------------------------------------------------------------------


@pytest.mark.slow  # 300 hypothesis examples of up to 400 operations
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "delete", "shrink"]), st.integers(1, 40)), max_size=400
    )
)
def test_table_behaves_like_a_dict(ops: list[tuple[str, int]]) -> None:
    # a tiny table and keys from a small range: long probe runs that wrap around the end,
    # growth, deletion inside runs and shrinking are all exercised
    with pytest.MonkeyPatch.context() as m:
        m.setattr(archive, "_MIN_SLOTS", 2)
        t = archive._Table()
        model: dict[int, int] = {}
        for n, (op, h) in enumerate(ops):
            key = h * 2 if h % 3 else h << 40  # equal low bits: the same home slot
            if op == "put":
                t.put(key, n)
                model[key] = n
            elif op == "delete":
                t.delete(key)
                model.pop(key, None)
            else:
                t.shrink()
            assert len(t) == len(model)
        for h in range(1, 41):
            for key in (h * 2, h << 40):
                assert t.get(key) == model.get(key, -1)


def test_archive_round_trip_old_blocks_and_rewrites() -> None:
    a = ClosedJourneys(7 * DAY_MS)
    t = 1000 * HOUR_MS
    blocks: dict[bytes, bytes | None] = {}
    for i in range(archive.MAX_BLOCKS + 3):
        for k in range(3):
            a.add(f"minsoc|j{i}-{k}", DIMS, DECIDED if k else ABANDONED, t + i)
        blocks.update(a.flush())
    live = {k: v for k, v in blocks.items() if v is not None}
    assert len(live) < 6  # rewritten into one big block, plus the blocks after it
    # a block written before hashes (key strings) restores as well
    old = msgspec.msgpack.encode([["zags|old", list(DIMS), DECIDED]])
    live[f"x|{t // HOUR_MS - 1}|0".encode()] = old
    r = ClosedJourneys(7 * DAY_MS)
    intern: Intern = {}
    for key, value in live.items():
        _, hour, block = key.decode().split("|")
        r.restore(int(hour), int(block), value, intern)
    r.finish_restore(t)
    assert r.get("zags|old") == (DIMS, DECIDED)
    assert r.get("minsoc|j0-0") == (DIMS, ABANDONED)
    assert r.get("minsoc|j7-2") == (DIMS, DECIDED)
    assert r.get("minsoc|nope") is None
    assert len(r) == len(a) + 1
    assert set(a.items()) < set(r.items())
    assert (key_hash("zags|old"), DIMS, DECIDED) in r.items()


def test_expired_hours_are_forgotten_and_the_table_shrinks() -> None:
    a = ClosedJourneys(DAY_MS)
    t = 2000 * HOUR_MS
    for i in range(20_000):
        a.add(f"k{i}", DIMS, DECIDED, t + i % 2 * HOUR_MS)
    slots = len(a._table._keys)
    a.expire(t + DAY_MS + HOUR_MS)  # the first hour goes, the second stays
    assert len(a) == 10_000
    assert a.get("k0") is None and a.get("k1") == (DIMS, DECIDED)
    a.expire(t + DAY_MS + 3 * HOUR_MS)
    assert len(a) == 0 and len(a._table._keys) < slots


@pytest.mark.slow
@pytest.mark.parametrize("n", [50_000])
def test_a_closed_journey_costs_under_64_bytes(n: int) -> None:
    keys = [f"minsoc|soak-{i:016x}" for i in range(n)]
    a = ClosedJourneys(7 * DAY_MS)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, k in enumerate(keys):
            a.add(k, DIMS, DECIDED, 3000 * HOUR_MS + i * 100)
            if i % 500 == 0:
                a.flush()
        a.flush()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / n < 64, grown / n
