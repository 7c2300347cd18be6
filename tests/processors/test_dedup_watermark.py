"""The event-id memory and the watermark: bounded, persisted, deterministic."""

from __future__ import annotations

import uuid
from array import array
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import aggregates as agg
from processors import dedup
from processors.context import Context
from processors.dedup import HOUR_MS, DedupStore
from tests.fixtures.streams import event, local
from tests.processors.harness import Harness

DAY_MS = 86_400_000


def _restored(blocks: dict[bytes, bytes | None], horizon: int, wm: int) -> DedupStore:
    d = DedupStore(horizon)
    for k, v in blocks.items():
        if v is None:
            continue
        text = k.decode()
        kind, _, rest = text.partition("|")
        if k == dedup.CLOCK_KEY:
            d.restore_clock(v)
        elif kind == "u":
            d.restore(rest, v)
        else:
            hour, _, block = rest.partition("|")
            d.restore_legacy(int(hour), int(block), v)
    d.finish_restore(wm)
    return d


def uid(n: int) -> int:
    return uuid.UUID(int=(n * 0x9E3779B97F4A7C15) % (1 << 128)).int


def test_ids_persist_as_blocks_per_hour_not_per_event() -> None:
    d = DedupStore(7 * DAY_MS)
    t = 1_000 * HOUR_MS
    assert not any(d.seen("soc", t + i, t, uid(i)) for i in range(1000))
    assert d.seen("soc", t + 5, t, uid(5))
    out = [r for r in d.flush() if r[0] != dedup.CLOCK_KEY]
    h = t // HOUR_MS
    assert len(out) == 1 and out[0][0] == f"u|{h}|{h}|soc|0".encode()
    assert len(out[0][1] or b"") == 16_000  # 16 bytes per id
    restored = _restored(dict(d.flush()) | dict(out), 7 * DAY_MS, t)
    assert restored.seen("soc", t + 999, t, uid(999))
    assert not restored.seen("soc", t + 999, t, uid(1000))


def test_the_full_128_bits_count_and_agencies_are_separate() -> None:
    # both valid v4, equal when the halves are XORed (the old 64-bit fold)
    a = uuid.UUID("bfa8f557-cdd9-4e10-967b-9e676750f0f2").int
    b = uuid.UUID("ba397ea8-f584-4097-93ea-15985f0dfe75").int
    assert dedup.fold64(a) == dedup.fold64(b)
    d = DedupStore(7 * DAY_MS)
    t = 1_000 * HOUR_MS
    assert not d.seen("soc", t, t, a)
    assert not d.seen("soc", t, t, b)
    assert not d.seen("edu", t, t, a)
    assert d.seen("soc", t, t, a) and d.seen("soc", t, t, b) and d.seen("edu", t, t, a)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["soc", "edu"]), st.integers(0, 5), st.integers(0, 2**128 - 1)),
        min_size=1,
        max_size=300,
    ),
    st.integers(1, 40),
)
def test_seen_is_exact_set_membership_across_merges_and_restores(
    items: list[tuple[str, int, int]], every: int
) -> None:
    t = 2_000 * HOUR_MS
    d = DedupStore(7 * DAY_MS)
    blocks: dict[bytes, bytes | None] = {}
    known: set[tuple[str, int, int]] = set()
    for n, (agency, hour, x) in enumerate(items):
        # structured ids: many share their high half
        x = x if n % 2 else (x & ((1 << 64) - 1)) | (7 << 64)
        key = (agency, hour, x)
        assert d.seen(agency, t + hour * HOUR_MS, t, x) == (key in known)
        known.add(key)
        if n % every == 0:
            for b in d._slots.values():
                for bucket in b.values():
                    bucket.merge()
            blocks.update(d.flush())
    blocks.update(d.flush())
    restored = _restored(blocks, 7 * DAY_MS, t)
    assert all(restored.seen(a, t + h * HOUR_MS, t, x) for a, h, x in known)
    assert len(restored) == len(known)


def test_many_blocks_of_an_hour_are_rewritten_into_few() -> None:
    d = DedupStore(7 * DAY_MS)
    t = 500 * HOUR_MS
    blocks: dict[bytes, bytes | None] = {}
    n = 0
    for _ in range(dedup.MAX_BLOCKS + 5):
        for _ in range(3):
            d.seen("soc", t, t, uid(n))
            n += 1
        blocks.update(d.flush())
    live = {k for k, v in blocks.items() if v is not None and k != dedup.CLOCK_KEY}
    assert len(live) <= 6
    restored = _restored(blocks, 7 * DAY_MS, t)
    assert all(restored.seen("soc", t, t, uid(i)) for i in range(n))


def test_the_horizon_counts_in_receive_time() -> None:
    d = DedupStore(DAY_MS)
    old = 100 * HOUR_MS  # event time, far behind
    now = 400 * HOUR_MS  # receive time
    assert not d.seen("soc", old, now, uid(1))
    d.flush()
    # a retry within the horizon of receive time is a repeat, however old the event
    assert d.seen("soc", old, now + DAY_MS - HOUR_MS, uid(1))
    # once the receive clock is past the horizon the bucket is forgotten and tombstoned
    assert not d.seen("soc", old + 5, now + DAY_MS + 2 * HOUR_MS, uid(2))
    out = d.flush()
    h = old // HOUR_MS
    assert (f"u|{h}|{now // HOUR_MS}|soc|0".encode(), None) in out
    assert not d.seen("soc", old, now + DAY_MS + 2 * HOUR_MS, uid(1))


def test_blocks_of_the_earlier_format_are_read_and_expire() -> None:
    t = 100 * HOUR_MS
    x = uuid.UUID("bfa8f557-cdd9-4e10-967b-9e676750f0f2").int
    old_block = array("Q", [dedup.fold64(x)]).tobytes()
    blocks: dict[bytes, bytes | None] = {f"d|{t // HOUR_MS}|0".encode(): old_block}
    d = _restored(blocks, DAY_MS, t)
    assert d.seen("soc", t, t, x)  # remembered across the upgrade
    d.expire_legacy(t + DAY_MS + HOUR_MS)
    assert (f"d|{t // HOUR_MS}|0".encode(), None) in d.flush()
    assert len(d) == 0


def test_watermark_is_newest_event_minus_lateness(ctx: Context) -> None:
    h = Harness(ctx)
    h.feed([event("journey.started", local("2026-03-02 10:00"), journey="a")])
    h.feed([event("journey.started", local("2026-03-02 09:00"), journey="b")])
    w = agg.decode_watermark(h.aggregates[agg.watermark_key(0)])
    assert w.max_event_time == local("2026-03-02 10:00").timestamp()
    assert w.watermark == (local("2026-03-02 10:00") - timedelta(minutes=5)).timestamp()


def test_live_idle_partition_advances_with_wall_clock_history_does_not(ctx: Context) -> None:
    t = local("2026-03-02 10:00")
    for live in (True, False):
        h = Harness(ctx)
        h.feed([event("journey.started", t, journey="a")])
        now_ms = int(t.timestamp() * 1000) + (60_000 if live else 3 * DAY_MS)
        h.engine.mark_live(now_ms)
        # an hour later with no new events
        moved = h.engine.tick(now_ms + 3_600_000)
        h.commit()
        assert moved is live
        assert h.rollup().abandoned_timeout == (1 if live else 0)


def test_open_journey_state_is_under_a_kibibyte(ctx: Context) -> None:
    from bench.sizing import open_journey_state

    size = open_journey_state(ctx, 2_000)
    assert 100 < size.memory_bytes_per_journey < 1024
    assert 0 < size.journey_record_bytes < 256


def test_events_older_than_the_horizon_behave_the_same_across_a_restart(ctx: Context) -> None:
    from tests.processors.harness import fingerprint

    t = local("2026-03-02 10:00")
    old = [
        event("journey.started", t, journey="old", channel="mfc"),
        event(
            "decision.made",
            t + timedelta(minutes=5),
            journey="old",
            channel="mfc",
            outcome="approved",
        ),
    ]
    late = event(
        "journey.step", t + timedelta(minutes=6), journey="old", channel="mfc", step="form"
    )
    runs = []
    for restart in (False, True):
        h = Harness(ctx)
        h.feed([event("journey.started", t + timedelta(days=10), journey="new", channel="mfc")])
        h.feed(old)
        if restart:
            h.restart()
        h.feed([late])
        runs.append((dict(h.aggregates), fingerprint(h.engine)))
    assert runs[0] == runs[1]
