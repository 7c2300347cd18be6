"""The restatement horizon: closed days restated within it, final days after it.

A day is final for a partition once its watermark passed the day's end plus
``SERVICEPULSE_RESTATEMENT_HORIZON``: its rollups move to ``<prefix>.days`` (one
ClosedDay per day, partition and agency) and their keys are tombstoned on
``<prefix>.aggregates.v2`` in the same transaction, so memory and restores hold only the
live window. Engine tests run on the harness; the broker tests kill a real
``servicepulse process`` and restore from real topics.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import aggregates as agg
from contract.catalog import Catalog
from contract.methodology import load_methodology
from kafkaport import connect
from processors import recovery
from processors.context import Context
from processors.engine import PartitionEngine
from processors.rollups import Stage
from tests.fixtures.aggregates import latest, settle
from tests.fixtures.kafka import TopicFactory, read_topic
from tests.fixtures.streams import CATALOG_PATH, event, local
from tests.processors import oracle
from tests.processors.brokerio import (
    drop_topics,
    materialise,
    new_processor,
    processor_settings,
    summed,
)
from tests.processors.harness import Harness
from tests.processors.test_exactly_once import STREAM as EXACTLY_ONCE_STREAM
from tests.processors.test_exactly_once import Env, _stop

HORIZON = timedelta(days=3)
CTX = Context(
    Catalog.from_file(CATALOG_PATH), load_methodology().standards, restatement_horizon=HORIZON
)


def started(at: str, journey: str, **kw: Any) -> dict[str, Any]:
    return event("journey.started", local(at), journey=journey, **{"channel": "mfc", **kw})


def closed_days(h: Harness) -> dict[str, agg.ClosedDay]:
    return {d.day: d for d in map(agg.decode_closed_day, h.closed.values())}


# -- the engine ------------------------------------------------------------------------------


def test_a_late_event_within_the_horizon_restates_a_closed_day_exactly() -> None:
    h = Harness(CTX)
    h.feed([started("2026-03-02 10:00", "a"), started("2026-03-04 12:00", "wm")])
    # 2 March is closed (the watermark is past its end) but not final (3 days after it)
    assert h.engine.rollups.open_day == "2026-03-04" and not h.closed
    h.feed([started("2026-03-02 11:00", "late")])
    r = h.rollup("2026-03-02", agency="soc")
    assert (r.started, r.events, r.late) == (2, 2, {"behind_watermark": 1})
    rs = agg.decode_restatement(h.aggregates[agg.restatement_key(0, "2026-03-02", "soc")])
    assert rs.count == 1 and "started" in rs.recent[0].fields
    # the watermark passes 2 March's end + 3 days: the restated day closes as it stands
    h.feed([started("2026-03-06 00:10", "final")])
    day = closed_days(h)["2026-03-02"]
    assert (day.partition, day.agency) == (0, "soc")
    assert [c.rollup.started for c in day.cells] == [2]
    assert day.restatement is not None and day.restatement.count == 1
    assert not any(b"|2026-03-02|" in k for k in h.aggregates)
    assert h.rollup("2026-03-02", agency="soc").started == 2  # from the closed day
    assert "2026-03-02" not in h.engine.rollups.cells


def test_an_event_of_a_final_day_is_too_late_and_moves_no_final_day() -> None:
    h = Harness(CTX)
    h.feed([started("2026-03-02 10:00", "a"), started("2026-03-09 12:00", "wm")])
    before = dict(h.closed)
    assert "2026-03-02" in closed_days(h)
    late = started("2026-03-02 11:00", "late", municipality="75738000")
    h.feed([late])
    h.feed([late])  # a resend is counted again: a final day keeps no dedup state
    assert h.closed == before, "a final day moved"
    r = h.rollup("2026-03-09", agency="soc", municipality="75738000")
    assert (r.late, r.events, r.started) == ({"too_late": 2}, 0, 0)
    assert h.rollup("2026-03-02").started == 1
    assert "soc|late" not in h.engine.journeys.journeys


def test_a_restore_holds_only_the_live_window_and_honours_tombstones() -> None:
    h = Harness(CTX)
    for n in range(20):
        h.feed([started(f"2026-03-{n + 2:02d} 10:00", f"j{n}")])
    # replay the topic with every record ever written (no compaction yet): values, then
    # the tombstones of final days
    written: list[tuple[bytes, bytes | None]] = list(h.writes)
    gone = {k for k in {k for k, _ in written} if k not in h.aggregates}
    written += [(k, None) for k in sorted(gone)]
    engines = {0: PartitionEngine(0, CTX)}
    recovery.load(engines, ((0, k, v) for k, v in h.changelog.items()), written)
    recovery.finish(engines)
    e = engines[0]
    final = e.rollups.final_day
    assert final == "2026-03-18", final
    assert sorted(e.rollups.cells) == ["2026-03-18", "2026-03-19", "2026-03-20", "2026-03-21"]
    assert not e.rollups.pending, "a restore closed days that were closed already"
    assert len(closed_days(h)) == 16


def test_a_restore_staged_in_small_parts_restates_and_closes_days_exactly() -> None:
    """A restore whose stage packs every few records writes what an engine that never
    restarted writes: late events restate the packed closed days, then they close."""
    cells = [
        ("soc", "soc-benefit", "mfc"),
        ("soc", "soc-card", "office"),
        ("reg", "reg-cert", "office"),
        ("reg", "reg-cert", "phone"),
    ]
    evs = [
        started(
            f"2026-03-{d:02d} {h:02d}:00",
            f"j{d}-{h}-{n}-{m}",
            agency=a,
            service=s,
            channel=c,
            municipality=m,
        )
        for d in range(2, 8)
        for h in (9, 14)
        for n, (a, s, c) in enumerate(cells)
        for m in ("75701000", "75738000")
    ]
    ref, h = Harness(CTX), Harness(CTX)
    for x in (ref, h):
        for day in range(6):  # one transaction a day, as live traffic would
            x.feed(evs[day * 16 : (day + 1) * 16])
    stage = Stage(limit=400)  # two or three records
    h.restart(stage)
    assert stage.packs > 5 and stage.peak <= 400
    closed = [d for d, _ in h.engine.rollups.packed]
    assert set(closed) == {"2026-03-04", "2026-03-05", "2026-03-06"}, closed
    assert max(len(parts) for _, parts in h.engine.rollups.packed.values()) > 1
    late = [
        started("2026-03-05 10:00", "late1", agency="reg", service="reg-cert", channel="phone"),
        started("2026-03-04 11:00", "late2"),
        started("2026-03-10 10:00", "closing"),  # 4 to 6 March become final
        started("2026-03-05 12:00", "too-late", agency="reg", service="reg-cert"),
    ]
    for x in (ref, h):
        for ev in late:
            x.feed([ev])
    assert h.aggregates == ref.aggregates
    assert h.closed == ref.closed and len(closed_days(h)) >= 4
    r = h.rollup("2026-03-05", agency="reg", channel="phone")
    assert (r.started, r.late) == (5, {"behind_watermark": 1})
    assert h.rollup("2026-03-10", agency="reg").late == {"too_late": 1}


def test_days_final_before_the_horizon_existed_close_after_a_restore() -> None:
    long_ctx = Context(CTX.catalog, CTX.standards, restatement_horizon=timedelta(days=3650))
    old = Harness(long_ctx)
    old.feed([started("2026-03-02 10:00", "a"), started("2026-03-20 10:00", "b")])
    assert not old.closed
    h = Harness(CTX)
    h.aggregates, h.changelog = dict(old.aggregates), dict(old.changelog)
    h.restart()
    h.commit()
    assert set(closed_days(h)) == {"2026-03-02"}
    assert not any(b"|2026-03-02|" in k for k in h.aggregates)
    assert h.rollup().started == 2


# -- on the broker -------------------------------------------------------------------------

#: the exactly-once tests' stream (Env produces it): over 45 days in event order, so
#: with a 3-day horizon days close all along it
STREAM = EXACTLY_ONCE_STREAM


@pytest.fixture
def env(topic_factory: TopicFactory, tmp_path: Path) -> Iterator[Env]:
    topics, common = topic_factory()
    settings = processor_settings(topics, common).model_copy(
        update={"restatement_horizon": HORIZON}
    )
    env = Env(
        settings,
        topics,
        sum(map(len, STREAM.events.values())),
        tmp_path,
        extra={"SERVICEPULSE_RESTATEMENT_HORIZON": "P3D"},
    )
    yield env
    env.close()
    drop_topics(settings, topics)


def _check_exact(env: Env) -> dict[bytes, bytes]:
    aggregates = materialise(env.settings, env.topics)
    cells, gauges = summed(aggregates)
    oracle.assert_matches(STREAM, cells, gauges, context=f"logs in {env.log_dir}")
    return aggregates


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_days_closed_across_sigkills_still_equal_an_independent_count(env: Env) -> None:
    rnd = random.Random()
    feeder = env.produce(seconds=6)
    proc = env.spawn(1)
    try:
        for frac in sorted(rnd.uniform(0.2, 0.8) for _ in range(2)):
            env.wait(env.reached(frac), f"{frac:.0%} committed")
            time.sleep(rnd.uniform(0, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = env.spawn(1)
        env.wait(lambda n: n >= env.total, "everything committed")
        env.wait_assigned(1)
    finally:
        _stop([proc])
        feeder.join()
    settle(env.settings, env.topics.days)
    days = latest((r.key, r.value) for r in read_topic(env.settings, env.topics.days))
    assert len(days) > 150, f"only {len(days)} closed days"
    _check_exact(env)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_restore_after_days_closed_reads_only_the_live_window(env: Env) -> None:
    env.produce().join()
    proc, registry = new_processor(env.settings)
    proc.run_until_caught_up(timeout_s=120)
    closed = registry.get_sample_value("servicepulse_processor_days_closed_total")
    settle(env.settings, env.topics.days)
    days = latest((r.key, r.value) for r in read_topic(env.settings, env.topics.days))
    assert closed == len(days) > 150
    settle(env.settings, env.topics.aggregates)
    live = latest((r.key, r.value) for r in read_topic(env.settings, env.topics.aggregates))
    live_rollups = {k for k in live if k.startswith(b"r|")}
    kafka = connect(env.settings)
    group = kafka.consumer(client_id="test-restore", group_id=env.settings.group_id)
    try:
        got = recovery.restore(kafka, group, env.topics, list(range(12)), proc.ctx, 60)
    finally:
        group.close()
    held = {
        agg.RollupKey(p, day, dims).encode()
        for p, e in got.engines.items()
        for day, row in e.rollups.cells.items()
        for dims in row
    }
    # exactly the live keys, and they span at most the horizon plus the open day
    assert held == live_rollups
    for p, e in got.engines.items():
        wm = e.wm.watermark_ms
        assert wm is not None
        assert e.rollups.final_day == proc.ctx.final_before(wm)
        assert all(day >= e.rollups.final_day for day in e.rollups.cells), p
        assert len(e.rollups.cells) <= HORIZON.days + 2, sorted(e.rollups.cells)
    every_day = {k.split(b"|")[2] for k in materialise(env.settings, env.topics) if k[:2] == b"r|"}
    assert len(every_day) > 3 * (HORIZON.days + 2)
    _check_exact(env)
