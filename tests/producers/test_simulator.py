"""The traffic simulator: determinism, validity, realism, scenario knobs, file target."""

from __future__ import annotations

import statistics
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from typer.testing import CliRunner

from contract.catalog import Catalog, load_catalog
from contract.deadlines import DeadlineCalculator
from contract.events import Event, decode_event
from producers.errors import ScenarioError
from producers.simulator import Simulation, generate, load_scenario
from producers.simulator.runner import Plan, run
from producers.simulator.scenario import Scenario
from producers.simulator.sinks import FileSink

TZ = ZoneInfo("Asia/Yekaterinburg")
MONDAY = datetime(2025, 3, 3, tzinfo=TZ)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def week(catalog: Catalog) -> list[dict[str, Any]]:
    """Six days of traffic at a low rate (about 200k events)."""
    return list(generate(catalog, 11, MONDAY, MONDAY + timedelta(days=6), rate=0.4))


def epoch(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()


@pytest.mark.slow
def test_same_seed_same_stream(catalog: Catalog) -> None:
    end = MONDAY + timedelta(hours=12)
    a = list(generate(catalog, 5, MONDAY, end, rate=0.5))
    b = list(generate(catalog, 5, MONDAY, end, rate=0.5))
    c = list(generate(catalog, 6, MONDAY, end, rate=0.5))
    assert len(a) > 1000
    assert a == b
    assert [e["event_id"] for e in a] != [e["event_id"] for e in c[: len(a)]]
    # a shorter run is a prefix of a longer one (the end only cuts)
    shorter = list(generate(catalog, 5, MONDAY, MONDAY + timedelta(hours=6), rate=0.5))
    assert a[: len(shorter)] == shorter


@pytest.mark.slow
def test_every_event_is_valid_and_in_time_order(
    catalog: Catalog, week: list[dict[str, Any]]
) -> None:
    times = [epoch(e) for e in week]
    assert times == sorted(times)
    assert MONDAY.timestamp() <= times[0] and times[-1] < (MONDAY + timedelta(days=6)).timestamp()
    assert len({e["event_id"] for e in week}) == len(week)
    encoder = msgspec.json.Encoder()
    for e in week:
        decoded = decode_event(encoder.encode(e))
        assert isinstance(decoded, Event), (decoded, e)
        assert catalog.check(decoded) == [], e
    types = Counter(e["type"] for e in week)
    for etype in (
        "journey.started", "journey.step", "journey.submitted", "journey.abandoned",
        "journey.error", "decision.made", "interagency.requested", "interagency.responded",
        "visit.served", "feedback.given", "appeal.received", "appeal.answered",
    ):  # fmt: skip
        assert types[etype] > 0, etype
    # every visit names its office and the service it was for (issue 14, item 4)
    visits = [e for e in week if e["type"] == "visit.served"]
    assert all(e.get("service") and e["attrs"]["office"] in catalog.offices for e in visits)
    assert len({e["attrs"]["office"] for e in visits}) > 5
    # both kinds of appeal: complaints about a service (210-FZ) and 59-FZ appeals
    kinds = Counter(e["attrs"].get("kind") for e in week if e["type"] == "appeal.received")
    assert kinds["complaint"] > 0 and kinds[None] > 0


@pytest.mark.slow
def test_rate_is_close_to_the_requested_mean(week: list[dict[str, Any]]) -> None:
    # the first days lack the decisions of earlier weeks, so the rate ramps up
    per_second = len(week) / (6 * 86_400)
    assert 0.25 <= per_second <= 0.55


@pytest.mark.slow
def test_realism(catalog: Catalog, week: list[dict[str, Any]]) -> None:
    calc = DeadlineCalculator(catalog)
    journeys: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for e in week:
        if "journey" not in e:
            continue
        j = journeys[(e["agency"], e["journey"])]
        j.setdefault("channel", e["channel"])
        j.setdefault("service", e["service"])
        j.setdefault(e["type"], epoch(e))
        if e["type"] == "feedback.given":
            j.setdefault("scores", []).append(e["attrs"]["score"])
        if e["type"] == "decision.made":
            j["outcome"] = e["attrs"]["outcome"]
            j["reason"] = e["attrs"].get("reason")
    cutoff = (MONDAY + timedelta(days=4)).timestamp()
    digital = [
        j
        for j in journeys.values()
        if j["channel"] in ("portal", "mobile") and j.get("journey.started", 1e12) < cutoff
    ]
    submitted = sum("journey.submitted" in j for j in digital)
    completion = submitted / len(digital)
    assert 0.5 <= completion <= 0.95, completion

    started = [j for j in journeys.values() if "journey.started" in j]
    digital_share = sum(j["channel"] in ("portal", "mobile", "proactive") for j in started) / len(
        started
    )
    assert 0.45 <= digital_share <= 0.9, digital_share

    proactive = [j for j in journeys.values() if j["channel"] == "proactive"]
    assert any("decision.made" in j and "journey.submitted" not in j for j in proactive)
    assert all("journey.submitted" not in j for j in proactive)

    late: list[float] = []
    on_time: list[float] = []
    decided = 0
    for j in journeys.values():
        if "decision.made" not in j:
            continue
        decided += 1
        trigger = j.get("journey.submitted", j.get("journey.started"))
        assert trigger is not None
        term = catalog.services[j["service"]].service.deadline
        is_late = j["decision.made"] > calc.deadline(term, trigger)
        (late if is_late else on_time).extend(j.get("scores", []))
        j["late"] = is_late
    late_share = sum(j.get("late", False) for j in journeys.values()) / decided
    assert 0.01 <= late_share <= 0.3, late_share
    assert len(late) >= 30
    assert statistics.mean(late) < statistics.mean(on_time) - 0.5

    rejected = [j for j in journeys.values() if j.get("outcome") == "rejected"]
    assert 0.03 <= len(rejected) / decided <= 0.25
    reasons = Counter(j["reason"] for j in rejected)
    assert reasons["unlisted_reason"] < sum(reasons.values()) / 5
    assert len(reasons) > 5


@pytest.mark.slow
def test_office_waits_depend_on_hour_and_size(catalog: Catalog, week: list[dict[str, Any]]) -> None:
    waits: dict[str, list[int]] = defaultdict(list)
    by_hour: dict[int, list[int]] = defaultdict(list)
    for e in week:
        if e["type"] == "visit.served":
            waits[e["attrs"]["office"]].append(e["attrs"]["wait_seconds"])
            by_hour[datetime.fromisoformat(e["occurred_at"]).hour].append(
                e["attrs"]["wait_seconds"]
            )
            hour = datetime.fromisoformat(e["occurred_at"]).hour
            assert 8 <= hour <= 23
    assert statistics.mean(by_hour[11]) > statistics.mean(by_hour[14])
    assert len(waits) >= 10


def funnel_drop(events: list[dict[str, Any]], service: str, step: str, nxt: str) -> float:
    reached: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.get("service") == service and e["type"] == "journey.step":
            reached[e["attrs"]["step"]].add(e["journey"])
    return 1 - len(reached[nxt] & reached[step]) / len(reached[step])


@pytest.mark.slow
def test_failing_step_scenario_raises_its_drop_off(catalog: Catalog) -> None:
    scenario = load_scenario("failing-step", catalog)
    end = MONDAY + timedelta(days=1)
    base = list(generate(catalog, 3, MONDAY, end, rate=0.5))
    failing = list(generate(catalog, 3, MONDAY, end, rate=0.5, scenario=scenario))
    before = funnel_drop(base, "housing_subsidy", "documents", "bank")
    after = funnel_drop(failing, "housing_subsidy", "documents", "bank")
    assert before < 0.2
    assert after > 0.35
    assert after > before * 3
    errors = Counter(
        e["attrs"]["code"]
        for e in failing
        if e["type"] == "journey.error" and e.get("service") == "housing_subsidy"
    )
    assert errors.most_common(1)[0][0] == "upload_failed"


@pytest.mark.slow
def test_slow_office_scenario_lengthens_its_queue(catalog: Catalog) -> None:
    scenario = load_scenario("slow-office", catalog)
    end = MONDAY + timedelta(days=1)

    def waits(sc: Scenario | None) -> float:
        mean: float = statistics.mean(
            e["attrs"]["wait_seconds"]
            for e in generate(catalog, 4, MONDAY, end, rate=0.5, scenario=sc)
            if e["type"] == "visit.served" and e["attrs"]["office"] == "mfc-chel-kalin"
        )
        return mean

    assert waits(scenario) > 2.5 * waits(None)


def test_bad_scenario_names_the_problem(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("services:\n  housing_subsidy:\n    steps:\n      nope: {drop_off: 0.5}\n")
    with pytest.raises(ScenarioError, match=r"services.housing_subsidy.steps.nope"):
        load_scenario(path, catalog)
    path.write_text("drop_off: 1.5\n")
    with pytest.raises(ScenarioError, match="drop_off"):
        load_scenario(path, catalog)
    path.write_text("dropoff: 0.1\n")
    with pytest.raises(ScenarioError, match="dropoff"):
        load_scenario(path, catalog)


@pytest.mark.slow
def test_file_target_writes_the_stream(catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "events.ndjson"
    sim = Simulation(catalog, seed=9, start=MONDAY, rate=0.5)
    stats = run(sim, FileSink(out), Plan(end=MONDAY + timedelta(hours=6)))
    lines = out.read_bytes().splitlines()
    assert stats.events == len(lines) > 100
    expected = list(generate(catalog, 9, MONDAY, MONDAY + timedelta(hours=6), rate=0.5))
    assert [msgspec.json.decode(line) for line in lines] == expected
    assert sum(stats.by_type.values()) == len(lines)


@pytest.mark.slow
def test_cli_file_target_is_reproducible(tmp_path: Path) -> None:
    from servicepulse.cli import app

    runner = CliRunner()
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.ndjson"
        result = runner.invoke(
            app,
            [
                "simulate", "--target", "file", "--output", str(out), "--seed", "3",
                "--from", "2025-03-03", "--to", "2025-03-03T04:00:00", "--rate", "1",
                "--quiet", "--scenario", "holiday-peak",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") > 100


MS = 0.001


class SteppedClock:
    """A clock the runner drives: waiting moves it on at once (no real sleep)."""

    def __init__(self, now: datetime) -> None:
        self.now = now.timestamp()
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.now += seconds
        self.mono += seconds
        return stop.is_set()


class TimedSink(FileSink):
    """A file sink that notes the clock's time each event was handed over."""

    def __init__(self, path: Path, clock: SteppedClock) -> None:
        super().__init__(path)
        self.clock = clock
        self.sent_at: list[float] = []

    def send(self, event: dict[str, Any]) -> None:
        self.sent_at.append(self.clock.time())
        super().send(event)


def _live_run(catalog: Catalog, tmp_path: Path, now: datetime, minutes: float) -> None:
    """Run live from ``now`` (10 minutes of backlog first) for ``minutes`` of the clock:
    the backlog leaves at once, every later event when the clock reaches it, none early."""
    out = tmp_path / "live.ndjson"
    clock = SteppedClock(now)
    sink = TimedSink(out, clock)
    sim = Simulation(catalog, seed=1, start=now - timedelta(minutes=10), rate=3)
    stats = run(sim, sink, Plan(duration_s=minutes * 60), clock=clock)
    events = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    assert stats.live
    assert stats.stopped_by == "duration"
    assert stats.elapsed_s == pytest.approx(minutes * 60)
    assert len(events) == len(sink.sent_at) == stats.events
    live = [(epoch(e), sent) for e, sent in zip(events, sink.sent_at, strict=True)]
    # nothing leaves early (occurred_at is written to the millisecond)
    assert all(sent >= occurred - MS for occurred, sent in live)
    backlog = [sent for occurred, sent in live if occurred < now.timestamp()]
    assert backlog and set(backlog) == {now.timestamp()}  # the past leaves at once
    arrived = [(o, sent) for o, sent in live if o >= now.timestamp()]
    assert len(arrived) >= 5  # some arrived live, each when the clock reached it
    assert all(sent - o < MS for o, sent in arrived)
    assert max(o for o, _ in live) <= clock.time() <= now.timestamp() + minutes * 60


def test_live_mode_emits_events_as_the_clock_reaches_them(catalog: Catalog, tmp_path: Path) -> None:
    _live_run(catalog, tmp_path, datetime(2026, 6, 3, 11, 30, tzinfo=TZ), minutes=5)


def test_live_mode_at_a_night_hour(catalog: Catalog, tmp_path: Path) -> None:
    """03:30 region time, the quietest hour: the old test, on the real clock, found no
    event in its two seconds and no output file then."""
    _live_run(catalog, tmp_path, datetime(2026, 6, 3, 3, 30, tzinfo=TZ), minutes=60)


def test_a_file_sink_that_got_nothing_leaves_an_empty_file(tmp_path: Path) -> None:
    """A quiet hour may send nothing: the reader finds an empty file, not none."""
    out = tmp_path / "quiet.ndjson"
    FileSink(out).close()
    assert out.read_bytes() == b""
