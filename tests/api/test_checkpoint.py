"""The read model's checkpoint on Kafka (``api/checkpoint.py``) against the real broker.

A reader without a snapshot starts from the newest complete checkpoint and reads only
what is newer, and ends equal to a reader that read everything; an aborted publish, a
head that does not match its pieces and the pieces an older, larger checkpoint left are
never used; the API publishes on its own and a second API without a snapshot starts
from it.
"""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from api import checkpoint as ckpt
from api.checkpoint import Head, ReadModelCheckpoint
from api.readmodel import ReadModel
from contract import aggregates as agg
from contract.aggregates import Dims, Rollup
from contract.catalog import load_catalog
from contract.settings import CommonSettings
from contract.topics import CHECKPOINT_MAX_BYTES, Topics
from kafkaport import TransactionalProducer, connect
from tests.api.test_readmodel import Writer, assert_equal, generate, random_rollup, scrape
from tests.api.test_readmodel import expected_totals as expected_families
from tests.fixtures.api import api_settings, running_api
from tests.fixtures.kafka import TopicFactory

pytestmark = pytest.mark.integration

CATALOG = load_catalog()


@pytest.fixture
def env(topic_factory: TopicFactory) -> Iterator[tuple[Topics, CommonSettings, Writer]]:
    topics, common = topic_factory(3)
    writer = Writer(common, topics.aggregates)
    yield topics, common, writer
    writer.close()


def write(writer: Writer, txns: list[list[tuple[bytes, Rollup]]]) -> int:
    for txn in txns:
        writer.transaction([(k, agg.encode(r)) for k, r in txn])
    return sum(map(len, txns))


def caught_up(common: CommonSettings, topics: Topics, **kw: object) -> ReadModel:
    model = ReadModel(common, topics, CATALOG, **kw)  # type: ignore[arg-type]
    model.catch_up(90.0)
    return model


def state(model: ReadModel) -> tuple[object, ...]:
    """What a reader serves: totals by cell, the days, a period's sums."""
    enc = msgspec.msgpack.encode
    totals = sorted((tuple(c), enc(r)) for c, r in model.totals())
    period = model.period("2026-11-01", "2026-11-04", lambda g: g)
    return totals, model.days(), sorted((tuple(g), enc(r)) for g, r in period.items())


def expected_totals(latest: dict[bytes, Rollup]) -> list[tuple[tuple[str, ...], bytes]]:
    """Totals by cell from the records written, without the read model's code."""
    sums: dict[Dims, Rollup] = {}
    for key, r in latest.items():
        k = agg.decode_key(key)
        assert isinstance(k, agg.RollupKey)
        sums.setdefault(k.dims, Rollup()).add(r)
    return sorted((tuple(c), msgspec.msgpack.encode(r)) for c, r in sums.items())


def test_a_reader_without_a_snapshot_starts_from_the_checkpoint(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics, common, writer = env
    monkeypatch.setattr(ckpt, "PIECE_BYTES", 2048)  # many pieces, as a year's file has
    rng = random.Random(20261203)
    txns = generate(rng, versions=3)
    first, later = txns[: len(txns) // 2], txns[len(txns) // 2 :]
    latest: dict[bytes, Rollup] = {}
    write(writer, first)
    for t in first:
        latest.update(t)

    snapshot = tmp_path / "a.snapshot"
    publisher = ReadModelCheckpoint(common, topics)
    a = caught_up(common, topics, snapshot=snapshot, checkpoint=publisher)
    assert not a.status.restored_from_checkpoint  # nothing published yet
    assert a.save_snapshot()
    publisher.publish(snapshot)
    assert publisher.published_bytes == snapshot.stat().st_size > 10 * 2048
    published = snapshot.read_bytes()
    publisher.close()

    newer = write(writer, later)
    for t in later:
        latest.update(t)

    b = caught_up(common, topics, checkpoint=ReadModelCheckpoint(common, topics))
    assert b.status.restored_from_checkpoint and not b.status.restored_from_snapshot
    # it read only what was written after the checkpoint
    assert b.status.records == newer
    full = caught_up(common, topics)
    assert full.status.records == newer + sum(map(len, first))
    assert state(b) == state(full)
    assert state(b)[0] == expected_totals(latest)

    # a reader with a snapshot file gets the checkpoint written there (the same bytes),
    # in a directory made for it, readable by its user only
    c_path = tmp_path / "new" / "c.snapshot"
    c = caught_up(common, topics, snapshot=c_path, checkpoint=ReadModelCheckpoint(common, topics))
    assert c.status.restored_from_checkpoint and c_path.read_bytes() == published
    assert c_path.stat().st_mode & 0o777 == 0o600
    assert state(c) == state(full)
    assert not list(tmp_path.glob("*.fetching"))


def _raw_producer(common: CommonSettings) -> TransactionalProducer:
    p = connect(common).transactional_producer(
        client_id="test-checkpoint-forger",
        transactional_id=f"test-forger-{uuid.uuid4().hex[:8]}",
        transaction_timeout_ms=60_000,
        max_message_bytes=CHECKPOINT_MAX_BYTES,
    )
    p.init_transactions(30)
    return p


def forge(
    p: TransactionalProducer, topic: str, mark: bytes, *, with_head: bool, commit: bool
) -> None:
    """One transaction of a piece ``p|0`` (and a head claiming a wrong digest)."""
    cid = mark * ckpt.ID_BYTES
    p.begin_transaction()
    p.send(topic, cid + mark * 100, ckpt.piece_key(0), partition=0)
    if with_head:
        head = Head(cid, 1, 100, b"0" * 32, time.time())
        p.send(topic, msgspec.msgpack.encode(head), ckpt.HEAD_KEY, partition=0)
    if commit:
        p.commit_transaction(30)
    else:
        p.flush(30)
        p.abort_transaction(30)


def test_only_a_whole_checkpoint_is_used(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics, common, writer = env
    monkeypatch.setattr(ckpt, "PIECE_BYTES", 1024)
    rng = random.Random(7)
    write(writer, generate(rng, versions=2))
    snapshot = tmp_path / "a.snapshot"
    publisher = ReadModelCheckpoint(common, topics)
    a = caught_up(common, topics, snapshot=snapshot, checkpoint=publisher)
    assert a.save_snapshot()
    publisher.publish(snapshot)
    good = snapshot.read_bytes()
    big_pieces = -(-len(good) // 1024)
    assert big_pieces > 5

    # a smaller valid checkpoint replaces it: the pieces beyond its own are tombstoned
    small = tmp_path / "small.snapshot"
    small.write_bytes(good[: 3 * 1024 + 10])
    publisher.publish(small)
    fetched = tmp_path / "f1"
    head = ReadModelCheckpoint(common, topics).fetch(fetched)
    assert head is not None and head.pieces == 4 and fetched.read_bytes() == small.read_bytes()
    # the newest again: the real one
    publisher.publish(snapshot)

    p = _raw_producer(common)
    # an aborted publish: its pieces and head are never visible
    forge(p, topics.readmodel, b"A", with_head=True, commit=False)
    # a committed head whose digest does not match its piece
    forge(p, topics.readmodel, b"B", with_head=True, commit=True)
    # a piece of another checkpoint without a head (a publisher killed mid-way never
    # commits them; this one is committed, and still not whole)
    forge(p, topics.readmodel, b"C", with_head=False, commit=True)
    p.close(5)

    fetched = tmp_path / "f2"
    head = ReadModelCheckpoint(common, topics).fetch(fetched)
    assert head is not None and fetched.read_bytes() == good
    b = caught_up(common, topics, checkpoint=ReadModelCheckpoint(common, topics))
    assert b.status.restored_from_checkpoint and b.status.records == 0
    assert state(b) == state(caught_up(common, topics))


def test_no_checkpoint_means_reading_everything(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path
) -> None:
    topics, common, writer = env
    n = write(writer, generate(random.Random(3), versions=1))
    m = caught_up(common, topics, checkpoint=ReadModelCheckpoint(common, topics))
    assert not m.status.restored_from_checkpoint and m.status.records == n


def test_the_api_publishes_and_a_second_api_starts_from_it(
    env: tuple[Topics, CommonSettings, Writer], tmp_path: Path
) -> None:
    _topics, common, writer = env
    rng = random.Random(11)
    latest: dict[bytes, Rollup] = {}
    txns = generate(rng, versions=2)
    for t in txns:
        latest.update(t)
    written = write(writer, txns)
    first = tmp_path / "api1"
    settings = api_settings(
        common,
        first,
        readmodel_snapshot=first / "rm.snapshot",
        snapshot_interval=0.5,
        checkpoint_interval=1.0,
    )
    with running_api(settings) as server:
        server.wait_ready()
        model = server.app.state.services.model
        assert model.checkpoint is not None
        deadline = time.monotonic() + 90
        while model.checkpoint.published_at is None:
            assert time.monotonic() < deadline, f"none published: {model.checkpoint.error}"
            time.sleep(0.2)
        # a batch after the checkpoint, read by the first API and then the second
        extra = [(k, random_rollup(rng, 50)) for k in list(latest)[:5]]
        written += write(writer, [extra])
        latest.update(extra)
        while model.status.records < written:
            assert time.monotonic() < deadline, "the first API did not read the last batch"
            time.sleep(0.2)
        assert_equal(scrape(server.url), expected_families(latest))
    shutil.rmtree(first)

    second = tmp_path / "api2"
    settings = api_settings(common, second, readmodel_snapshot=second / "rm.snapshot")
    with running_api(settings) as server:
        ready = server.wait_ready()
        assert ready["readmodel"]["restored_from_checkpoint"]
        assert not ready["readmodel"]["restored_from_snapshot"]
        assert ready["readmodel"]["records"] < written
        assert_equal(scrape(server.url), expected_families(latest))
