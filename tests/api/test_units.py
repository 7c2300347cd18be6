"""Unit tests of the API's pure logic: tokens, limits, read model arithmetic, exposition,
scorecard arithmetic and report rendering. No broker needed."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import sqlite3
import zlib
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from api.admission import TokenSlots
from api.errors import BadRequest, NotFound, TooManyRequests
from api.ratelimit import TokenBuckets
from api.readmodel import ReadModel, difference, negated
from api.recent import RecentIds, recent_key
from api.report_render import render_csv, render_html, render_json
from api.reports import build_report, quantile
from api.scorecard import Scorer, period_bounds, scored
from api.tokens import Kind, TokenError, TokenStore
from contract import aggregates as agg
from contract.aggregates import Gauges, Hist, Rollup, RollupKey
from contract.catalog import load_catalog
from contract.methodology import load_methodology, score
from contract.metrics import BUCKETS, FAMILIES
from contract.settings import CommonSettings
from contract.topics import Topics

CATALOG = load_catalog()
METHODOLOGY = load_methodology()


# -- tokens ------------------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    store = TokenStore(db, cache_seconds=0)
    token, info = store.create(Kind.AGENCY, "minsoc", "ИС Минсоца")
    store.close()
    raw = db.read_bytes() + (
        db.with_name("tokens.db-wal").read_bytes()
        if db.with_name("tokens.db-wal").exists()
        else b""
    )
    assert token.encode() not in raw
    rows = sqlite3.connect(db).execute("SELECT hash FROM tokens").fetchall()
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(),)]

    verified = store.verify(token)
    assert verified is not None and verified.agency == "minsoc" and verified.kind is Kind.AGENCY
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.verify(tampered) is None
    assert store.verify("not-a-token") is None
    assert store.verify(f"sp_{info.id}_") is None

    store.revoke(info.id)
    assert store.verify(token) is None
    assert [t.revoked_at is not None for t in store.list()] == [True]
    with pytest.raises(TokenError, match="no token with id 'nope'"):
        store.revoke("nope")


def test_token_kinds_are_checked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.db")
    with pytest.raises(TokenError, match="agency code"):
        store.create(Kind.AGENCY, None)
    with pytest.raises(TokenError, match="drop agency 'minsoc'"):
        store.create(Kind.INSPECTOR, "minsoc")
    token, _ = store.create(Kind.INSPECTOR)
    info = store.verify(token)
    assert info is not None and info.kind is Kind.INSPECTOR and info.agency is None


# -- limits ------------------------------------------------------------------------------------


def test_rate_limiter_burst_then_rate() -> None:
    rl = TokenBuckets(burst=1000, rate=100.0)
    assert rl.take("t", 1000, now=0.0) == 0.0
    wait = rl.take("t", 500, now=0.0)
    assert wait == pytest.approx(5.0)
    assert rl.take("other", 1000, now=0.0) == 0.0  # per token
    assert rl.take("t", 500, now=5.0) == 0.0  # refilled 500 in 5 s
    assert rl.wait("t", 1, now=5.0) == pytest.approx(0.01)  # waiting spends nothing
    assert TokenBuckets(burst=1, rate=0).take("t", 10**6) == 0.0  # disabled


def test_rate_limiter_reads_its_injected_clock() -> None:
    now = [0.0]
    rl = TokenBuckets(burst=2, rate=1.0, clock=lambda: now[0])
    assert rl.take("t", 2) == 0.0
    assert rl.take("t", 1) == pytest.approx(1.0)
    now[0] = 1.0
    assert rl.take("t", 1) == 0.0


def test_recent_ids_forget_the_oldest() -> None:
    ids = RecentIds(3)
    ids.add_all(["a", "b", "c", "d"])
    assert "a" not in ids and all(x in ids for x in "bcd")
    assert len(ids) == 3


def test_recent_keys_are_per_agency_and_case_blind() -> None:
    eid = "BFA8F557-CDD9-4E10-967B-9E676750F0F2"
    assert recent_key("minsoc", eid) == recent_key("minsoc", eid.lower())
    assert recent_key("minsoc", eid) != recent_key("zags", eid)
    ids = RecentIds(10)
    ids.add_all([recent_key("minsoc", eid)])
    assert recent_key("minsoc", eid.lower()) in ids and recent_key("zags", eid) not in ids


def test_token_slots_cap_each_token_and_forget_idle_ones() -> None:
    slots = TokenSlots(max_requests=2, max_inflight=100)
    with slots.request("a"), slots.request("a"):
        with pytest.raises(TooManyRequests) as refused:
            slots.request("a").__enter__()
        assert refused.value.retry_after == 1 and "limit 2 per token" in refused.value.message
        with slots.request("b"):  # another token is not affected
            assert slots.requests("b") == 1
        assert slots.requests("a") == 2
    assert slots.requests("a") == 0 and not slots._requests  # nothing kept for idle tokens

    async def inflight() -> None:
        a, b = slots.inflight("a"), slots.inflight("b")
        assert await a.acquire(80, wait=0)
        assert not await a.acquire(30, wait=0.01)  # over a's own bound ...
        assert await b.acquire(100, wait=0)  # ... while b has all of its own
        assert slots.inflight("a") is a  # a second request of a shares a's bound
        slots.done("a")
        await a.release(80)
        await b.release(100)
        slots.done("a")
        assert "a" not in slots._inflight and "b" in slots._inflight
        slots.done("b")
        assert not slots._inflight

    asyncio.run(inflight())


def test_per_token_inflight_bound_must_fit_a_batch() -> None:
    from api.settings import ApiSettings
    from contract.errors import ConfigError

    with pytest.raises(ConfigError, match="SERVICEPULSE_MAX_INFLIGHT_EVENTS_PER_TOKEN"):
        ApiSettings(max_inflight_events_per_token=10, max_events=100)


# -- read model arithmetic -------------------------------------------------------------------------


def _model() -> ReadModel:
    return ReadModel(CommonSettings(), Topics("unit"), CATALOG)


def _rollup(**kw: object) -> Rollup:
    r = Rollup()
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def _rollup_of(
    started: int,
    submitted: int,
    steps: dict[str, int],
    decisions: dict[str, int],
    form: list[int] | None,
) -> Rollup:
    r = _rollup(started=started, submitted=submitted, steps=steps, decisions=decisions)
    if form is not None:
        r.form_seconds = Hist(form, sum(form) * 1000)
    return r


def _key(
    partition: int, day: str, service: str = "large_family_status", channel: str = "portal"
) -> bytes:
    return RollupKey(partition, day, agg.Dims("minsoc", service, "75701000", channel, "")).encode()


def test_latest_value_per_key_summed_over_partitions() -> None:
    m = _model()
    with m.lock:
        m.apply_aggregate(
            _key(0, "2026-11-02"), agg.encode(_rollup(started=3, steps={"identity": 2}))
        )
        m.apply_aggregate(_key(1, "2026-11-02"), agg.encode(_rollup(started=4)))
        # partition 0 rewrites its cumulative value: replaces, not adds
        m.apply_aggregate(
            _key(0, "2026-11-02"), agg.encode(_rollup(started=5, steps={"identity": 3}))
        )
        m.apply_aggregate(_key(0, "2026-11-03"), agg.encode(_rollup(started=1)))
    totals = dict(m.totals())
    cell = agg.Dims("minsoc", "large_family_status", "75701000", "portal", "")
    assert totals[cell].started == 5 + 4 + 1
    assert totals[cell].steps == {"identity": 3}
    day = m.period("2026-11-02", "2026-11-02", lambda c: c[0])
    assert day["minsoc"].started == 9
    with m.lock:  # a tombstone closes the day: never a subtraction (docs/AGGREGATES.md)
        m.apply_aggregate(_key(1, "2026-11-02"), None)
    assert m.period("2026-11-01", "2026-11-30", lambda c: 0)[0].started == 10


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.sampled_from(["2026-11-01", "2026-11-02"]), st.integers(0, 50)
        ),
        max_size=30,
    )
)
@settings(max_examples=60, deadline=None)
def test_totals_equal_sum_of_latest_values(writes: list[tuple[int, str, int]]) -> None:
    m = _model()
    latest: dict[tuple[int, str], int] = {}
    with m.lock:
        for p, day, n in writes:
            r = _rollup(
                started=n, form_seconds=Hist([n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], n * 1000)
            )
            m.apply_aggregate(_key(p, day), agg.encode(r))
            latest[(p, day)] = n
    totals = dict(m.totals())
    expected = sum(latest.values())
    if latest:
        r = totals[agg.Dims("minsoc", "large_family_status", "75701000", "portal", "")]
        assert r.started == expected
        assert r.form_seconds is not None and r.form_seconds.counts[0] == expected
        assert r.form_seconds.sum_ms == expected * 1000


_small_maps = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 9), max_size=3)
_rollups = st.builds(
    _rollup_of,
    started=st.integers(0, 50),
    submitted=st.integers(0, 50),
    steps=_small_maps,
    decisions=_small_maps,
    form=st.none() | st.lists(st.integers(0, 5), min_size=12, max_size=12),
)


@given(new=_rollups, old=st.none() | _rollups)
@settings(max_examples=150, deadline=None)
def test_difference_adds_back_to_new(new: Rollup, old: Rollup | None) -> None:
    total = Rollup()
    if old is not None:
        total.add(old)
    d = difference(new, old)
    if d is not None:
        total.add(d)
    assert agg.encode(_normal(total)) == agg.encode(_normal(new))


def _normal(r: Rollup) -> Rollup:
    """Drop zero map entries and empty histograms, which hold no information."""
    out = Rollup()
    out.add(r)
    for f in agg.MAP_FIELDS:
        setattr(out, f, {k: v for k, v in sorted(getattr(out, f).items()) if v})
    for f in agg.HIST_FIELDS:
        h = getattr(out, f)
        if h is not None and not any(h.counts) and not h.sum_ms:
            setattr(out, f, None)
    return out


def test_negated_cancels() -> None:
    r = _rollup(started=3, decisions={"approved:on_time": 2}, wait_seconds=Hist([1] * 10, 500))
    total = Rollup()
    total.add(r)
    total.add(negated(r))
    assert total.started == 0 and total.decisions == {"approved:on_time": 0}
    assert total.wait_seconds is not None and total.wait_seconds.count == 0


def test_malformed_records_are_skipped_and_counted() -> None:
    m = _model()
    with m.lock:
        m._apply("unit.aggregates.v2", b"r|0|bad", b"{}", 0)
        m._apply("unit.aggregates.v2", _key(0, "2026-11-01"), b"not json", 0)
        m._apply(
            "unit.deadletter",
            None,
            b'{"reason":"bad_format","agency":"minsoc","received_at":"2026-11-01T23:30:00+00:00"}',
            0,
        )
        m._apply("unit.deadletter", None, b'{"reason":"weird","agency":"x|y"}', 1_700_000_000_000)
    assert m.bad_records == 2
    # 23:30 UTC is 04:30 of the next day in Yekaterinburg
    assert m.dead_letters("2026-11-02", "2026-11-02") == {("minsoc", "bad_format"): 1}
    assert m.dead_letters()[("unknown", "other")] == 1


# -- scorecard arithmetic -------------------------------------------------------------------------


def test_scored_equals_methodology_without_small_cells() -> None:
    r = _rollup(
        submitted=80,
        abandoned=20,
        decisions={"approved:on_time": 30, "rejected:late": 10, "approved:unknown": 7},
        feedback={"5": 6, "4": 2, "1": 2},
        started=100,
        started_digital=60,
        resolved=100,
        resolved_with_errors=25,
    )
    mine = scored(r, METHODOLOGY)
    ref = score(r, METHODOLOGY)
    assert mine.index == pytest.approx(ref.index)
    assert mine.counted == list(ref.counted)
    assert not mine.suppressed
    # by hand: completion .8 (w .15), on_time .75 (.20), satisfaction .8 (.20),
    # digital .6 (.10), error_free .75 (.10)
    expected = 100 * (0.15 * 0.8 + 0.2 * 0.75 + 0.2 * 0.8 + 0.1 * 0.6 + 0.1 * 0.75) / 0.75
    assert mine.index == pytest.approx(expected)
    assert mine.level == "advanced"
    on_time = next(c for c in mine.components if c.code == "on_time")
    assert (on_time.numerator, on_time.denominator) == (30, 40)


def test_small_cells_are_suppressed_and_left_out_of_the_index() -> None:
    # satisfaction has 4 scores (< 5): hidden and not counted
    r = _rollup(submitted=9, abandoned=1, feedback={"1": 4})
    s = scored(r, METHODOLOGY)
    sat = next(c for c in s.components if c.code == "satisfaction")
    assert sat.suppressed and sat.value is None and sat.numerator is None and not sat.counted
    assert s.suppressed == ["satisfaction"]
    assert s.counted == ["completion"]
    assert s.index == pytest.approx(90.0)


def test_period_bounds() -> None:
    now = datetime.fromisoformat("2026-11-26T21:00:00+00:00")  # 27th in Yekaterinburg
    assert period_bounds(CATALOG, None, None, now) == (date(2026, 10, 29), date(2026, 11, 27))
    with pytest.raises(BadRequest, match="after"):
        period_bounds(CATALOG, date(2026, 11, 2), date(2026, 11, 1))
    with pytest.raises(BadRequest, match="longer than 366"):
        period_bounds(CATALOG, date(2025, 1, 1), date(2026, 11, 1))


def test_quantile_interpolates_within_buckets() -> None:
    bounds = BUCKETS["skew_seconds"]  # 1, 5, 30, ...
    h = Hist([0, 10, 10, 0, 0, 0, 0, 0])
    assert quantile(h, bounds, 0.5) == pytest.approx(5.0)
    assert quantile(h, bounds, 0.75) == pytest.approx(5 + 25 * 0.5)
    assert quantile(Hist([0] * 8), bounds, 0.5) is None


# -- exposition ---------------------------------------------------------------------------


def _populated() -> ReadModel:
    m = _model()
    with m.lock:
        r = _rollup(
            events=40,
            started=20,
            started_digital=15,
            submitted=12,
            abandoned=3,
            resolved=15,
            steps={"identity": 18, "family": 15, "bogus_step": 9},
            errors={"esia_timeout": 2, "unknown_code": 1},
            decisions={"approved:on_time": 6, "rejected:late": 2},
            feedback={"5": 4, "2": 1},
            late={"after_decided": 1},
            form_seconds=Hist([1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0], 12_345),
            skew_seconds=Hist([5, 0, 0, 0, 0, 0, 0, 1], 90_000),
        )
        m.apply_aggregate(_key(0, "2026-11-02"), agg.encode(r))
        m.apply_aggregate(_key(1, "2026-11-03"), agg.encode(r))
        m.apply_aggregate(
            RollupKey(0, "2026-11-02", agg.Dims("nosuch", "", "75701000", "portal", "")).encode(),
            agg.encode(_rollup(started=99)),
        )
        m.apply_aggregate(
            agg.GaugeKey(
                0, agg.GaugeDims("minsoc", "large_family_status", "75701000", "mfc")
            ).encode(),
            agg.encode(Gauges(pending=7, overdue=2)),
        )
        m.apply_aggregate(
            agg.GaugeKey(
                1, agg.GaugeDims("minsoc", "large_family_status", "75701000", "mfc")
            ).encode(),
            agg.encode(Gauges(pending=1, overdue=1)),
        )
        m.apply_dead_letter(
            json.dumps(
                {
                    "reason": "bad_format",
                    "agency": "minsoc",
                    "received_at": "2026-11-02T10:00:00+05:00",
                }
            ).encode(),
            0,
        )
    return m


def _scrape(m: ReadModel, compressed: bool = False) -> dict[tuple[str, frozenset[Any]], float]:
    with m.lock:
        if compressed:
            body = m.exposition.gzip_payload(b"# EOF-free tail\n")
            # one gzip member: a decoder that stops after the first member sees all of it
            d = zlib.decompressobj(31)
            text = d.decompress(body)
            assert d.eof and not d.unused_data and text.endswith(b"# EOF-free tail\n")
        else:
            text = m.exposition.payload()
    out: dict[tuple[str, frozenset[Any]], float] = {}
    names: set[str] = set()
    for fam in text_string_to_metric_families(text.decode()):
        names.add(fam.name)
        for sample in fam.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    out[("__families__", frozenset(names))] = 0
    return out


def test_exposition_exposes_every_family_from_the_catalog_only() -> None:
    m = _populated()
    samples = _scrape(m)
    names = next(k[1] for k in samples if k[0] == "__families__")
    assert names == {f.full.removesuffix("_total") for f in FAMILIES}
    assert _scrape(m, compressed=True) == samples

    def v(name: str, labels: dict[str, str]) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    base = {"agency": "minsoc", "service": "large_family_status", "channel": "portal"}
    assert v("servicepulse_journeys_started_total", base) == 40
    assert v("servicepulse_journey_steps_total", {**base, "step": "identity"}) == 36
    assert v("servicepulse_journey_steps_total", {**base, "step": "bogus_step"}) is None
    assert v("servicepulse_journey_errors_total", {**base, "code": "other"}) == 2
    assert (
        v("servicepulse_decisions_total", {**base, "outcome": "rejected", "timeliness": "late"})
        == 4
    )
    assert v("servicepulse_feedback_total", {**base, "score": "5"}) == 8
    assert (
        v(
            "servicepulse_late_events_total",
            {"agency": "minsoc", "service": "large_family_status", "reason": "after_decided"},
        )
        == 2
    )
    assert v("servicepulse_applications_pending", {**base, "channel": "mfc"}) == 8
    assert v("servicepulse_applications_overdue", {**base, "channel": "mfc"}) == 3
    assert (
        v("servicepulse_events_rejected_total", {"agency": "minsoc", "reason": "bad_format"}) == 1
    )
    hl = base
    assert v("servicepulse_form_duration_seconds_bucket", {**hl, "le": "30.0"}) == 2
    assert v("servicepulse_form_duration_seconds_bucket", {**hl, "le": "60.0"}) == 6
    assert v("servicepulse_form_duration_seconds_bucket", {**hl, "le": "+Inf"}) == 12
    assert v("servicepulse_form_duration_seconds_sum", hl) == pytest.approx(24.69)
    assert v("servicepulse_delivery_delay_seconds_count", {"agency": "minsoc"}) == 12
    # the cell of an agency the catalog does not know is left out, and counted
    assert not any(("agency", "nosuch") in k[1] for k in samples)
    assert m.exposition.unknown_cells == 1


def test_exposition_renders_only_what_changed_and_equals_a_full_render() -> None:
    m = _populated()
    first = _scrape(m)
    with m.lock:
        r = _rollup(started=5, feedback={"4": 2})
        m.apply_aggregate(_key(0, "2026-11-02"), agg.encode(r))
        m.apply_aggregate(
            agg.GaugeKey(
                1, agg.GaugeDims("minsoc", "large_family_status", "75701000", "mfc")
            ).encode(),
            agg.encode(Gauges()),
        )
    again = _scrape(m)
    base = {"agency": "minsoc", "service": "large_family_status", "channel": "portal"}
    started = ("servicepulse_journeys_started_total", frozenset(base.items()))
    # the partition-0 record of 2026-11-02 went from 20 started to 5
    assert first[started] == 40 and again[started] == 25
    pending = frozenset({**base, "channel": "mfc"}.items())
    assert again[("servicepulse_applications_pending", pending)] == 7
    # the incremental render equals a render of a model fed the same records at once
    fresh = _model()
    with m.lock, fresh.lock:
        live = [kv for held in m._raw.values() for kv in held.items()]
        for k, value in [*live, *m._records()]:
            fresh.apply_aggregate(k, value)
        for (d, a, reason), n in m._dead.items():
            for _ in range(n):
                fresh.apply_dead_letter(
                    json.dumps(
                        {"reason": reason, "agency": a, "received_at": d + "T12:00:00+05:00"}
                    ).encode(),
                    0,
                )
    assert _scrape(fresh) == again


# -- reports ------------------------------------------------------------------------------


def test_report_renders_in_three_formats() -> None:
    model = _populated()
    scorer = Scorer(model, CATALOG, METHODOLOGY)
    rep = build_report(
        scorer,
        "region",
        None,
        date(2026, 11, 1),
        date(2026, 11, 30),
        datetime.fromisoformat("2026-11-30T12:00:00+00:00"),
    )
    assert rep.summary.journeys_started == 40
    assert [a.code for a in rep.agencies] == ["minsoc"] and rep.agencies[0].rank == 1
    funnel = rep.funnels[0]
    assert [s.reached for s in funnel.steps[:2]] == [36, 30]
    assert funnel.steps[0].drop_off == pytest.approx(1 - 36 / 40)
    # 3 overdue is a small cell: hidden in the published report (issue 14, item 9)
    assert rep.overdue[0].overdue is None and rep.overdue[0].pending == 8
    q = rep.quality[0]
    assert (q.events, q.rejected) == (80, 1) and q.rejected_by_reason == {"bad_format": 1}

    data = json.loads(render_json(rep))
    assert data["from"] == "2026-11-01" and data["summary"]["index"] == pytest.approx(
        rep.summary.index
    )
    rows = list(csv.DictReader(io.StringIO(render_csv(rep).decode("utf-8-sig"))))
    idx = next(r for r in rows if r["section"] == "ranking" and r["metric"] == "index")
    assert float(idx["value"]) == pytest.approx(rep.agencies[0].index, rel=1e-5)
    html = render_html(rep).decode()
    for heading in (
        "Рейтинг ведомств",
        "Воронки заполнения",
        "Просроченные заявления",
        "Качество данных",
        "Методика расчёта",
        "подпись",
    ):
        assert heading in html
    assert "Минсоц" in html and "<script" not in html


def test_report_scope_errors() -> None:
    scorer = Scorer(_model(), CATALOG, METHODOLOGY)
    with pytest.raises(NotFound, match="unknown agency 'zzz'"):
        scorer.scorecard("agency", "zzz", date(2026, 11, 1), date(2026, 11, 2))
    with pytest.raises(BadRequest, match="needs a code"):
        scorer.scorecard("service", None, date(2026, 11, 1), date(2026, 11, 2))


def test_scorer_remembers_results_until_the_model_changes_and_only_the_last_64() -> None:
    model = _model()
    scorer = Scorer(model, CATALOG, METHODOLOGY)
    calls: list[int] = []

    def compute(n: int) -> int:
        calls.append(n)
        return n * 10

    assert scorer.cached(("q", 1), lambda: compute(1)) == 10
    assert scorer.cached(("q", 1), lambda: compute(1)) == 10
    assert calls == [1]  # the second ask was served from the cache
    model.version += 1  # a batch applied: every earlier result is stale
    assert scorer.cached(("q", 1), lambda: compute(1)) == 10
    assert calls == [1, 1]
    for n in range(2, 66):  # 64 more results push the first out
        scorer.cached(("q", n), partial(compute, n))
    calls.clear()
    scorer.cached(("q", 65), lambda: compute(65))
    assert calls == []
    scorer.cached(("q", 1), lambda: compute(1))
    assert calls == [1]
