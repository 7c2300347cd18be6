"""Reading and writing the processor's topics on a real broker, for broker-level tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry

from contract import aggregates as agg
from contract.catalog import Catalog
from contract.methodology import load_methodology
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import connect
from kafkaport.topics import delete_topics
from processors.metrics import build_metrics
from processors.runner import Processor
from processors.settings import ProcessorSettings
from tests.fixtures.aggregates import materialise_all
from tests.fixtures.kafka import read_topic
from tests.fixtures.streams import CATALOG_PATH, Stream, canonical_key, encode
from tests.processors.oracle import Cell


def processor_settings(topics: Topics, common: CommonSettings) -> ProcessorSettings:
    """Settings of a processor on a test's own topics and group (6 s sessions)."""
    return ProcessorSettings(
        kafka_bootstrap=common.kafka_bootstrap,
        topic_prefix=topics.prefix,
        group_id=f"{topics.prefix}-group",
        instance_id="1",
        session_timeout=timedelta(seconds=6),
        catalog=CATALOG_PATH,
    )


def new_processor(settings: ProcessorSettings) -> tuple[Processor, CollectorRegistry]:
    """An in-process processor over the test catalog, with a registry of its own."""
    registry = CollectorRegistry()
    proc = Processor(
        settings,
        Catalog.from_file(CATALOG_PATH),
        load_methodology().standards,
        build_metrics(registry),
    )
    return proc, registry


def drop_topics(settings: CommonSettings, topics: Topics) -> None:
    """Delete a test's topics."""
    names = [s.name for s in topics.specs()]
    delete_topics(connect(settings), names)


def produce(
    settings: CommonSettings,
    topics: Topics,
    stream: Stream,
    seconds: float = 0,
    gates: Sequence[tuple[float, threading.Event]] = (),
) -> None:
    """Write the stream, each event to its partition in order, spread over ``seconds``.

    Record times are fixed by the content (1 s after ``occurred_at``), so every
    scenario sees the same receive times (clock skew, restatement times). ``gates``
    holds the feed back: ``(fraction, event)`` stops before that fraction of the stream
    until the test sets ``event``, so a scenario's steps happen mid-stream however slow
    the machine is (the time spent waiting does not count against ``seconds``).
    """
    items: list[tuple[int, int, bytes]] = []
    width = max(len(v) for v in stream.events.values())
    for i in range(width):
        for part, evs in stream.events.items():
            if i < len(evs):
                ev = evs[i]
                if isinstance(ev, dict):
                    ts = int(datetime.fromisoformat(ev["occurred_at"]).timestamp() * 1000) + 1000
                    items.append((part, ts, encode(ev)))
                else:
                    items.append((part, items[-1][1] if items else 0, ev))
    p = connect(settings).producer(client_id="test-produce")
    started = time.monotonic()
    pending = sorted(gates, key=lambda g: g[0])
    for n, (part, ts, raw) in enumerate(items):
        while pending and n >= pending[0][0] * len(items):
            _, gate = pending.pop(0)
            p.flush(30)
            held = time.monotonic()
            if not gate.wait(600):
                raise AssertionError("the test never released its feed")
            started += time.monotonic() - held
        p.send(topics.events, raw, canonical_key(raw), partition=part, timestamp_ms=ts)
        if seconds and n % 50 == 0:
            p.flush(30)
            ahead = started + seconds * n / len(items) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert p.flush(60) == 0, "the test's events were not all acknowledged"
    p.close(5)


def read_all(settings: CommonSettings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every committed record of a topic, in partition order."""
    return [(r.key, r.value) for r in read_topic(settings, topic)]


def materialise(settings: CommonSettings, topics: Topics) -> dict[bytes, bytes]:
    """The aggregates topic as a reader sees it (latest value per key), with the days
    closed to ``<prefix>.days`` as the records they replaced."""
    return materialise_all(settings, topics)


def summed(aggregates: dict[bytes, bytes]) -> tuple[dict[Cell, agg.Rollup], dict[str, int]]:
    """Rollups summed over partitions per (day, cell), and the gauges summed over all."""
    cells: dict[Cell, agg.Rollup] = {}
    gauges = dict.fromkeys(agg.Gauges.__struct_fields__, 0)
    for k, v in aggregates.items():
        key = agg.decode_key(k)
        if isinstance(key, agg.RollupKey):
            cells.setdefault((key.day, *key.dims), agg.Rollup()).add(agg.decode_rollup(v))
        elif isinstance(key, agg.GaugeKey):
            g = agg.decode_gauges(v)
            for f in gauges:
                gauges[f] += getattr(g, f)
    return cells, gauges
