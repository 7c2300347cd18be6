"""Identity that neither loses nor doubles (issue 12, items 2-5), the reproductions end to
end: the real API (restarted between sends where the API's own recent-ids cache would
otherwise answer first), the real broker and the processor.

- 3: a ``visit.served`` dated now minus 10 days, sent, the API restarted, the same batch
  sent again: counted once, because the dedup horizon counts in receive time
  (docs/RELIABILITY.md, "Retries and backfills"). A current event is sent between the
  two, so the partition's event-time watermark is far past the old event, as on a live
  stack: that is what made it count twice.
- 2: two valid v4 UUIDs equal under the old 64-bit fold are two events.
- 4: the same UUID in upper case is the same event, keyed and partitioned alike.
- 5: the same event id from two agencies is two events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contract.catalog import load_catalog
from contract.methodology import load_methodology
from contract.settings import CommonSettings
from contract.topics import Topics
from processors.metrics import build_metrics
from processors.runner import Processor
from tests.fixtures.api import api_settings, event, running_api
from tests.fixtures.kafka import TopicFactory
from tests.processors.brokerio import (
    drop_topics,
    materialise,
    processor_settings,
    read_all,
    summed,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _visit(at: datetime, agency: str = "mfc", event_id: str | None = None) -> dict[str, Any]:
    ev = event(
        "visit.served",
        agency=agency,
        service=None,
        channel="mfc",
        municipality="75701310",
        occurred_at=at,
        attrs={"office": "mfc-chel-kalin", "wait_seconds": 300},
    )
    ev.pop("journey")
    if event_id is not None:
        ev["event_id"] = event_id
    return ev


class Stack:
    """A test's topics; :meth:`send` starts a fresh API process for every batch."""

    def __init__(self, topics: Topics, common: CommonSettings, tmp: Path) -> None:
        self.topics, self.common, self.tmp = topics, common, tmp

    def send(self, batch: list[dict[str, Any]]) -> None:
        with running_api(api_settings(self.common, self.tmp)) as server:
            server.wait_ready()
            for agency in sorted({str(e["agency"]) for e in batch}):
                mine = [e for e in batch if e["agency"] == agency]
                with server.client(server.agency_token(agency)) as c:
                    r = c.post("/v1/events", content=json.dumps(mine).encode())
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == len(mine), r.text

    def counted(self) -> dict[str, tuple[int, int]]:
        """(visits, duplicates) per agency, after a processor caught up."""
        settings = processor_settings(self.topics, self.common)
        proc = Processor(
            settings,
            load_catalog(),
            load_methodology().standards,
            build_metrics(CollectorRegistry()),
        )
        proc.run_until_caught_up(timeout_s=180)
        cells, _ = summed(materialise(settings, self.topics))
        out: dict[str, tuple[int, int]] = {}
        for cell, r in cells.items():
            agency = cell[1]
            v, d = out.get(agency, (0, 0))
            out[agency] = (v + sum(r.visits.values()), d + r.duplicates)
        return out


@pytest.fixture
def stack(topic_factory: TopicFactory, tmp_path: Path) -> Iterator[Stack]:
    topics, common = topic_factory(1)
    yield Stack(topics, common, tmp_path)
    drop_topics(common, topics)


@pytest.fixture
def stack12(topic_factory: TopicFactory, tmp_path: Path) -> Iterator[Stack]:
    topics, common = topic_factory(12)
    yield Stack(topics, common, tmp_path)
    drop_topics(common, topics)


def test_an_old_batch_resent_after_an_api_restart_is_counted_once(stack: Stack) -> None:
    now = datetime.now(UTC)
    old = _visit(now - timedelta(days=10))
    stack.send([old])
    stack.send([_visit(now)])  # the watermark moves to now
    stack.send([old])  # a new API process: the retry reaches Kafka
    assert stack.counted() == {"mfc": (2, 1)}


def test_ids_equal_under_the_old_64_bit_fold_are_two_events(stack: Stack) -> None:
    now = datetime.now(UTC)
    stack.send(
        [
            _visit(now, event_id="bfa8f557-cdd9-4e10-967b-9e676750f0f2"),
            _visit(now, event_id="ba397ea8-f584-4097-93ea-15985f0dfe75"),
        ]
    )
    assert stack.counted() == {"mfc": (2, 0)}


def test_an_upper_case_id_is_the_same_event_on_the_same_partition(stack12: Stack) -> None:
    now = datetime.now(UTC)
    lower = "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b"
    stack12.send([_visit(now, event_id=lower)])
    stack12.send([_visit(now, event_id=lower.upper())])  # after an API restart
    keys = [k for k, _ in read_all(stack12.common, stack12.topics.events)]
    assert keys == [f"e:{lower}".encode()] * 2  # read in partition order: one partition
    assert stack12.counted() == {"mfc": (1, 1)}


def test_one_event_id_from_two_agencies_is_two_events(stack: Stack) -> None:
    now = datetime.now(UTC)
    same = "5d0c9a1e-7b3f-4e2a-9c4d-1a2b3c4d5e6f"
    stack.send([_visit(now, "mfc", same)])
    stack.send([_visit(now, "minsoc", same)])  # after an API restart
    assert stack.counted() == {"mfc": (1, 0), "minsoc": (1, 0)}
