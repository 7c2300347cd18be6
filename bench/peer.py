"""Benchmark 5: our processor against the Quix Streams peer, same topic, same broker.

The peer (:mod:`bench.peer_quix`) runs on the events topic our
1-instance processor run just read, timed by the same group referee; both are checked
against the same directly computed totals. The figure is our events/s over theirs.
"""

from __future__ import annotations

import importlib.util

from bench import processor, workload
from bench.harness import BenchContext, Figure, unavailable

NAME = "processor events/s vs a Quix Streams peer (1 instance each)"
#: The issue sets no goal for the peer; the ratio is reported as measured.
GOAL = None


def bench_peer(ctx: BenchContext) -> list[Figure]:
    """Figure 5: our steady events/s divided by the peer's, on the same topic."""
    if importlib.util.find_spec("quixstreams") is None:
        return unavailable(
            "peer",
            [(NAME, "events/s", GOAL)],
            "quixstreams is not installed (pip install -e '.[bench]')",
        )
    why = processor.missing()
    if why:
        return unavailable("peer", [(NAME, "events/s", GOAL)], why)
    from bench import peer_quix
    from processors.settings import ProcessorSettings

    ours = processor.run_ours(ctx, 1)
    ds = processor.dataset(ctx)
    # The same commit cadence as our processor's default transaction interval.
    commit_interval = ProcessorSettings().commit_interval.total_seconds()
    ctx.say("peer: Quix Streams, exactly-once, RocksDB state, same topic ...")
    with ctx.progress() as bar:
        task = bar.add_task("quix peer", total=len(ds.records))
        res = peer_quix.run_peer(
            ctx.bootstrap,
            ours.topics.events,
            ctx.extra_topic("peer-out"),
            ctx.group("quix"),
            ctx.work_dir / "quix-state",
            len(ds.records),
            commit_interval=commit_interval,
            log=ctx.work_dir / "logs" / "quix-peer.log",
            on_progress=lambda n: bar.update(task, completed=n),
        )
    steady = ours.catch_up.steady_measurable and res.catch_up.steady_measurable
    kind = "first-to-last commit" if steady else "from spawn"
    theirs = res.catch_up.steady_rate if steady else res.catch_up.wall_rate
    ctx.say(f"  quix peer: {theirs:,.0f} events/s ({kind})")
    check = processor.compare(
        peer_quix.read_totals(ctx.bootstrap, ctx.extra_topic("peer-out")),
        workload.expected_totals(ds.records),
    )
    ours_rate = (
        (ours.catch_up.steady_rate if steady else ours.catch_up.wall_rate)
        if ours.check is None
        else None
    )
    note = (
        f"ours {ours_rate or 0:,.0f} events/s vs Quix Streams "
        f"{theirs:,.0f} events/s (exactly-once, commit interval {commit_interval:g} s as ours, "
        f"RocksDB, group_by "
        f"service|day), both timed by their group's committed offsets on the same topic "
        f"({kind}); from spawn: ours "
        f"{ours.catch_up.wall_rate:,.0f}, Quix {res.catch_up.wall_rate:,.0f} events/s; peer "
        "totals " + ("match the events" if check is None else f"WRONG: {check}")
    )
    return [
        Figure(
            "peer",
            NAME,
            ours_rate,
            "events/s",
            "Quix Streams peer, same topic",
            theirs if check is None else None,
            GOAL,
            note,
            {
                "ours_events_per_s": round(ours_rate or 0, 1),
                "rate_kind": kind,
                "quix_events_per_s": round(theirs, 1),
                "quix_wall_events_per_s": round(res.catch_up.wall_rate, 1),
                "quix_wall_seconds": round(res.catch_up.wall_seconds, 3),
                "quix_self_timed_seconds": res.seconds,
                "quix_seconds_from_first_message": res.seconds_from_first,
                "quix_message_counts": res.counts,
                "quix_increments": res.increments,
                "quix_totals_match": check is None,
            },
        )
    ]
