"""The project's topics as the product creates them, on the real broker."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from contract.topics import Topics
from kafkaport import BEGINNING, Record, TopicPartition, connect
from kafkaport.topics import ensure_topics, topic_config_drift
from servicepulse.cli import app
from tests.fixtures.kafka import Broker
from tests.processors.brokerio import drop_topics


@pytest.mark.integration
def test_events_topic_stamps_arrival_time_whatever_the_sender_claims(
    kafka_broker: Broker,
) -> None:
    """A sender's old timestamp would make time retention delete the record at the next
    check, processed or not, and would stand in for the receive time."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    settings = kafka_broker.settings(topics.prefix)
    kafka = connect(settings)
    ensure_topics(kafka, topics.specs(1))
    try:
        sent_at = int(time.time() * 1000)
        producer = kafka.producer(client_id="test-topics")
        a_year_ago = sent_at - 365 * 86_400_000
        producer.send(topics.events, b"{}", b"k", timestamp_ms=a_year_ago)
        assert producer.flush(30) == 0
        producer.close(5)

        consumer = kafka.consumer(client_id="test-topics")
        try:
            tp = TopicPartition(topics.events, 0)
            consumer.assign({tp: BEGINNING})
            deadline = time.monotonic() + 30
            records: list[Record] = []
            while not records and time.monotonic() < deadline:
                records = consumer.poll(0.5, 10)
        finally:
            consumer.close()
        assert len(records) == 1
        rec = records[0]
        # the broker's append time, not the year-old time the sender gave
        assert sent_at - 1000 <= rec.timestamp <= int(time.time() * 1000) + 1000
    finally:
        drop_topics(settings, topics)


@pytest.mark.integration
def test_topics_command_reports_and_fixes_the_config_of_an_older_events_topic(
    kafka_broker: Broker,
) -> None:
    """A topic created before the events topic stamped arrival time keeps the sender's
    time (ensure_topics never alters a topic): the command names the drift and exits 3;
    with --fix it sets the project's value and the drift is gone."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    settings = kafka_broker.settings(topics.prefix)
    older = [
        replace(s, configs={"retention.ms": s.configs["retention.ms"]})
        if s.name == topics.events
        else s
        for s in topics.specs(1)
    ]
    ensure_topics(connect(settings), older)
    # a new admin client's metadata may not list a topic created a moment ago (seen on
    # a loaded machine), and a topic not listed has no drift: wait until it is listed
    deadline = time.monotonic() + 30
    while topics.events not in (admin := connect(settings).admin()).list_topics(10):
        admin.close()
        assert time.monotonic() < deadline, f"{topics.events} never listed"
        time.sleep(0.1)
    admin.close()
    args = ["kafka", "topics", "--bootstrap", kafka_broker.bootstrap, "--prefix", topics.prefix]
    try:
        drift = topic_config_drift(connect(settings), topics.specs(1))
        assert [(d.topic, d.key, d.actual, d.wanted) for d in drift] == [
            (topics.events, "message.timestamp.type", "CreateTime", "LogAppendTime")
        ]
        seen = CliRunner().invoke(app, args)
        assert seen.exit_code == 3, seen.output
        assert "message.timestamp.type is CreateTime" in seen.output
        fixed = CliRunner().invoke(app, [*args, "--fix"])
        assert fixed.exit_code == 0, fixed.output
        assert topic_config_drift(connect(settings), topics.specs(1)) == []
    finally:
        drop_topics(settings, topics)
