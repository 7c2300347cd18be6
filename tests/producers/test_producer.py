"""The producer library against a real Kafka broker."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contract.catalog import load_catalog
from contract.events import Event, Reason, decode_event, event_key
from contract.settings import CommonSettings
from kafkaport import Client, Record
from producers.errors import DeliveryError, InvalidEventError
from producers.producer import EventProducer
from producers.pseudonym import Pseudonymizer
from tests.fixtures.api import opaque_id
from tests.fixtures.kafka import Broker, TopicFactory, end_total, make_topics, read_topic

SECRET = "producer-test-secret"


def event(etype: str = "journey.started", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": etype,
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "agency": "minsoc",
        "service": "large_family_status",
        "municipality": "75701310",
        "channel": "portal",
        "journey": f"j-{opaque_id()}",
    }
    base.update(fields)
    return base


@pytest.fixture(params=["kafka-python", "confluent"])
def client(request: pytest.FixtureRequest) -> Client:
    """Every test runs on both clients the producer library supports."""
    kind: Client = request.param
    return kind


def consume_all(settings: CommonSettings, topic: str) -> list[Record]:
    return read_topic(settings, topic, timeout=20)


def end_offsets(settings: CommonSettings, topic: str) -> int:
    return end_total(settings, topic)


@pytest.mark.integration
def test_round_trip_and_keying(topic_factory: TopicFactory, client: Client) -> None:
    topics, settings = topic_factory()
    catalog = load_catalog()
    case = f"case-{uuid.uuid4().hex[:8]}"
    sent = [event(case=case, life_situation="large_family") for _ in range(6)]
    sent += [event() for _ in range(4)]
    with EventProducer(settings, catalog, pseudonym_secret=SECRET, client=client) as producer:
        for e in sent:
            producer.send(e)
        report = producer.flush()
    assert report.delivered == len(sent)
    assert [r.event_id for r in report.results] == [e["event_id"] for e in sent]

    records = consume_all(settings, topics.events)
    assert len(records) == len(sent)
    by_id = {}
    for rec in records:
        assert rec.value is not None
        decoded = decode_event(rec.value)
        assert isinstance(decoded, Event)
        assert rec.key == event_key(decoded)
        # the producer's send time, for the processor's clock-skew measurement
        sent_at = dict(rec.headers)["sent_at"]
        assert sent_at.isdigit() and abs(int(sent_at) - rec.timestamp) < 600_000
        by_id[decoded.event_id] = (decoded, rec.partition)
    for e in sent:
        decoded, _ = by_id[e["event_id"]]
        expected = decode_event(msgspec_dumps(e))
        assert decoded == expected
    case_partitions = {by_id[e["event_id"]][1] for e in sent if e.get("case") == case}
    assert len(case_partitions) == 1
    assert by_id[sent[0]["event_id"]][0].case == case


def msgspec_dumps(obj: dict[str, Any]) -> bytes:
    import msgspec

    return msgspec.json.encode(obj)


@pytest.mark.integration
def test_idempotent_acks_all(topic_factory: TopicFactory, client: Client) -> None:
    _, settings = topic_factory(1)
    with EventProducer(
        settings, load_catalog(), pseudonym_secret=SECRET, client=client
    ) as producer:
        cfg = producer.client_config
    assert cfg["client"] == client
    assert cfg["enable_idempotence"] is True
    assert cfg["acks"] in (-1, "all")


@pytest.mark.integration
def test_invalid_events_never_reach_the_topic(topic_factory: TopicFactory, client: Client) -> None:
    topics, settings = topic_factory(3)
    catalog = load_catalog()
    bad = [
        event(service="no_such_service"),
        event("journey.step"),  # attrs.step missing
        event(citizen="112-233-445 95"),  # raw SNILS in citizen
        event(agency="zags"),  # service owned by another agency
        event(occurred_at="2025-03-03T10:00:00"),  # no offset
        event(citizen_id="112-233-445 96"),  # wrong SNILS check number
    ]
    with EventProducer(settings, catalog, pseudonym_secret=SECRET, client=client) as producer:
        with pytest.raises(InvalidEventError) as info:
            producer.send(bad[0])
        assert info.value.rejected.problems[0].field == "service"
        assert info.value.rejected.problems[0].reason is Reason.UNKNOWN_SERVICE
        result = producer.send_batch(bad)
        assert result.accepted == []
        assert [r.index for r in result.rejected] == list(range(len(bad)))
        fields = [r.problems[0].field for r in result.rejected]
        assert fields == [
            "service",
            "attrs.step",
            "citizen",
            "service",
            "occurred_at",
            "citizen_id",
        ]
        assert result.rejected[2].reason is Reason.NOT_PSEUDONYM
        assert producer.pending == 0
    assert end_offsets(settings, topics.events) == 0


@pytest.mark.integration
def test_citizen_id_is_pseudonymised(topic_factory: TopicFactory, client: Client) -> None:
    topics, settings = topic_factory(1)
    with EventProducer(
        settings, load_catalog(), pseudonym_secret=SECRET, client=client
    ) as producer:
        a = producer.send(event(), citizen_id="112-233-445 95")
        b = producer.send(event(citizen_id="11223344595"))
        producer.flush()
    records = consume_all(settings, topics.events)
    citizens = {}
    for rec in records:
        assert rec.value is not None
        decoded = decode_event(rec.value)
        assert isinstance(decoded, Event)
        assert b"112233445" not in rec.value
        citizens[decoded.event_id] = decoded.citizen
    expected = Pseudonymizer(SECRET).pseudonym("11223344595")
    assert citizens == {a: expected, b: expected}


@pytest.mark.integration
def test_delivery_failure_is_reported_with_the_count(
    private_broker: Broker, client: Client
) -> None:
    _, settings = make_topics(private_broker, 2)
    catalog = load_catalog()
    producer = EventProducer(
        settings, catalog, pseudonym_secret=SECRET, delivery_timeout_s=3, client=client
    )
    with pytest.raises(DeliveryError) as info, producer:
        producer.send(event())
        assert producer.flush().delivered == 1
        assert private_broker.process is not None
        private_broker.process.stop()
        for _ in range(5):
            producer.send(event())
        started = time.monotonic()
        try:
            producer.flush()
        finally:
            assert time.monotonic() - started < 30
    assert info.value.failed == 5
    assert "5 of 5 events were not delivered" in str(info.value)
    assert info.value.report is not None
    assert all(not r.delivered for r in info.value.report.results)
