"""Exactly once against the real broker: a clean pass, SIGKILLs, instances coming and going.

The same generated stream is processed three times on fresh topics: (a) in one clean
pass, (b) by ``servicepulse process`` killed with SIGKILL at random points and restarted,
(c) with a second and a third instance joining and leaving mid-stream. The materialised
aggregates (read_committed, latest per key) must be identical in all three, and their
sums over partitions equal to totals computed from the raw events by the oracle.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contract.topics import Topics
from kafkaport import KafkaError, TopicPartition, connect
from processors.settings import ProcessorSettings
from servicepulse import stack
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.streams import CATALOG_PATH, Stream, generate
from tests.processors import oracle
from tests.processors.brokerio import (
    drop_topics,
    materialise,
    new_processor,
    processor_settings,
    produce,
    read_all,
    summed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
STREAM = generate(seed=11, journeys=400, invalid=True)
#: Small transactions, so a run spans many commits and kills land between and inside them.
SLOW = {"max_batch": 40, "poll_records": 40, "commit_interval": "PT0.05S"}


@dataclass
class Env:
    settings: ProcessorSettings
    topics: Topics
    total: int
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)
    monitor: Any = None
    #: more environment of the spawned processors
    extra: dict[str, str] = field(default_factory=dict)

    def produce(
        self, seconds: float = 0, gates: tuple[tuple[float, threading.Event], ...] = ()
    ) -> threading.Thread:
        """Produce the stream in the background, spread over ``seconds``, held back at
        ``gates`` (see :func:`tests.processors.brokerio.produce`)."""
        t = threading.Thread(
            target=produce, args=(self.settings, self.topics, STREAM, seconds, gates)
        )
        t.start()
        return t

    def committed(self) -> int:
        """Input records committed by the group so far."""
        if self.monitor is None:
            # read_uncommitted: the offsets as they stand, without waiting for stability
            self.monitor = connect(self.settings).consumer(
                client_id="test-monitor",
                group_id=self.settings.group_id,
                isolation="read_uncommitted",
            )
        tps = [TopicPartition(self.topics.events, q) for q in range(12)]
        deadline = time.monotonic() + 30
        while True:
            try:
                return sum(off or 0 for off in self.monitor.committed(tps, 30).values())
            except KafkaError as exc:
                # a fresh broker's group coordinator takes a moment (NOT_COORDINATOR)
                if exc.fatal or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self.monitor is not None:
            m, self.monitor = self.monitor, None
            m.close()

    def reached(self, frac: float) -> Callable[[int], bool]:
        """A predicate for :meth:`wait`: at least ``frac`` of the stream committed."""
        return lambda n: n >= frac * self.total

    def wait(self, pred: Callable[[int], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.committed()):
            if time.monotonic() > deadline:
                for p in self.procs:
                    if p.poll() is None:  # stacks of a hung processor go to its log
                        p.send_signal(signal.SIGUSR1)
                time.sleep(1)
                pytest.fail(f"timed out waiting for {what}; logs in {self.log_dir}")
            time.sleep(0.1)

    def wait_assigned(self, instance: int, timeout: float = 60) -> None:
        """Wait until an instance owns input partitions and restored their state."""
        deadline = time.monotonic() + timeout
        port = self.ports[instance]
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                text = ""
            m = re.search(r"^servicepulse_processor_assigned_partitions (\S+)$", text, re.M)
            if m and float(m.group(1)) > 0:
                return
            time.sleep(0.1)
        pytest.fail(f"instance {instance} was never assigned a partition")

    def spawn(self, instance: int) -> subprocess.Popen[bytes]:
        """``servicepulse process`` as a subprocess of its own."""
        env = {
            **os.environ,
            "SERVICEPULSE_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "SERVICEPULSE_TOPIC_PREFIX": self.settings.topic_prefix,
            "SERVICEPULSE_GROUP_ID": self.settings.group_id,
            "SERVICEPULSE_CATALOG": str(CATALOG_PATH),
            "SERVICEPULSE_SESSION_TIMEOUT": "PT6S",
            "SERVICEPULSE_MAX_BATCH": str(SLOW["max_batch"]),
            "SERVICEPULSE_POLL_RECORDS": str(SLOW["poll_records"]),
            "SERVICEPULSE_COMMIT_INTERVAL": str(SLOW["commit_interval"]),
            "PYTHONUNBUFFERED": "1",
            # offsets processed, committed and restored, for the diagnosis of a failure
            "SERVICEPULSE_LOG_LEVEL": "DEBUG",
            **self.extra,
        }
        log = (self.log_dir / f"processor-{instance}.log").open("ab")
        self.ports[instance] = stack.free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "servicepulse",
                "process",
                "--metrics-port",
                str(self.ports[instance]),
                "--instance",
                str(instance),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc


@pytest.fixture
def env(topic_factory: TopicFactory, tmp_path: Path) -> Iterator[Env]:
    topics, common = topic_factory()
    settings = processor_settings(topics, common)
    env = Env(settings, topics, sum(map(len, STREAM.events.values())), tmp_path)
    yield env
    env.close()
    drop_topics(settings, topics)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


_RESULTS: dict[str, dict[bytes, bytes]] = {}


def differing(aggregates: dict[bytes, bytes]) -> list[int]:
    """The input partitions whose own records differ from the oracle (for diagnosis)."""
    out = []
    for p, evs in STREAM.events.items():
        mine = {k: v for k, v in aggregates.items() if k.split(b"|")[1:2] == [str(p).encode()]}
        want, _ = oracle.expected(Stream(events={p: evs}))
        got = oracle.flatten(summed(mine)[0])
        if any(want.get(k) != got.get(k) for k in set(want) | set(got)):
            out.append(p)
    return out


def check(name: str, env: Env) -> None:
    """Compare with the oracle and with the other scenarios' aggregates."""
    aggregates = materialise(env.settings, env.topics)
    cells, gauges = summed(aggregates)
    oracle.assert_matches(
        STREAM,
        cells,
        gauges,
        context=f"{name}, input partitions {differing(aggregates)}, logs in {env.log_dir}",
    )
    dead = read_all(env.settings, env.topics.deadletter)
    assert len(dead) == 6, f"{name}: {len(dead)} dead letters, want 6"
    for other, seen in _RESULTS.items():
        assert aggregates == seen, f"{name} and {other} materialise different aggregates"
    _RESULTS[name] = aggregates


def test_a_clean_pass(env: Env) -> None:
    env.produce().join()
    proc, _ = new_processor(env.settings)
    stats = proc.run_until_caught_up(timeout_s=120)
    assert stats.events == env.total
    assert stats.deadletters == 6
    check("clean", env)


def test_b_sigkill_at_random_points(env: Env) -> None:
    rnd = random.Random()
    points = sorted(rnd.uniform(0.1, 0.85) for _ in range(3))
    kills = 0
    feeder = env.produce(seconds=8)
    proc = env.spawn(1)
    try:
        for frac in points:
            env.wait(env.reached(frac), f"{frac:.0%} committed")
            time.sleep(rnd.uniform(0, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = env.spawn(1)
        env.wait(lambda n: n >= env.total, "everything committed")
        # the last incarnation may find nothing left to do; let it start up before
        # stopping it, so it stops through its handler
        env.wait_assigned(1)
    finally:
        _stop([proc])
        feeder.join()
    assert kills == 3
    assert proc.returncode == 0
    check("sigkill", env)


def test_c_instances_join_and_leave(env: Env) -> None:
    # the feed waits for each step, so every join and leave happens mid-stream however
    # slowly the instances start on a busy machine
    three, left, both_left = threading.Event(), threading.Event(), threading.Event()
    gates = ((0.4, three), (0.65, left), (0.9, both_left))
    feeder = env.produce(seconds=20, gates=gates)
    first = env.spawn(1)
    try:
        env.wait(lambda n: n >= 0.1 * env.total, "10% committed")
        second = env.spawn(2)
        env.wait_assigned(2)
        third = env.spawn(3)
        env.wait_assigned(3)
        at = env.committed()
        three.set()
        env.wait(lambda n: n > at + 100, "progress with three instances")
        _stop([second])
        at = env.committed()
        left.set()
        env.wait(lambda n: n > at + 100, "progress after the second left")
        _stop([third])
        assert env.committed() < env.total, "the last part of the stream was not held back"
        both_left.set()
        env.wait(lambda n: n >= env.total, "everything committed")
    finally:
        for gate in (three, left, both_left):
            gate.set()
        _stop(env.procs)
        feeder.join()
    assert [p.returncode for p in (first, second, third)] == [0, 0, 0]
    # the leaves handed partitions to members that kept theirs: those restored them
    # between their own polls (held partitions), not in the rebalance callback
    logs = "".join(f.read_text(errors="replace") for f in env.log_dir.glob("processor-*.log"))
    assert "restored while processing" in logs, f"no restore between polls; logs in {env.log_dir}"
    check("scaling", env)
