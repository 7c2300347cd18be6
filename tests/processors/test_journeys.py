"""The state machine and each metric definition of DESIGN.md section 5 (no broker)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from contract import aggregates as agg
from processors.context import Context
from tests.fixtures.streams import Where, event, local
from tests.processors.harness import Harness

SOC = {"agency": "soc"}


def tick(at: datetime) -> dict[str, Any]:
    """An event of another agency that only moves the watermark to ``at`` - 5 min."""
    return event(
        "feedback.given",
        at,
        journey=f"tick-{at.timestamp()}",
        agency="reg",
        service="reg-cert",
        municipality="75738000",
        channel="phone",
        score=5,
    )


@pytest.fixture
def h(ctx: Context) -> Harness:
    return Harness(ctx)


def journey(
    t0: datetime, *types: tuple[str, int] | tuple[str, int, dict[str, Any]], **common: Any
) -> list[dict[str, Any]]:
    """Events of one journey: (type, minutes after t0[, attrs])."""
    out = []
    for item in types:
        etype, minutes = item[0], item[1]
        attrs = item[2] if len(item) > 2 else {}
        out.append(event(etype, t0 + timedelta(minutes=minutes), **common, **attrs))
    return out


def test_completion_counts_submitted_and_abandoned_once_per_journey(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(journey(t, ("journey.started", 0), ("journey.submitted", 5), journey="a"))
    h.feed(journey(t, ("journey.started", 0), ("journey.abandoned", 3), journey="b"))
    h.feed(journey(t, ("journey.started", 0), journey="c"))
    r = h.rollup("2026-03-02", **SOC)
    assert (r.started, r.submitted, r.abandoned, r.resolved) == (3, 1, 1, 2)
    assert r.abandoned_timeout == 0
    assert h.gauges(**SOC).open_journeys == 1


def test_funnel_counts_each_step_once_per_journey(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    evs = journey(
        t,
        ("journey.started", 0),
        ("journey.step", 1, {"step": "form"}),
        ("journey.step", 2, {"step": "docs"}),
        ("journey.step", 3, {"step": "form"}),
        ("journey.step", 4, {"step": "docs"}),
        journey="a",
    )
    evs += journey(t, ("journey.step", 1, {"step": "form"}), journey="b")
    h.feed(evs)
    assert h.rollup(**SOC).steps == {"form": 2, "docs": 1}


def test_skipped_steps_counted_at_submission(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    steps = [("journey.step", i + 1, {"step": s}) for i, s in enumerate(["form", "docs", "sign"])]
    h.feed(journey(t, ("journey.started", 0), *steps, ("journey.submitted", 9), journey="all"))
    h.feed(journey(t, ("journey.started", 0), steps[0], ("journey.submitted", 9), journey="skip"))
    assert h.rollup(**SOC).skipped_steps == 1


def test_form_time_is_submitted_minus_started(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(journey(t, ("journey.started", 0), ("journey.submitted", 7), journey="a"))
    h.feed(journey(t, ("journey.started", 0), ("journey.submitted", 2), journey="b"))
    form = h.rollup(**SOC).form_seconds
    assert form is not None
    assert form.sum_ms == 9 * 60_000
    assert form.count == 2
    # 120 s falls in the (60, 120] bucket, 420 s in (300, 600]
    assert form.counts[2] == 1 and form.counts[4] == 1


def test_time_to_decision_from_submission_else_start(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(
        journey(
            t,
            ("journey.started", 0),
            ("journey.submitted", 10),
            ("decision.made", 70, {"outcome": "approved"}),
            journey="a",
        )
    )
    h.feed(
        journey(
            t,
            ("journey.started", 0),
            ("decision.made", 30, {"outcome": "approved"}),
            journey="p",
            channel="proactive",
        )
    )
    d = h.rollup(**SOC).decision_seconds
    assert d is not None
    assert d.sum_ms == (60 + 30) * 60_000


def _decide(h: Harness, service: str, submitted: datetime, decided: datetime, jid: str) -> str:
    agency = "reg" if service.startswith("reg") else "soc"
    common = {"journey": jid, "service": service, "agency": agency, "channel": "portal"}
    h.feed(
        [
            event("journey.started", submitted - timedelta(minutes=5), **common),
            event("journey.submitted", submitted, **common),
            event("decision.made", decided, outcome="approved", **common),
        ]
    )
    (label,) = h.rollup(service=service).decisions
    return label


@pytest.mark.parametrize(
    ("service", "submitted", "decided", "expected"),
    [
        # 5 working days from Friday 6 March; Monday 9 March is a holiday, so the term
        # runs 10, 11, 12, 13, 16 March and ends at 24:00 on the 16th
        ("soc-benefit", "2026-03-06 10:00", "2026-03-16 12:00", "approved:on_time"),
        ("soc-benefit", "2026-03-06 10:00", "2026-03-17 00:00", "approved:on_time"),
        ("soc-benefit", "2026-03-06 10:00", "2026-03-17 00:01", "approved:late"),
        # 10 calendar days from 22 April end on Saturday 2 May: moved to Monday 4 May
        ("soc-card", "2026-04-22 10:00", "2026-05-04 20:00", "approved:on_time"),
        ("soc-card", "2026-04-22 10:00", "2026-05-05 00:30", "approved:late"),
        # 48 hours end exactly 48 hours later
        ("reg-cert", "2026-03-02 10:00", "2026-03-04 10:00", "approved:on_time"),
        ("reg-cert", "2026-03-02 10:00", "2026-03-04 10:01", "approved:late"),
    ],
)
def test_on_time_decisions_by_term_kind(
    ctx: Context, service: str, submitted: str, decided: str, expected: str
) -> None:
    h = Harness(ctx)
    assert _decide(h, service, local(submitted), local(decided), "x") == expected


def test_decision_with_neither_submission_nor_start_is_unknown(h: Harness) -> None:
    h.feed([event("decision.made", local("2026-03-02 10:00"), journey="q", outcome="rejected")])
    r = h.rollup(**SOC)
    assert r.decisions == {"rejected:unknown": 1}
    assert r.decision_seconds is None


def test_pending_and_overdue_gauges(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    # mfc: the start registers the application, pending from then (5 working days:
    # 3, 4, 5, 6, 10 March as 9 March is a holiday -> due at 24:00 on 10 March)
    h.feed(journey(t, ("journey.started", 0), journey="m", channel="mfc"))
    # portal: pending only once submitted
    h.feed(journey(t, ("journey.started", 0), journey="p"))
    g = h.gauges(**SOC)
    assert (g.open_journeys, g.pending, g.overdue) == (2, 1, 0)
    h.feed(journey(t, ("journey.submitted", 3), journey="p"))
    g = h.gauges(**SOC)
    assert (g.open_journeys, g.pending, g.overdue) == (1, 2, 0)
    h.feed([tick(local("2026-03-10 23:59"))])
    assert h.gauges(**SOC).overdue == 0
    h.feed([tick(local("2026-03-11 00:10"))])
    g = h.gauges(**SOC)
    assert (g.pending, g.overdue) == (2, 2)
    h.feed(
        journey(t, ("decision.made", 15_000, {"outcome": "approved"}), journey="m", channel="mfc")
    )
    h.feed(journey(t, ("journey.abandoned", 15_001), journey="p"))
    g = h.gauges(**SOC)
    assert (g.open_journeys, g.pending, g.overdue) == (0, 0, 0)
    # going back to zero is written, not left at the last non-zero value
    assert any(k.startswith(b"g|0|soc|") and v == b"{}" for k, v in h.aggregates.items())
    assert h.rollup(**SOC).withdrawn == 1


def test_satisfaction_counts_scores(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(
        [event("feedback.given", t, journey=f"f{i}", score=s) for i, s in enumerate((1, 4, 5, 5))]
    )
    assert h.rollup(**SOC).feedback == {"1": 1, "4": 1, "5": 2}


def test_office_wait_compliance_against_standard(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    common: Where = {"journey": None, "service": None, "agency": "mfc", "channel": "mfc"}
    h.feed(
        [
            event("visit.served", t, office="mfc-1", wait_seconds=w, **common)
            for w in (0, 900, 901, 3000)
        ]
    )
    r = h.rollup(agency="mfc", service="")
    assert r.visits == {"true": 2, "false": 2}
    assert r.wait_seconds is not None and r.wait_seconds.sum_ms == (900 + 901 + 3000) * 1000


def test_digital_take_up(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    for i, ch in enumerate(["portal", "mobile", "proactive", "mfc", "mfc"]):
        h.feed(journey(t, ("journey.started", 0), journey=f"d{i}", channel=ch))
    r = h.rollup(**SOC)
    assert (r.started_digital, r.started) == (3, 5)


def test_appeals_on_time_open_and_overdue(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    common: Where = {"journey": None, "service": None, "channel": "portal"}
    h.feed([event("appeal.received", t, appeal=f"a{i}", **common) for i in range(3)])
    assert (h.gauges(**SOC).appeals_open, h.gauges(**SOC).appeals_overdue) == (3, 0)
    # 30 calendar days from 2 March end at 24:00 on 1 April (a Wednesday)
    h.feed([event("appeal.answered", local("2026-04-01 23:00"), appeal="a0", **common)])
    h.feed([tick(local("2026-04-03 12:00"))])
    assert (h.gauges(**SOC).appeals_open, h.gauges(**SOC).appeals_overdue) == (2, 2)
    h.feed([event("appeal.answered", local("2026-04-02 09:00"), appeal="a1", **common)])
    r = h.rollup(**SOC)
    assert r.appeals_received == 3
    assert r.appeals_answered == {"on_time": 1, "late": 1}
    assert (h.gauges(**SOC).appeals_open, h.gauges(**SOC).appeals_overdue) == (1, 1)


def test_interagency_within_48h(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    common = {"agency": "reg", "service": "reg-cert", "channel": "office", "counterpart": "soc"}
    evs = []
    for i, hours in enumerate([1, 48, 49]):
        evs.append(event("interagency.requested", t, journey=f"i{i}", request="r", **common))
        evs.append(
            event(
                "interagency.responded",
                t + timedelta(hours=hours),
                journey=f"i{i}",
                request="r",
                **common,
            )
        )
    h.feed(evs)
    r = h.rollup(agency="reg")
    assert r.interagency_requested == 3
    assert r.interagency_responded == {"within": 2, "over": 1}
    assert h.gauges(agency="reg").interagency_open == 0


def test_error_free_journeys(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(
        journey(
            t,
            ("journey.started", 0),
            ("journey.error", 1, {"code": "esia_timeout"}),
            ("journey.error", 2, {"code": "nonsense"}),
            ("journey.submitted", 3),
            journey="e",
        )
    )
    h.feed(journey(t, ("journey.started", 0), ("journey.abandoned", 1), journey="ok"))
    r = h.rollup(**SOC)
    assert (r.resolved, r.resolved_with_errors) == (2, 1)
    assert r.errors == {"esia_timeout": 1, "other": 1}


def test_late_lifecycle_events_after_abandoned_or_decided_change_nothing_else(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(journey(t, ("journey.started", 0), ("journey.abandoned", 1), journey="a"))
    h.feed(
        journey(
            t,
            ("journey.started", 0),
            ("journey.submitted", 1),
            ("decision.made", 5, {"outcome": "approved"}),
            journey="d",
        )
    )
    before = h.rollup(**SOC)
    h.feed(journey(t, ("journey.step", 2, {"step": "form"}), ("journey.submitted", 3), journey="a"))
    h.feed(journey(t, ("decision.made", 9, {"outcome": "rejected"}), journey="d"))
    after = h.rollup(**SOC)
    assert after.late == {"after_abandoned": 2, "after_decided": 1}
    after.late = {}
    before.late = {}
    after.events -= 3
    after.skew_seconds = before.skew_seconds
    assert msgspec.json.encode(after) == msgspec.json.encode(before)
    # feedback is not a lifecycle event: counted whenever it comes
    h.feed([event("feedback.given", t + timedelta(minutes=20), journey="d", score=5)])
    assert h.rollup(**SOC).feedback == {"5": 1}


def test_proactive_decided_with_no_submission(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(journey(t, ("journey.started", 0), journey="p", channel="proactive"))
    assert h.gauges(**SOC).pending == 1
    h.feed(
        journey(t, ("decision.made", 60, {"outcome": "approved"}), journey="p", channel="proactive")
    )
    r = h.rollup(**SOC)
    assert r.decisions == {"approved:on_time": 1}
    assert (r.submitted, r.abandoned, r.resolved) == (0, 0, 0)
    assert h.gauges(**SOC).pending == 0


def test_timeout_abandonment_only_on_portal_and_mobile(h: Harness) -> None:
    t = local("2026-03-02 23:40")
    for ch in ("portal", "mobile", "mfc", "office", "phone"):
        service = "reg-cert" if ch in ("office", "phone") else "soc-benefit"
        agency = "reg" if ch in ("office", "phone") else "soc"
        h.feed(
            journey(
                t,
                ("journey.started", 0),
                ("journey.step", 5, {"step": "form"}),
                journey=f"t-{ch}",
                channel=ch,
                service=service,
                agency=agency,
            )
        )
    # last activity 23:45 + 30 min = 00:15 next day; watermark = tick - 5 min
    h.feed([tick(local("2026-03-03 00:19"))])
    assert h.rollup(**SOC).abandoned_timeout == 0
    h.feed([tick(local("2026-03-03 00:21"))])
    assert h.rollup("2026-03-03", **SOC).abandoned_timeout == 2
    assert h.rollup("2026-03-02", **SOC).abandoned == 0
    assert h.rollup(channel="mfc").abandoned == 0
    assert h.rollup(agency="reg", service="reg-cert").abandoned == 0
    g = h.gauges(**SOC)
    assert (g.open_journeys, g.pending) == (1, 1)


def test_activity_postpones_timeout(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed(journey(t, ("journey.started", 0), ("journey.step", 25, {"step": "form"}), journey="x"))
    h.feed([tick(t + timedelta(minutes=40))])
    assert h.rollup(**SOC).abandoned == 0
    h.feed([tick(t + timedelta(minutes=61))])
    assert h.rollup(**SOC).abandoned_timeout == 1


def test_cases_start_and_complete_when_all_journeys_decided(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    c = {"case": "k1", "life_situation": "birth"}
    h.feed(journey(t, ("journey.started", 0), ("journey.submitted", 1), journey="a", **c))
    h.feed(
        journey(
            t,
            ("journey.started", 2),
            ("journey.submitted", 3),
            journey="b",
            service="soc-card",
            **c,
        )
    )
    h.feed(journey(t, ("decision.made", 60, {"outcome": "approved"}), journey="a", **c))
    assert h.rollup(**SOC).cases_completed == 0
    h.feed(
        journey(
            t, ("decision.made", 120, {"outcome": "approved"}), journey="b", service="soc-card", **c
        )
    )
    r = h.rollup(**SOC)
    assert (r.cases_started, r.cases_completed) == (1, 1)
    assert r.case_seconds is not None and r.case_seconds.sum_ms == 120 * 60_000
    assert h.rollup(life_situation="birth").cases_started == 1


def test_counts_land_on_the_local_day(h: Harness) -> None:
    # 23:30 on 2 March in Yekaterinburg is 18:30 UTC: still 2 March locally
    h.feed([event("journey.started", local("2026-03-02 23:30"), journey="a")])
    h.feed([event("journey.started", local("2026-03-03 00:30"), journey="b")])
    assert h.rollup("2026-03-02").started == 1
    assert h.rollup("2026-03-03").started == 1


def test_restatement_of_a_closed_day(h: Harness) -> None:
    h.feed([event("journey.started", local("2026-03-02 10:00"), journey="a")])
    h.feed([tick(local("2026-03-04 12:00"))])
    assert not any(k.startswith(b"s|") for k in h.aggregates)
    h.feed([event("journey.started", local("2026-03-02 11:00"), journey="late")])
    assert h.rollup("2026-03-02", **SOC).started == 2
    assert h.rollup("2026-03-02", **SOC).late == {"behind_watermark": 1}
    rs = agg.decode_restatement(h.aggregates[agg.restatement_key(0, "2026-03-02", "soc")])
    assert rs.count == 1
    assert rs.recent[0].event_type == "journey.started"
    assert "started" in rs.recent[0].fields


def test_duplicates_counted_once(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    evs = journey(t, ("journey.started", 0), ("journey.submitted", 4), journey="a")
    h.feed([*evs, evs[0], evs[1]])
    h.feed([evs[1]])
    r = h.rollup(**SOC)
    assert (r.started, r.submitted, r.duplicates, r.events) == (1, 1, 3, 2)
    assert r.late == {}


def test_invalid_events_go_to_the_dead_letter_topic(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    bad_service = event("journey.started", t, journey="x", service="nope")
    with_citizen = {**event("journey.started", t, journey="y"), "citizen": "SNILS 123-456-789 00"}
    h.feed([b"{not json", bad_service, with_citizen])
    reasons = [d.reason for d in h.dead]
    assert reasons == ["invalid_json", "unknown_service", "not_pseudonym"]
    values = [msgspec.json.decode(d.value) for d in h.dead]
    assert values[1]["agency"] == "soc"
    assert values[1]["event_id"] == bad_service["event_id"]
    assert values[0]["agency"] == "" and values[0]["event_id"] == ""
    assert all(v["source"] == "processor" and v["received_at"] for v in values)
    assert all(b"123-456-789" not in d.value for d in h.dead)
    assert h.rollup().events == 0


def test_future_events_are_rejected_against_the_record_time(h: Harness) -> None:
    t = local("2026-03-02 10:00")
    h.feed([event("journey.started", t, journey="f")], received=t - timedelta(minutes=10))
    assert [d.reason for d in h.dead] == ["future_timestamp"]
