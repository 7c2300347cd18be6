"""The event-id memory and the watermark: bounded, persisted, deterministic."""

from __future__ import annotations

from datetime import timedelta

from contract import aggregates as agg
from processors import dedup
from processors.context import Context
from processors.dedup import HOUR_MS, DedupStore, id_hash
from tests.fixtures.streams import event, local
from tests.processors.harness import Harness

DAY_MS = 86_400_000


def _restored(blocks: dict[bytes, bytes | None], horizon: int, wm: int) -> DedupStore:
    d = DedupStore(horizon)
    for k, v in blocks.items():
        if v is not None:
            _, hour, block = k.decode().split("|")
            d.restore(int(hour), int(block), v)
    d.finish_restore(wm)
    return d


def test_ids_persist_as_blocks_per_hour_not_per_event() -> None:
    d = DedupStore(7 * DAY_MS)
    t = 1_000 * HOUR_MS
    assert not any(d.seen(t + i, id_hash(f"id-{i}")) for i in range(1000))
    assert d.seen(t + 5, id_hash("ID-5"))  # case-insensitive, like UUIDs
    out = d.flush()
    assert len(out) == 1 and out[0][0] == f"d|{t // HOUR_MS}|0".encode()
    assert len(out[0][1] or b"") == 8000
    blocks = dict(out)
    restored = _restored(blocks, 7 * DAY_MS, t)
    assert restored.seen(t + 999, id_hash("id-999"))
    assert not restored.seen(t + 999, id_hash("id-1000"))


def test_many_blocks_of_an_hour_are_rewritten_into_few() -> None:
    d = DedupStore(7 * DAY_MS)
    t = 500 * HOUR_MS
    blocks: dict[bytes, bytes | None] = {}
    n = 0
    for _ in range(dedup.MAX_BLOCKS + 5):
        for _ in range(3):
            d.seen(t, id_hash(f"x{n}"))
            n += 1
        blocks.update(d.flush())
    live = {k for k, v in blocks.items() if v is not None}
    assert len(live) <= 6
    restored = _restored(blocks, 7 * DAY_MS, t)
    assert all(restored.seen(t, id_hash(f"x{i}")) for i in range(n))


def test_hours_past_the_horizon_are_forgotten_and_tombstoned() -> None:
    d = DedupStore(DAY_MS)
    t = 100 * HOUR_MS
    d.seen(t, id_hash("a"))
    d.flush()
    d.expire(t + DAY_MS + HOUR_MS)
    out = d.flush()
    assert out == [(f"d|{t // HOUR_MS}|0".encode(), None)]
    assert len(d) == 0
    # too old to tell: counted, and not remembered
    assert not d.seen(t, id_hash("a"))
    assert not d.seen(t, id_hash("a"))


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
    from processors.sizing import open_journey_state

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
