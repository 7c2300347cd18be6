"""The contract at the edges (issue 12, items 1 and 6) where events enter: the real API
and the producer library refuse ``occurred_at`` before the earliest date and personal
data shaped like an identifier, naming the field and the rule and never the value."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract.catalog import load_catalog
from contract.events import Reason, Rejected
from contract.settings import CommonSettings
from producers.producer import EventProducer
from tests.fixtures.api import api_settings, event, read_topic, running_api
from tests.fixtures.kafka import TopicFactory

#: the values of the issue, in the forms clients sent them
PERSONAL = ["98765432100", "987-654-321-00", "79123456789", "8-912-345-67-89", "98765432183"]
YEAR_ZERO = "0001-01-01T00:00:00+05:00"


def _with(path: str, value: str) -> dict[str, Any]:
    """A demo-catalog event with ``value`` in the identifier field ``path``."""
    if path == "journey":
        return event(journey=value)
    if path == "case":
        return event(case=value)
    name = path.removeprefix("attrs.")
    if name == "request":
        return event("interagency.requested", attrs={"request": value, "counterpart": "fns"})
    if name == "appeal":
        ev = event("appeal.received", service=None, attrs={"appeal": value})
        ev.pop("journey")
        return ev
    if name == "code":
        return event("journey.error", attrs={"code": value})
    return event("decision.made", attrs={"outcome": "rejected", "reason": value})


FIELDS = ["journey", "case", "attrs.request", "attrs.appeal", "attrs.code", "attrs.reason"]


@pytest.mark.integration
def test_the_api_refuses_personal_data_and_year_zero_and_never_quotes_them(
    topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topics, common = topic_factory(3)
    bad = [_with(f, v) for f in FIELDS for v in PERSONAL]
    phone_oktmo = event(municipality="79123456789")
    year_zero = event(occurred_at=datetime.now(UTC))
    year_zero["occurred_at"] = YEAR_ZERO
    good = [event() for _ in range(3)]
    batch = [good[0], *bad, good[1], phone_oktmo, year_zero, good[2]]
    with running_api(api_settings(common, tmp_path)) as server:
        server.wait_ready()
        with server.client(server.agency_token("minsoc")) as c:
            r = c.post("/v1/events", content=json.dumps(batch).encode())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == len(good)
    results = body["results"]
    for i, ev in enumerate(bad, start=1):
        (problem,) = results[i]["problems"]
        assert results[i]["status"] == "rejected" and problem["reason"] == "personal_data"
        assert problem["field"] in FIELDS and ev  # the field and the rule, not the value
    assert results[-3]["problems"][0]["reason"] == "unknown_municipality"
    assert [p["reason"] for p in results[-2]["problems"]] == ["too_early"]
    written = read_topic(common, topics.events)
    assert sorted(json.loads(v)["event_id"] for _, v in written) == sorted(
        e["event_id"] for e in good
    )
    dead = read_topic(common, topics.deadletter)
    assert len(dead) == len(bad) + 2
    everything = r.text + "".join(v.decode() + (k or b"").decode() for k, v in dead)
    for value in PERSONAL:
        assert value not in everything and value.replace("-", "") not in everything


def test_the_producer_library_refuses_them_too() -> None:
    settings = CommonSettings()
    producer = EventProducer(settings, load_catalog(), pseudonym_secret="producer-test-secret")
    ev = event()
    ev["occurred_at"] = YEAR_ZERO
    result = producer.prepare(ev)
    assert isinstance(result, Rejected) and result.reason == Reason.TOO_EARLY
    for field in FIELDS:
        result = producer.prepare(_with(field, "8-912-345-67-89"))
        assert isinstance(result, Rejected) and result.reason == Reason.PERSONAL_DATA
        assert all("912" not in p.message for p in result.problems)
    later = CommonSettings(earliest_occurred_at=datetime(2020, 1, 1, tzinfo=UTC))
    strict = EventProducer(later, load_catalog(), pseudonym_secret="producer-test-secret")
    old = event(event_id=str(uuid.uuid4()))
    old["occurred_at"] = "2019-06-01T00:00:00+05:00"
    assert isinstance(producer.prepare(old), Rejected) is False
    result = strict.prepare(old)
    assert isinstance(result, Rejected) and result.reason == Reason.TOO_EARLY
