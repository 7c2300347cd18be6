"""Closed days through the real broker (docs/AGGREGATES.md, "Bounded history").

Rollups are written in transactions as the processor writes them; then days are closed
as the processor closes them: ClosedDay records on ``<prefix>.days`` and tombstones of
the day's ``r|``/``s|`` keys on ``<prefix>.aggregates.v2``. The read model reads the two
topics independently, so each order is forced here (one side written and read before the
other is written), and a close is left half-done across a restart with a snapshot. After
each record, /metrics' business counters equal an independent count and never move; a
scorecard over a period spanning closed and live days is exact; a restart with and
without a snapshot gives the same numbers.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract import aggregates as agg
from contract.aggregates import ClosedCell, ClosedDay, Dims, Restatement, Rollup, RollupKey
from contract.metrics import FAMILIES
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import connect
from tests.api.test_readmodel import random_rollup
from tests.fixtures.api import ApiServer, api_settings, running_api
from tests.fixtures.kafka import TopicFactory

pytestmark = pytest.mark.integration

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
PARTS = (0, 1, 2)
CELLS = [
    ("minsoc", "large_family_status", "75701000", "portal"),
    ("minsoc", "large_family_status", "75738000", "mfc"),
    ("minsoc", "housing_subsidy", "75701000", "mobile"),
    ("minobr", "", "75742000", "office"),
]
AGENCIES = sorted({c[0] for c in CELLS})
_BUSINESS = {f.full for f in FAMILIES} | {
    f"{f.full}_{s}" for f in FAMILIES for s in ("total", "bucket", "sum", "count")
}


class Writer:
    """A transactional producer writing (topic, key, value) as the processor does."""

    def __init__(self, settings: CommonSettings) -> None:
        self.producer = connect(settings).transactional_producer(
            client_id="test-closer",
            transactional_id=f"test-{uuid.uuid4().hex[:8]}",
            transaction_timeout_ms=60_000,
        )
        self.producer.init_transactions(30)

    def transaction(self, records: list[tuple[str, bytes, bytes | None]]) -> None:
        self.producer.begin_transaction()
        for topic, k, v in records:
            self.producer.send(topic, v, k)
        self.producer.commit_transaction(30)

    def close(self) -> None:
        self.producer.close(5)


@pytest.fixture
def env(topic_factory: TopicFactory) -> Iterator[tuple[Topics, CommonSettings, Writer]]:
    topics, common = topic_factory(3)
    writer = Writer(common)
    yield topics, common, writer
    writer.close()


def business(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every business sample of /metrics (the API's own metrics left out)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in _BUSINESS and s.value:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def started_by_agency(latest: dict[bytes, Rollup]) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for key, r in latest.items():
        a = key.decode().split("|")[3]
        out[(a,)] = out.get((a,), 0) + r.started
    return out


def wait_records(server: ApiServer, n: int) -> None:
    """Until the read model has read ``n`` records in all (each side of a close in turn)."""
    model = server.app.state.services.model
    deadline = time.monotonic() + 30
    while model.status.records < n:
        assert time.monotonic() < deadline, (model.status.records, n)
        time.sleep(0.05)


def close_records(
    topics: Topics, latest: dict[bytes, Rollup], day: str
) -> tuple[list[tuple[str, bytes, bytes | None]], list[tuple[str, bytes, bytes | None]]]:
    """(tombstones on the aggregates topic, ClosedDay records) closing ``day``."""
    tombs: list[tuple[str, bytes, bytes | None]] = []
    closed: list[tuple[str, bytes, bytes | None]] = []
    for p in PARTS:
        for a in AGENCIES:
            cells = []
            for key, r in sorted(latest.items()):
                _, kp, kd, ka, s, m, c, ls = key.decode().split("|")
                if (kd, int(kp), ka) == (day, p, a):
                    cells.append(ClosedCell(s, m, c, ls, r))
                    tombs.append((topics.aggregates, key, None))
            tombs.append((topics.aggregates, agg.restatement_key(p, day, a), None))
            log = Restatement(count=p + 1, last_at="2026-11-09T10:00:00+05:00")
            cd = ClosedDay(day, p, a, cells, log, closed_at=1.0)
            closed.append((topics.days, agg.closed_day_key(day, p, a), agg.encode(cd)))
    return tombs, closed


def test_closing_days_in_either_order_moves_nothing_and_stays_exact(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path
) -> None:
    topics, common, writer = env
    rng = random.Random(20261202)
    latest: dict[bytes, Rollup] = {}
    for version in (1, 2):
        batch: list[tuple[str, bytes, bytes | None]] = []
        for p in PARTS:
            for day in DAYS:
                for a, s, m, c in CELLS:
                    key = RollupKey(p, day, Dims(a, s, m, c, "")).encode()
                    r = random_rollup(rng, version)
                    latest[key] = r
                    batch.append((topics.aggregates, key, agg.encode(r)))
        # a restatement log on every day of partition 0 (the d| record replaces it)
        for day in DAYS:
            for a in AGENCIES:
                rs = agg.encode(Restatement(count=9, last_at="2026-11-08T10:00:00+05:00"))
                batch.append((topics.aggregates, agg.restatement_key(0, day, a), rs))
        for i in range(0, len(batch), 20):
            writer.transaction(batch[i : i + 20])
    written = sum(1 for _ in latest) * 2 + 2 * len(DAYS) * len(AGENCIES)
    snapshot = tmp_path / "rm.snapshot"
    settings = api_settings(common, tmp_path, readmodel_snapshot=snapshot, snapshot_interval=0.3)
    with running_api(settings) as server:
        server.wait_ready()
        before = business(server.url)
        assert before, "no business series"
        started = {
            (dict(k[1])["agency"],): 0.0
            for k in before
            if k[0] == "servicepulse_journeys_started_total"
        }
        for k, v in before.items():
            if k[0] == "servicepulse_journeys_started_total":
                started[(dict(k[1])["agency"],)] += v
        assert started == started_by_agency(latest)

        # day 0: the tombstones are read first, then the ClosedDay records
        tombs, closed = close_records(topics, latest, DAYS[0])
        writer.transaction(tombs)
        written += len(tombs)
        wait_records(server, written)
        assert business(server.url) == before
        writer.transaction(closed)
        written += len(closed)
        wait_records(server, written)
        assert business(server.url) == before
        # day 1: the ClosedDay records first, then the tombstones
        tombs, closed = close_records(topics, latest, DAYS[1])
        writer.transaction(closed)
        written += len(closed)
        wait_records(server, written)
        assert business(server.url) == before
        writer.transaction(tombs)
        written += len(tombs)
        wait_records(server, written)
        assert business(server.url) == before
        # day 2: only the tombstones before the API stops (the snapshot holds them aside)
        tombs, closed_2 = close_records(topics, latest, DAYS[2])
        writer.transaction(tombs)
        written += len(tombs)
        wait_records(server, written)
        assert business(server.url) == before
        mem = server.app.state.services.model.memory()
        assert mem["pending_keys"] == len(PARTS) * len(CELLS)
        assert mem["closed"] == 2 * len(PARTS) * len(AGENCIES)
        assert scorecard(server, DAYS[0], DAYS[3]) == expected_card(latest, DAYS[0], DAYS[3], 2)
    want_card = expected_card(latest, DAYS[0], DAYS[3])
    assert snapshot.exists()
    writer.transaction(closed_2)  # while the API is down

    # with the snapshot: only what is newer is read, and the half-done close completes
    with running_api(settings) as server:
        ready = server.wait_ready()
        assert ready["readmodel"]["restored_from_snapshot"]
        assert server.app.state.services.model.status.records == len(closed_2)
        assert business(server.url) == before
        mem = server.app.state.services.model.memory()
        assert (mem["pending_keys"], mem["closed"]) == (0, 3 * len(PARTS) * len(AGENCIES))
        assert mem["live_keys"] == len(PARTS) * len(CELLS)  # the live day's keys only
        assert scorecard(server, DAYS[0], DAYS[3]) == want_card
        assert scorecard(server, DAYS[1], DAYS[2]) == expected_card(latest, DAYS[1], DAYS[2])
    # without a snapshot: both topics from the beginning, in whatever order they come
    with running_api(api_settings(common, tmp_path / "fresh")) as server:
        ready = server.wait_ready()
        assert not ready["readmodel"]["restored_from_snapshot"]
        assert business(server.url) == before
        assert scorecard(server, DAYS[0], DAYS[3]) == want_card


def scorecard(server: ApiServer, d0: str, d1: str) -> dict[str, object]:
    """What the scorecard of minsoc over d0..d1 says that comes straight from the sums."""
    with server.client(server.inspector_token()) as c:
        r = c.get(
            "/v1/scorecard", params={"scope": "agency", "code": "minsoc", "from": d0, "to": d1}
        )
    assert r.status_code == 200, r.text
    card = r.json()
    comps = {x["code"]: (x["numerator"], x["denominator"]) for x in card["components"]}
    return {
        "started": card["journeys_started"],
        "completion": comps["completion"],
        "on_time": comps["on_time"],
        "restated": sorted((d["day"], d["count"]) for d in card["restated_days"]),
    }


def expected_card(
    latest: dict[bytes, Rollup], d0: str, d1: str, closed: int = 3
) -> dict[str, object]:
    chosen = [
        r
        for k, r in latest.items()
        if d0 <= k.decode().split("|")[2] <= d1 and k.decode().split("|")[3] == "minsoc"
    ]
    sub = sum(x.submitted for x in chosen)
    ab = sum(x.abandoned for x in chosen)
    on_time = sum(x.decisions["approved:on_time"] for x in chosen)
    late = sum(x.decisions["rejected:late"] for x in chosen)
    # the first ``closed`` days: the ClosedDay logs (count p + 1 of partition p); later
    # days (a tombstoned s| included, until its d| record): the s| record of partition 0
    restated = [(d, 1 + 2 + 3) for d in DAYS[:closed] if d0 <= d <= d1]
    restated += [(d, 9) for d in DAYS[closed:] if d0 <= d <= d1]
    return {
        "started": sum(x.started for x in chosen),
        "completion": (sub, sub + ab),
        "on_time": (on_time, on_time + late),
        "restated": sorted(restated),
    }
