"""The aggregates topic of older versions is moved to the co-partitioned one, whole.

An older processor wrote ``<prefix>.aggregates`` with 3 partitions, each key in its
murmur2 partition. The move must leave, for every key, its latest value (or its
absence, after a tombstone) in partition *p* of ``<prefix>.aggregates.v2``, *p* being
the input partition the key names; aborted records stay behind; the old topic goes; and
a processor refuses to start while the old topic exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace

import pytest

from contract import aggregates as agg
from contract.aggregates import Dims, GaugeDims, Gauges
from contract.topics import Topics, TopicSpec
from kafkaport import connect
from kafkaport.topics import delete_topics, ensure_topics
from servicepulse import migrate
from servicepulse.stack import free_port
from tests.fixtures.kafka import Broker, TopicFactory, read_topic

pytestmark = [pytest.mark.integration]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servicepulse", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


OLD_CONFIGS = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


def _rollup(p: int, day: str, service: str) -> bytes:
    return agg.RollupKey(p, day, Dims("A1", service, "m1", "web", "")).encode()


def _legacy_records() -> list[tuple[bytes, bytes | None]]:
    """What an older processor left: several values of a key, tombstones, every kind of
    key, over all 12 input partitions; and one key of no known kind."""
    recs: list[tuple[bytes, bytes | None]] = []
    for p in range(12):
        for d in range(3):
            key = _rollup(p, f"2026-11-{10 + d:02d}", f"s{p}")
            recs.append((key, f"v1-{p}-{d}".encode()))
            recs.append((key, f"v2-{p}-{d}".encode()))
        recs.append((_rollup(p, "2026-11-10", f"s{p}"), None))  # day made final
        recs.append(
            (agg.GaugeKey(p, GaugeDims("A1", "s", "m1", "web")).encode(), agg.encode(Gauges()))
        )
        recs.append((agg.WatermarkKey(p).encode(), f"w{p}".encode()))
    recs.append((b"x|not-a-key-of-any-kind", b"?"))
    return recs


def _latest(recs: list[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for k, v in recs:
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


@pytest.mark.slow
def test_the_old_topic_moves_whole_and_goes(topic_factory: TopicFactory) -> None:
    topics, settings = topic_factory()
    kafka = connect(settings)
    old = topics.legacy_aggregates
    assert migrate.layout_problem(kafka, topics) is None
    ensure_topics(kafka, [TopicSpec(old, 3, OLD_CONFIGS)])
    try:
        recs = _legacy_records()
        tx = kafka.transactional_producer(
            client_id="test-old-processor",
            transactional_id=f"{topics.prefix}-old",
            transaction_timeout_ms=60_000,
        )
        tx.init_transactions(30)
        tx.begin_transaction()
        for k, v in recs:
            tx.send(old, v, k)  # by murmur2, as the older processor did
        tx.commit_transaction(30)
        tx.begin_transaction()
        tx.send(old, b"aborted", _rollup(3, "2026-11-20", "s3"))
        tx.abort_transaction(30)
        tx.close(5)

        problem = migrate.layout_problem(kafka, topics)
        assert problem is not None and old in problem and "servicepulse kafka topics" in problem
        env = {
            "SERVICEPULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SERVICEPULSE_TOPIC_PREFIX": topics.prefix,
        }
        refused = cli("process", "--metrics-port", str(free_port()), env=env)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "not starting" in refused.stderr and old in refused.stderr

        ran = cli(
            "kafka",
            "topics",
            "--bootstrap",
            settings.kafka_bootstrap,
            "--prefix",
            topics.prefix,
            env=env,
        )
        # 3: drift reported, the test's events topic keeps the sender's time on purpose
        assert ran.returncode == 3, ran.stderr[-2000:]
        said = " ".join(ran.stderr.split())
        assert f"moved {len(recs) - 1:,} records" in said
        assert "not copied: 1 records with a key of no known kind" in said

        moved = read_topic(settings, topics.aggregates)
        assert all(r.value != b"aborted" for r in moved)
        for r in moved:
            assert r.key is not None
            assert r.partition == agg.input_partition(r.key)
        assert _latest([(r.key, r.value) for r in moved if r.key is not None]) == _latest(recs[:-1])
        assert old not in kafka.admin().list_topics(30)
        assert migrate.layout_problem(kafka, topics) is None
        assert migrate.migrate_aggregates(kafka, topics) is None  # nothing left to move
    finally:
        delete_topics(kafka, [old])


def test_the_new_topic_must_have_the_events_partitions(kafka_broker: Broker) -> None:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    kafka = connect(kafka_broker.settings(topics.prefix))
    specs = {s.name: s for s in topics.specs()}
    ensure_topics(kafka, [specs[topics.events], replace(specs[topics.aggregates], partitions=3)])
    try:
        problem = migrate.layout_problem(kafka, topics)
        assert problem is not None
        assert "3 partitions" in problem and f"{topics.events} 12" in problem
    finally:
        delete_topics(kafka, [topics.events, topics.aggregates])


def test_keys_name_their_input_partition() -> None:
    assert agg.input_partition(_rollup(7, "2026-11-10", "s")) == 7
    assert agg.input_partition(agg.WatermarkKey(11).encode()) == 11
    assert agg.input_partition(b"x|what") is None
    assert agg.input_partition(None) is None
