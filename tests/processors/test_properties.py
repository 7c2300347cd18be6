"""Property tests: batching, restarts and duplicates never change what is counted."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import aggregates as agg
from contract.catalog import Catalog
from contract.methodology import load_methodology
from processors.context import Context
from tests.fixtures.streams import CATALOG_PATH, generate
from tests.processors.harness import Harness, fingerprint

STREAM = generate(seed=3, journeys=80, partitions=1).events[0]
CTX = Context(Catalog.from_file(CATALOG_PATH), load_methodology().standards)
#: Horizons longer than the stream, so every resend is within them (a resend of a day
#: already final would count too_late, not as a duplicate).
CTX_LONG = Context(
    Catalog.from_file(CATALOG_PATH),
    load_methodology().standards,
    horizon=timedelta(days=365),
    restatement_horizon=timedelta(days=365),
)
_REF: dict[int, Harness] = {}


def reference(ctx: Context) -> Harness:
    if id(ctx) not in _REF:
        h = Harness(ctx)
        h.feed(STREAM)
        _REF[id(ctx)] = h
    return _REF[id(ctx)]


def test_stream_exercises_the_state_machine() -> None:
    r = agg.sum_rollups(
        agg.decode_rollup(v) for k, v in reference(CTX).everything().items() if k.startswith(b"r|")
    )
    assert r.abandoned_timeout and r.submitted and r.decisions and r.duplicates
    assert r.cases_completed and r.appeals_answered and r.interagency_responded
    assert r.late.get("after_decided")
    # the closing event is past the restatement horizon of the first days: they closed
    assert reference(CTX).closed


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_split_into_batches_with_restarts_gives_the_same_outputs(data: st.DataObject) -> None:
    n = len(STREAM)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=15), label="cuts"))
    restarts = data.draw(st.sets(st.sampled_from(cuts)), label="restarts") if cuts else set[int]()
    h = Harness(CTX)
    prev = 0
    for c in [*cuts, n]:
        h.feed(STREAM[prev:c])
        prev = c
        # the state the changelog restores is the state the engine holds
        assert fingerprint(h.restored()) == fingerprint(h.engine)
        if c in restarts:
            h.restart()
    ref = reference(CTX)
    assert h.aggregates == ref.aggregates
    assert h.closed == ref.closed
    assert fingerprint(h.engine) == fingerprint(ref.engine)


def _without_duplicates(aggregates: dict[bytes, bytes]) -> dict[bytes, bytes]:
    out = {}
    for k, v in aggregates.items():
        if k.startswith(b"r|"):
            r = agg.decode_rollup(v)
            r.duplicates = 0
            out[k] = msgspec.json.encode(r)
        elif k.startswith((b"g|", b"w|")):
            out[k] = v
    return out


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_duplicates_never_change_totals(data: st.DataObject) -> None:
    n = len(STREAM)
    picks = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=40), label="dups")
    order: list[tuple[float, int]] = [(float(i), i) for i in range(n)]
    for i in picks:
        later = data.draw(st.floats(i + 0.01, n + 0.5), label="at")
        order.append((later, i))
    order.sort()
    stream = [STREAM[i] for _, i in order]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=6), label="cuts"))
    h = Harness(CTX_LONG)
    prev = 0
    for c in [*cuts, len(stream)]:
        h.feed(stream[prev:c])
        prev = c
    ref = reference(CTX_LONG)
    assert _without_duplicates(h.everything()) == _without_duplicates(ref.everything())
    total = agg.sum_rollups(
        agg.decode_rollup(v) for k, v in h.everything().items() if k.startswith(b"r|")
    )
    ref_total = agg.sum_rollups(
        agg.decode_rollup(v) for k, v in ref.everything().items() if k.startswith(b"r|")
    )
    assert total.duplicates == ref_total.duplicates + len(picks)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_out_of_order_streams_split_and_restarted_give_the_same_outputs(
    data: st.DataObject,
) -> None:
    """Events arriving late (behind the watermark, after their journey closed, into
    closed days) are still counted the same way however the stream is cut."""
    n = len(STREAM)
    moves = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=25), label="late")
    order: list[tuple[float, int]] = [(float(i), i) for i in range(n)]
    for i in set(moves):
        order[i] = (data.draw(st.floats(i + 0.01, n + 0.5), label="to"), i)
    order.sort()
    stream = [STREAM[i] for _, i in order]
    ref = Harness(CTX)
    ref.feed(stream)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=10), label="cuts"))
    restarts = data.draw(st.sets(st.sampled_from(cuts)), label="restarts") if cuts else set[int]()
    h = Harness(CTX)
    prev = 0
    for c in [*cuts, n]:
        h.feed(stream[prev:c])
        prev = c
        assert fingerprint(h.restored()) == fingerprint(h.engine)
        if c in restarts:
            h.restart()
    assert h.aggregates == ref.aggregates
    assert h.closed == ref.closed
    assert fingerprint(h.engine) == fingerprint(ref.engine)
