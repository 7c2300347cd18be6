"""Retry safety at any age (issue 12, item 3), the exact reproduction: a ``visit.served``
dated now minus 10 days is sent through the API, the API is restarted (its recent-ids
cache is gone), the same batch is sent again: the processor counts it once, because the
dedup horizon counts in receive time (docs/RELIABILITY.md, "Retries and backfills").

A current event is sent between the two, so the partition's event-time watermark is
far past the old event (as on a live stack), which is what made it count twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from contract.catalog import load_catalog
from contract.methodology import load_methodology
from processors.metrics import build_metrics
from processors.runner import Processor
from tests.fixtures.api import api_settings, event, running_api
from tests.fixtures.kafka import TopicFactory
from tests.processors.brokerio import drop_topics, materialise, processor_settings, summed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _visit(at: datetime) -> dict[str, object]:
    return event(
        "visit.served",
        agency="mfc",
        service=None,
        channel="mfc",
        municipality="75701310",
        occurred_at=at,
        attrs={"office": "mfc-chel-kalin", "wait_seconds": 300},
    )


def _send(settings_dir: Path, common: object, batch: list[dict[str, object]]) -> None:
    with running_api(api_settings(common, settings_dir)) as server:  # type: ignore[arg-type]
        server.wait_ready()
        token = server.agency_token("mfc")
        with server.client(token) as c:
            r = c.post("/v1/events", content=json.dumps(batch).encode())
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(batch), r.text


def test_an_old_batch_resent_after_an_api_restart_is_counted_once(
    topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topics, common = topic_factory(1)
    now = datetime.now(UTC)
    old = _visit(now - timedelta(days=10))
    _send(tmp_path, common, [old])
    _send(tmp_path, common, [_visit(now)])  # the watermark moves to now
    _send(tmp_path, common, [old])  # a new API process: the retry reaches Kafka

    settings = processor_settings(topics, common)
    try:
        proc = Processor(
            settings,
            load_catalog(),
            load_methodology().standards,
            build_metrics(CollectorRegistry()),
        )
        proc.run_until_caught_up(timeout_s=180)
        cells, _ = summed(materialise(settings, topics))
        visits = sum(sum(r.visits.values()) for r in cells.values() if r.visits)
        duplicates = sum(r.duplicates for r in cells.values())
        assert (visits, duplicates) == (2, 1)
    finally:
        drop_topics(settings, topics)
