"""NDJSON import through the producer library: invalid lines reported, valid ones sent."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.catalog import load_catalog
from contract.events import Reason
from producers.backfill import import_ndjson
from producers.producer import EventProducer
from tests.fixtures.kafka import TopicFactory, read_topic


def line(**fields: object) -> str:
    event: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "type": "journey.started",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "agency": "zags",
        "service": "zags_birth",
        "municipality": "75738000",
        "channel": "mfc",
        "journey": f"j-{uuid.uuid4().hex[:10]}",
    }
    event.update(fields)
    return json.dumps(event)


@pytest.mark.integration
def test_import_reports_invalid_lines_and_sends_the_rest(
    topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topics, settings = topic_factory(2)
    path = tmp_path / "events.ndjson"
    lines = [
        line(),
        "{not json",
        line(citizen_id="+7 (912) 345-67-89"),
        "",
        line(municipality="99999999"),
        "[1, 2]",
        line(),
    ]
    path.write_text("\n".join(lines) + "\n")
    with EventProducer(settings, load_catalog(), pseudonym_secret="import-test") as producer:
        report = import_ndjson(path, producer)
    assert (report.lines, report.sent, report.delivered, report.not_delivered) == (6, 3, 3, 0)
    assert [(bad.line, bad.problems[0].reason) for bad in report.invalid] == [
        (2, Reason.INVALID_JSON),
        (5, Reason.UNKNOWN_MUNICIPALITY),
        (6, Reason.NOT_AN_OBJECT),
    ]
    assert not report.ok

    values = [r.value or b"" for r in read_topic(settings, topics.events)]
    assert len(values) == 3
    assert not any(b"345-67-89" in v or b"9123456789" in v for v in values)
    assert sum(b'"citizen":"' in v for v in values) == 1
