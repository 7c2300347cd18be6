"""State that outlives its objects is bounded: timers of closed journeys.

A decided journey's deadline timer may lie weeks ahead; it must not cost memory until
then, and dropping it must not change a single output.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import watermark
from processors.context import Context
from processors.watermark import ABANDON, EVICT_JOURNEY, OVERDUE, Timers
from tests.fixtures.streams import event, generate, local
from tests.processors.harness import Harness, fingerprint

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
def test_compacting_timers_changes_no_output(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    stream = generate(seed=seed, journeys=400, partitions=1).events[0]
    runs = []
    for compact in (False, True):
        with monkeypatch.context() as m:
            m.setattr(watermark, "_MIN_COMPACT", 4 if compact else 10**9)
            h = Harness(ctx)
            most = 0  # timers held, summed over the transactions
            for n, i in enumerate(range(0, len(stream), 97)):
                h.feed(stream[i : i + 97])
                most += len(h.engine.timers)
                if n in (7, 14):
                    h.restart()
            runs.append((h.aggregates, h.changelog, fingerprint(h.engine), most))
    assert runs[0][:3] == runs[1][:3]
    assert runs[1][3] < runs[0][3]  # timers were dropped along the way
