"""Issue 14 on the processor: what the counts mean (skipped steps, cases, the key rule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest

from contract.events import Event, decode_event, event_key
from processors.context import Context
from tests.fixtures.streams import CATALOG_PATH, Rec, encode, event, generate, local
from tests.processors import oracle
from tests.processors.brokerio import summed
from tests.processors.harness import Harness
from tests.processors.test_journeys import journey


@pytest.fixture
def h(ctx: Context) -> Harness:
    return Harness(ctx)


def test_skipped_steps_only_on_channels_with_form_steps(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    for ch in ("mfc", "office"):
        service = "soc-card" if ch == "office" else "soc-benefit"
        evs = journey(t, ("journey.started", 0), ("journey.submitted", 5), journey=ch)
        h.feed([{**e, "channel": ch, "service": service} for e in evs])
    h.feed(journey(t, ("journey.started", 0), ("journey.submitted", 5), journey="p"))
    assert h.rollup(channel="portal").skipped_steps == 1
    assert h.rollup(channel="mfc").skipped_steps == 0
    assert h.rollup(channel="office").skipped_steps == 0


def test_a_case_across_agencies_is_one_case_with_one_end_to_end_time(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    c = {"case": "k1", "life_situation": "birth"}
    soc = journey(t, ("journey.started", 0), ("journey.submitted", 1), journey="a", **c)
    reg = journey(
        t,
        ("journey.started", 10),
        ("journey.submitted", 11),
        journey="b",
        agency="reg",
        service="reg-cert",
        **c,
    )
    h.feed([*soc, *reg])
    h.feed(journey(t, ("decision.made", 60, {"outcome": "approved"}), journey="a", **c))
    assert h.rollup().cases_completed == 0  # the other agency's journey is still open
    h.feed(
        journey(
            t,
            ("decision.made", 180, {"outcome": "approved"}),
            journey="b",
            agency="reg",
            service="reg-cert",
            **c,
        )
    )
    r = h.rollup(life_situation="birth")
    assert (r.cases_started, r.cases_completed) == (1, 1)
    assert r.case_seconds is not None and r.case_seconds.sum_ms == 180 * 60_000
    assert list(h.engine.journeys.cases) == ["k1"]


def test_the_canonical_key_is_the_case_alone_else_agency_and_journey() -> None:
    t = local("2026-03-02 10:00")
    a = decode_event(encode(event("journey.started", t, case="k1")))
    b = decode_event(encode(event("journey.started", t, agency="reg", case="k1")))
    c = decode_event(encode(event("journey.started", t)))
    assert isinstance(a, Event) and isinstance(b, Event) and isinstance(c, Event)
    assert event_key(a) == event_key(b) == b"c:k1"
    assert event_key(c) == b"j:soc:j1"


def test_a_record_not_keyed_by_the_canonical_key_is_dead_lettered(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    good = event("journey.started", t, journey="j9")
    bad = event("journey.submitted", t + timedelta(minutes=1), journey="j9")
    ts = int((t + timedelta(minutes=2)).timestamp() * 1000)
    h.dead += h.engine.process(
        [
            Rec("t.events", 0, 0, ts, b"j:soc:j9", encode(good)),
            Rec("t.events", 0, 1, ts, b"j9", encode(bad)),
        ]
    )
    h.commit()
    assert [d.reason for d in h.dead] == ["wrong_key"]
    detail = msgspec.json.decode(h.dead[0].value)
    assert detail["agency"] == "soc" and "j:<agency>:<journey>" in detail["message"]
    r = h.rollup()
    assert (r.started, r.submitted, r.events) == (1, 0, 1)


def test_engines_match_the_independent_count(ctx: Context) -> None:
    """Without a broker: one harness per partition, summed, against the oracle
    (cases across agencies included; the broker tests check the same under faults)."""
    stream = generate(seed=11, journeys=400, invalid=True)
    assert any(ev.get("case") and ev["agency"] == "reg" for ev in stream.all()), (
        "the stream has cases across agencies"
    )
    aggregates: dict[bytes, bytes] = {}
    for p, evs in stream.events.items():
        hp = Harness(ctx, partition=p)
        hp.feed(evs)
        aggregates.update(hp.everything())
    cells, gauges = summed(aggregates)
    oracle.assert_matches(stream, cells, gauges)


def test_complaints_have_15_working_days_and_appeals_30_days(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    common: dict[str, Any] = {"journey": None, "service": None, "channel": "portal"}
    h.feed(
        [
            event("appeal.received", t, appeal="c1", kind="complaint", **common),
            event("appeal.received", t, appeal="c2", kind="complaint", **common),
            event("appeal.received", t, appeal="a1", kind="appeal", **common),
            event("appeal.received", t, appeal="d1", **common),  # default: 59-FZ appeal
        ]
    )
    # 15 working days from 2 March (9 March a holiday) end at 24:00 on 24 March
    h.feed([event("appeal.answered", local("2026-03-24 23:00"), appeal="c1", **common)])
    late = local("2026-03-25 09:00")
    h.feed([event("appeal.answered", late, appeal=a, **common) for a in ("c2", "a1", "d1")])
    assert h.rollup().appeals_answered == {"on_time": 3, "late": 1}


def test_deadlines_past_the_calendar_are_counted_once(h: Harness) -> None:
    # the test calendar covers 2026: five working days from 28 December end in 2027
    t = local("2026-12-28 10:00")
    h.feed(journey(t, ("journey.started", 0), ("journey.submitted", 5), journey="late-year"))
    h.feed(journey(local("2026-03-02 10:00"), ("journey.submitted", 5), journey="march"))
    common: dict[str, Any] = {"journey": None, "service": None, "channel": "portal"}
    h.feed([event("appeal.received", t, appeal="x", kind="complaint", **common)])
    assert h.rollup("2026-12-28").beyond_calendar == 2
    assert h.rollup("2026-03-02").beyond_calendar == 0


def test_catalog_check_names_the_calendar_horizon() -> None:
    from typer.testing import CliRunner

    from servicepulse.cli import app

    result = CliRunner().invoke(app, ["catalog", "check", str(CATALOG_PATH)], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "production calendar horizon: 2026-12-31" in result.output


def test_delivery_delay_and_clock_skew_are_measured_apart(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    late = t + timedelta(days=2)  # a backfill: sent two days late by a correct clock
    ms = int(late.timestamp() * 1000)
    backfill = event("journey.started", t, journey="b")
    skewed = event("journey.started", late - timedelta(seconds=2), journey="s")
    unstamped = event("journey.started", late - timedelta(seconds=2), journey="u")
    h.dead += h.engine.process(
        [
            Rec("t", 0, 0, ms, b"j:soc:b", encode(backfill), [("sent_at", str(ms - 50).encode())]),
            # a producer clock 10 minutes ahead of the broker's
            Rec(
                "t", 0, 1, ms, b"j:soc:s", encode(skewed), [("sent_at", str(ms + 600_000).encode())]
            ),
            Rec("t", 0, 2, ms, b"j:soc:u", encode(unstamped)),
        ]
    )
    h.commit()
    assert h.dead == []
    r = h.rollup()
    delay, skew = r.skew_seconds, r.sender_skew_seconds
    assert delay is not None and skew is not None
    assert delay.count == 3 and delay.counts[-1] == 1  # the backfill: over a day late
    assert skew.count == 2  # only stamped events say anything about the clock
    assert skew.counts[0] == 1 and skew.sum_ms == 50 + 600_000


def test_visits_carry_their_office_and_the_service_they_were_for(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    common: dict[str, Any] = {"journey": None, "agency": "mfc", "channel": "mfc"}
    h.feed(
        [
            event(
                "visit.served", t, service="soc-benefit", office="mfc-1", wait_seconds=300, **common
            ),
            event(
                "visit.served", t, service="reg-cert", office="mfc-2", wait_seconds=3000, **common
            ),
            event("visit.served", t, service=None, office="mfc-2", wait_seconds=60, **common),
        ]
    )
    assert h.dead == []  # an MFC serves other agencies' services
    assert h.rollup(service="soc-benefit").office_visits == {"mfc-1:true": 1}
    assert h.rollup(service="reg-cert").office_visits == {"mfc-2:false": 1}
    assert h.rollup(agency="mfc").office_visits == {
        "mfc-1:true": 1,
        "mfc-2:false": 1,
        "mfc-2:true": 1,
    }
