"""The read model against the real broker: rollups written in Kafka transactions (as the
processor writes them) are materialised exactly; /metrics and the scorecard equal totals
computed here independently; aborted transactions never count; a restart restores from
the snapshot and counters never go backwards."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract import aggregates as agg
from contract.aggregates import Gauges, Hist, Restatement, RestatementEntry, Rollup, RollupKey
from contract.metrics import BUCKETS
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import connect
from tests.fixtures.api import api_settings, running_api
from tests.fixtures.kafka import TopicFactory

pytestmark = pytest.mark.integration

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
CELLS = [
    ("minsoc", "large_family_status", "75701000", "portal"),
    ("minsoc", "large_family_status", "75738000", "mfc"),
    ("minsoc", "housing_subsidy", "75701000", "mobile"),
    ("minobr", "", "75742000", "office"),
]
FORM_BUCKETS = len(BUCKETS["form_seconds"]) + 1
#: a sample's cell: its label values in a fixed order, or (for the gauges and dead
#: letters) its sorted (name, value) label pairs
Cell: TypeAlias = tuple[str, ...] | tuple[tuple[str, str], ...]


def random_rollup(rng: random.Random, scale: int) -> Rollup:
    """Cumulative counters; ``scale`` grows with each version of a key."""
    r = Rollup()
    r.started = rng.randint(0, 20) * scale
    r.started_digital = rng.randint(0, r.started)
    r.submitted = rng.randint(0, 15) * scale
    r.abandoned = rng.randint(0, 5) * scale
    r.resolved = r.submitted + r.abandoned
    r.resolved_with_errors = rng.randint(0, r.resolved)
    r.decisions = {
        "approved:on_time": rng.randint(0, 9) * scale,
        "rejected:late": rng.randint(0, 3) * scale,
        "approved:unknown": rng.randint(0, 2),
    }
    r.feedback = {str(s): rng.randint(0, 4) * scale for s in range(1, 6)}
    r.events = r.started * 3 + 1
    counts = [rng.randint(0, 3) * scale for _ in range(FORM_BUCKETS)]
    r.form_seconds = Hist(counts, sum(counts) * 90_000)
    return r


class Writer:
    """A transactional producer writing aggregates records as the processor does."""

    def __init__(self, settings: CommonSettings, topic: str) -> None:
        self.topic = topic
        self.producer = connect(settings).transactional_producer(
            client_id="test-writer",
            transactional_id=f"test-{uuid.uuid4().hex[:8]}",
            transaction_timeout_ms=60_000,
        )
        self.producer.init_transactions(30)

    def transaction(self, records: list[tuple[bytes, bytes]], commit: bool = True) -> None:
        self.producer.begin_transaction()
        for k, v in records:
            self.producer.send(self.topic, v, k)
        if commit:
            self.producer.commit_transaction(30)
        else:
            self.producer.flush(30)
            self.producer.abort_transaction(30)

    def close(self) -> None:
        self.producer.close(5)


def expected_totals(latest: dict[bytes, Rollup]) -> dict[str, dict[Cell, float]]:
    """Sums over days and partitions, computed without the API's code."""
    out: dict[str, dict[Cell, float]] = defaultdict(lambda: defaultdict(float))
    for key, r in latest.items():
        k = agg.decode_key(key)
        assert isinstance(k, RollupKey)
        # Prometheus carries no municipality on journey families (docs/METRICS.md)
        a, s, c = dims = (k.dims.agency, k.dims.service, k.dims.channel)
        out["started"][dims] += r.started
        out["submitted"][dims] += r.submitted
        for decision, v in r.decisions.items():
            o, t = decision.split(":")
            out["decisions"][(*dims, o, t)] += v
        for score, v in r.feedback.items():
            out["feedback"][(*dims, score)] += v
        assert r.form_seconds is not None
        cum = 0
        for i, bound in enumerate(BUCKETS["form_seconds"]):
            cum += r.form_seconds.counts[i]
            out["form_bucket"][(a, s, c, str(float(bound)))] += cum
        out["form_bucket"][(a, s, c, "+Inf")] += sum(r.form_seconds.counts)
        out["form_sum"][(a, s, c)] += r.form_seconds.sum_ms / 1000
    return out


def scrape(url: str) -> dict[str, dict[Cell, float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    got: dict[str, dict[Cell, float]] = defaultdict(dict)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            lb = s.labels
            dims = (
                lb.get("agency", ""),
                lb.get("service", ""),
                lb.get("channel", ""),
            )
            if s.name == "servicepulse_journeys_started_total":
                got["started"][dims] = s.value
            elif s.name == "servicepulse_journeys_submitted_total":
                got["submitted"][dims] = s.value
            elif s.name == "servicepulse_decisions_total":
                got["decisions"][(*dims, lb["outcome"], lb["timeliness"])] = s.value
            elif s.name == "servicepulse_feedback_total":
                got["feedback"][(*dims, lb["score"])] = s.value
            elif s.name == "servicepulse_form_duration_seconds_bucket":
                got["form_bucket"][(lb["agency"], lb["service"], lb["channel"], lb["le"])] = s.value
            elif s.name == "servicepulse_form_duration_seconds_sum":
                got["form_sum"][(lb["agency"], lb["service"], lb["channel"])] = s.value
            elif s.name in (
                "servicepulse_applications_overdue",
                "servicepulse_events_rejected_total",
            ):
                got[s.name][tuple(sorted(lb.items()))] = s.value
    return got


def assert_equal(got: dict[str, dict[Cell, float]], want: dict[str, dict[Cell, float]]) -> None:
    for name in ("started", "submitted", "decisions", "feedback", "form_bucket", "form_sum"):
        w = {k: v for k, v in want[name].items() if v}
        g = {k: v for k, v in got[name].items() if v}
        assert g.keys() == w.keys(), name
        for k in w:
            assert g[k] == pytest.approx(w[k]), (name, k)


@pytest.fixture
def env(
    topic_factory: TopicFactory, tmp_path: Path
) -> Iterator[tuple[Topics, CommonSettings, Writer]]:
    topics, common = topic_factory(3)
    writer = Writer(common, topics.aggregates)
    yield topics, common, writer
    writer.close()


def generate(rng: random.Random, versions: int) -> list[list[tuple[bytes, Rollup]]]:
    """Transactions of rollup records: every key rewritten ``versions`` times."""
    keys = [
        RollupKey(p, day, agg.Dims(a, s, m, c, "")).encode()
        for p in range(6)
        for day in DAYS
        for (a, s, m, c) in CELLS
        if rng.random() < 0.6
    ]
    txns: list[list[tuple[bytes, Rollup]]] = []
    for v in range(1, versions + 1):
        batch = [(k, random_rollup(rng, v)) for k in keys]
        rng.shuffle(batch)
        txns.extend(batch[i : i + 25] for i in range(0, len(batch), 25))
    return txns


def test_read_model_equals_independent_totals(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path
) -> None:
    _topics, common, writer = env
    rng = random.Random(20261126)
    latest: dict[bytes, Rollup] = {}
    for txn in generate(rng, versions=3):
        writer.transaction([(k, agg.encode(r)) for k, r in txn])
        latest.update(txn)
    # an aborted transaction must never be seen
    poison = random_rollup(rng, 1000)
    writer.transaction([(k, agg.encode(poison)) for k in list(latest)[:10]], commit=False)
    # live gauges of two partitions, a restatement, a watermark, a dead letter
    writer.transaction(
        [
            (
                agg.GaugeKey(0, agg.GaugeDims(*CELLS[1])).encode(),
                agg.encode(Gauges(pending=5, overdue=2)),
            ),
            (
                agg.GaugeKey(4, agg.GaugeDims(*CELLS[1])).encode(),
                agg.encode(Gauges(pending=3, overdue=1)),
            ),
            (
                agg.restatement_key(2, "2026-11-03", "minsoc"),
                agg.encode(
                    Restatement(
                        count=2,
                        first_at="2026-11-04T08:00:00+05:00",
                        last_at="2026-11-04T09:00:00+05:00",
                        recent=[
                            RestatementEntry(
                                "2026-11-04T09:00:00+05:00", "decision.made", ["decisions"]
                            )
                        ],
                    )
                ),
            ),
            (
                agg.watermark_key(0),
                agg.encode(agg.Watermark(1_796_000_000.0, 1_796_000_300.0, 1_796_000_400.0)),
            ),
        ]
    )
    want = expected_totals(latest)

    snapshot = tmp_path / "rm.snapshot"
    settings = api_settings(common, tmp_path, readmodel_snapshot=snapshot, snapshot_interval=0.5)
    with running_api(settings) as server:
        ready = server.wait_ready()
        assert not ready["readmodel"]["restored_from_snapshot"]
        assert ready["readmodel"]["business_metrics"] == "served"
        got = scrape(server.url)
        assert_equal(got, want)
        # gzip as Prometheus asks for it: one stream holding both parts; plain the same
        zipped = httpx.get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip"})
        plain = httpx.get(f"{server.url}/metrics", headers={"Accept-Encoding": "identity"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert "content-encoding" not in plain.headers
        for text in (zipped.text, plain.text):
            assert "servicepulse_journeys_started_total{" in text
            assert "servicepulse_api_requests_total{" in text
        overdue = {
            "agency": "minsoc",
            "service": "large_family_status",
            "channel": "mfc",
        }
        assert got["servicepulse_applications_overdue"][tuple(sorted(overdue.items()))] == 3

        # the scorecard of minsoc over Nov 2..3, computed by hand from the same records
        inspector = server.inspector_token()
        with server.client(inspector) as c:
            r = c.get(
                "/v1/scorecard",
                params={
                    "scope": "agency",
                    "code": "minsoc",
                    "from": "2026-11-02",
                    "to": "2026-11-03",
                },
            )
        assert r.status_code == 200, r.text
        card = r.json()
        keys = {k: agg.decode_key(k) for k in latest}
        chosen = [
            v
            for k, v in latest.items()
            if isinstance(key := keys[k], RollupKey)
            and key.day in ("2026-11-02", "2026-11-03")
            and key.dims.agency == "minsoc"
        ]
        sub = sum(x.submitted for x in chosen)
        ab = sum(x.abandoned for x in chosen)
        on_time = sum(x.decisions["approved:on_time"] for x in chosen)
        late = sum(x.decisions["rejected:late"] for x in chosen)
        good = sum(x.feedback["4"] + x.feedback["5"] for x in chosen)
        scores = sum(sum(x.feedback.values()) for x in chosen)
        started = sum(x.started for x in chosen)
        digital = sum(x.started_digital for x in chosen)
        resolved = sum(x.resolved for x in chosen)
        errors = sum(x.resolved_with_errors for x in chosen)
        comps = {c["code"]: c for c in card["components"]}
        assert (comps["completion"]["numerator"], comps["completion"]["denominator"]) == (
            sub,
            sub + ab,
        )
        assert (comps["on_time"]["numerator"], comps["on_time"]["denominator"]) == (
            on_time,
            on_time + late,
        )
        assert (comps["satisfaction"]["numerator"], comps["satisfaction"]["denominator"]) == (
            good,
            scores,
        )
        assert (comps["digital"]["numerator"], comps["digital"]["denominator"]) == (
            digital,
            started,
        )
        assert (comps["error_free"]["numerator"], comps["error_free"]["denominator"]) == (
            resolved - errors,
            resolved,
        )
        assert comps["wait"]["denominator"] == 0 and not comps["wait"]["counted"]
        weights = {
            "completion": 0.15,
            "on_time": 0.2,
            "satisfaction": 0.2,
            "digital": 0.1,
            "error_free": 0.1,
        }
        values = {
            "completion": sub / (sub + ab),
            "on_time": on_time / (on_time + late),
            "satisfaction": good / scores,
            "digital": digital / started,
            "error_free": (resolved - errors) / resolved,
        }
        index = 100 * sum(weights[k] * values[k] for k in weights) / sum(weights.values())
        assert card["index"] == pytest.approx(index)
        assert card["level"] == (
            "advanced" if index >= 60 else "satisfactory" if index >= 40 else "basic"
        )
        assert card["journeys_started"] == started
        assert card["restated"] is True
        assert card["restated_days"] == [
            {
                "day": "2026-11-03",
                "agency": "minsoc",
                "count": 2,
                "last_at": "2026-11-04T09:00:00+05:00",
                "changed": ["decisions"],
            }
        ]
        assert card["data_complete_until"] is not None

        # the processor keeps writing while the API runs: totals follow, never backwards
        more = generate(rng, versions=1)
        for txn in more:
            grown = []
            for k, roll in txn:
                roll.add(latest.get(k, Rollup()))  # cumulative: the new value includes the old
                grown.append((k, roll))
            writer.transaction([(k, agg.encode(roll)) for k, roll in grown])
            latest.update(grown)
        want = expected_totals(latest)
        deadline = time.monotonic() + 20
        while True:
            got = scrape(server.url)
            try:
                assert_equal(got, want)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "read model did not follow new records"
                time.sleep(0.3)
        time.sleep(1.0)  # let a snapshot be written

    assert snapshot.exists()
    with running_api(settings) as server:
        ready = server.wait_ready()
        assert ready["readmodel"]["restored_from_snapshot"]
        assert_equal(scrape(server.url), want)


def test_ready_only_once_everything_written_before_start_is_read(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path
) -> None:
    _topics, common, writer = env
    txns = generate(random.Random(7), versions=8)
    for txn in txns:
        writer.transaction([(k, agg.encode(r)) for k, r in txn])
    n_records = sum(len(t) for t in txns)
    with running_api(api_settings(common, tmp_path)) as server:
        model = server.app.state.services.model
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(f"{server.url}/readyz", timeout=5)
            records_when_answered = model.status.records
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.json()["status"] == "not_ready"
            assert time.monotonic() < deadline, r.text
            time.sleep(0.05)
        assert records_when_answered == n_records
        assert r.json()["readmodel"]["lag"] == 0
