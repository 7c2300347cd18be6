"""The real local stack for the reliability suite, and the tools to measure it.

Every component runs as a process of its own, started exactly as the local stack starts
it (``python -m servicepulse serve`` / ``process``, managed by
:class:`servicepulse.stack.ManagedProcess`, so faults are real signals to real pids):

- :class:`Stack` - one topic prefix on a broker, a run directory with the components'
  logs and the token database; starts the API and processor instances.
- :class:`Sender` - posts NDJSON batches to the API and retries each until the API
  answers 200 (through 503, 429, a dead or restarting API); it keeps every event id the
  API acknowledged (``accepted`` or ``duplicate``) and counts what it saw.
- :func:`rss_kib` - resident memory of a pid from ``/proc``.
- :func:`record` - writes a test's figures to ``test-artifacts/reliability/`` (the
  numbers quoted in docs/RELIABILITY.md).

Short form by default; ``SERVICEPULSE_RELIABILITY=long`` selects the long form
(10-minute soak, bigger streams, more faults).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from api.tokens import Kind, TokenStore
from contract import aggregates as agg
from contract.settings import CommonSettings
from contract.topics import Topics
from kafkaport import TopicPartition, connect
from kafkaport.topics import ensure_topics
from servicepulse import stack
from tests.fixtures.aggregates import materialise_all
from tests.fixtures.kafka import Broker, end_total, read_topic
from tests.fixtures.streams import Stream
from tests.processors import brokerio

#: rollups summed over partitions per (day, cell) and the gauges summed (re-exported)
summed_cells = brokerio.summed

MODE = os.environ.get("SERVICEPULSE_RELIABILITY", "short")
LONG = MODE == "long"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "reliability"


def scaled(short: float, long: float) -> float:
    """``short`` in the short form, ``long`` in the long form."""
    return long if LONG else short


# -- figures -------------------------------------------------------------------------------


def record(name: str, figures: dict[str, Any]) -> None:
    """Write a test's figures to ``test-artifacts/reliability/<name>.json`` (``-long``
    in the long form), with the machine's load average for context."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {
        "mode": MODE,
        "finished_at": datetime.now().isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        **figures,
    }
    suffix = "-long" if LONG else ""
    (ARTIFACTS / f"{name}{suffix}.json").write_text(
        json.dumps(figures, indent=2, ensure_ascii=False)
    )


def keep_logs(name: str, run_dir: Path) -> None:
    """Copy the components' logs of a run next to the figures (CI keeps them)."""
    target = ARTIFACTS / "logs" / (f"{name}-long" if LONG else name)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for log in run_dir.glob("*.log"):
        shutil.copy(log, target / log.name)


# -- processes -----------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "servicepulse", *args]


@dataclass
class Stack:
    """One topic prefix on ``broker`` and the components that work on it.

    Args:
        broker: the broker (a private one when the test stops it).
        run_dir: logs, pid files and the token database of the components.
        catalog: the catalog every component uses.
        partitions: partitions of the events topic.
    """

    broker: Broker
    run_dir: Path
    catalog: Path
    partitions: int = 12
    prefix: str = field(default_factory=lambda: f"rel{uuid.uuid4().hex[:10]}")
    api_port: int = field(default_factory=stack.free_port)
    processes: dict[str, stack.ManagedProcess] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.topics = Topics(self.prefix)
        self.settings = CommonSettings(
            kafka_bootstrap=self.broker.bootstrap, topic_prefix=self.prefix
        )
        ensure_topics(connect(self.settings), self.topics.specs(self.partitions))
        self.token_db = self.run_dir / "tokens.db"
        self.group = f"{self.prefix}-group"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, **settings: object) -> dict[str, str]:
        """The environment of a component: this stack's Kafka, topics, catalog, tokens."""
        env = {
            "SERVICEPULSE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "SERVICEPULSE_TOPIC_PREFIX": self.prefix,
            "SERVICEPULSE_CATALOG": str(self.catalog),
            "SERVICEPULSE_TOKEN_DB": str(self.token_db),
            "SERVICEPULSE_STACK_DIR": str(self.run_dir),
            "SERVICEPULSE_GROUP_ID": self.group,
            "SERVICEPULSE_LOG_LEVEL": "INFO",
            # the tests stand in for a proxy on loopback: X-Forwarded-For gives each
            # simulated client its own failed-authentication budget
            "SERVICEPULSE_TRUSTED_PROXIES": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"SERVICEPULSE_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    def token(self, agency: str | None) -> str:
        """A new agency token (``agency``) or inspector token (``None``)."""
        store = TokenStore(self.token_db, cache_seconds=0)
        try:
            kind = Kind.INSPECTOR if agency is None else Kind.AGENCY
            token, _ = store.create(kind, agency, "reliability")
        finally:
            store.close()
        self.tokens[agency or "inspector"] = token
        return token

    def api(self, name: str = "api", **settings: object) -> stack.ManagedProcess:
        """The API (``servicepulse serve``) on this stack's port; started and healthy."""
        url = self.url
        proc = stack.ManagedProcess(
            name=name,
            run_dir=self.run_dir,
            argv=_cli("serve", "--port", str(self.api_port)),
            env=self.env(**{"readmodel_snapshot": "", **settings}),
            ready=lambda: _http_ok(f"{url}/healthz"),
            ready_timeout=60,
            stop_timeout=20,
        )
        proc.start()
        self.processes[name] = proc
        return proc

    def processor(self, instance: int, **settings: object) -> stack.ManagedProcess:
        """A processor instance (``servicepulse process``); started, /metrics answering."""
        port = stack.free_port()
        proc = stack.ManagedProcess(
            name=f"processor-{instance}",
            run_dir=self.run_dir,
            argv=_cli("process", "--metrics-port", str(port), "--instance", str(instance)),
            env=self.env(session_timeout="PT6S", **settings),
            ready=lambda: _http_ok(f"http://127.0.0.1:{port}/metrics"),
            ready_timeout=60,
            stop_timeout=30,
            url=f"http://127.0.0.1:{port}",
        )
        proc.start()
        self.processes[proc.name] = proc
        return proc

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        """Wait until the API's /readyz answers 200 (read model caught up, producer up)."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=5)
                body = r.json()
                if r.status_code == 200:
                    return body
            except httpx.HTTPError as exc:
                body = {"error": str(exc)}
            time.sleep(0.25)
        raise AssertionError(f"API not ready within {timeout}s: {body}")

    def stop_all(self) -> None:
        """Stop every component still running (SIGTERM, then SIGKILL)."""
        for proc in reversed(list(self.processes.values())):
            proc.stop()

    def logs(self) -> str:
        """Every component log of this stack, concatenated."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.run_dir.glob("*.log")))

    # -- Kafka views -------------------------------------------------------------------------

    def committed(self) -> int:
        """Input records committed by the processors' group."""
        c = connect(self.settings).consumer(
            client_id="test-monitor", group_id=self.group, isolation="read_uncommitted"
        )
        try:
            tps = [TopicPartition(self.topics.events, q) for q in range(self.partitions)]
            return sum(off or 0 for off in c.committed(tps, 30).values())
        finally:
            c.close()

    def end_offsets(self, topic: str | None = None) -> int:
        """Sum of the end offsets of a topic (default: the events topic)."""
        return end_total(self.settings, topic or self.topics.events)

    def wait_processed(self, timeout: float) -> float:
        """Wait until the group committed every record of the events topic; seconds taken."""
        started = time.monotonic()
        end = self.end_offsets()
        while (done := self.committed()) < end:
            assert time.monotonic() - started < timeout, (
                f"processors committed {done} of {end} records in {timeout:.0f}s"
            )
            time.sleep(0.5)
        return time.monotonic() - started


# -- reading topics -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    """A record as read back: where it is and what it holds."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None

    def body(self) -> bytes:
        """The value of a record that is not a tombstone (every record of the events topic)."""
        assert self.value is not None, f"a tombstone at {self.partition}/{self.offset}"
        return self.value


def read_records(settings: CommonSettings, topic: str, timeout: float = 60) -> list[Rec]:
    """Every committed record of ``topic``, per partition in offset order."""
    return [
        Rec(r.partition, r.offset, r.timestamp, r.key, r.value)
        for r in read_topic(settings, topic, timeout)
    ]


def materialise(settings: CommonSettings, topics: Topics) -> dict[bytes, bytes]:
    """The aggregates topic as a reader sees it (the latest value per key), with the days
    closed to ``<prefix>.days`` as the records they replaced."""
    return materialise_all(settings, topics)


def without_duplicates(aggregates: dict[bytes, bytes]) -> dict[bytes, Any]:
    """Rollups (``duplicates`` zeroed) and gauges, decoded, by key.

    ``duplicates`` counts copies of an event that reached Kafka more than once: a retry
    after a 503 or a dead API legitimately writes one, so it is compared separately.
    """
    out: dict[bytes, Any] = {}
    for k, v in aggregates.items():
        if k.startswith(b"r|"):
            r = agg.decode_rollup(v)
            r.duplicates = 0
            out[k] = r
        elif k.startswith(b"g|"):
            out[k] = agg.decode_gauges(v)
    return out


# -- sending through the API ----------------------------------------------------------------


@dataclass
class Sender:
    """Posts batches to the API and retries each until it is answered 200.

    ``acknowledged`` holds every event id the API answered ``accepted`` or
    ``duplicate`` (both mean: Kafka has it). ``statuses`` counts every HTTP answer and
    ``errors`` every connection failure seen on the way; nothing else is tolerated.
    """

    url: str
    tokens: dict[str, str]
    retry_for: float = 240.0
    acknowledged: set[str] = field(default_factory=set)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    retry_after: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=30)

    def close(self) -> None:
        self._client.close()

    def send(self, agency: str, lines: list[bytes]) -> dict[str, Any]:
        """Post one NDJSON batch with ``agency``'s token until it is answered 200."""
        body = b"\n".join(lines)
        headers = {
            "Authorization": f"Bearer {self.tokens[agency]}",
            "Content-Type": "application/x-ndjson",
        }
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                r = self._client.post("/v1/events", content=body, headers=headers)
            except httpx.TransportError as exc:
                self.errors[type(exc).__name__] += 1
                assert time.monotonic() < deadline, f"API unreachable for {self.retry_for}s: {exc}"
                time.sleep(0.2)
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                out: dict[str, Any] = r.json()
                for x in out["results"]:
                    if x["status"] in ("accepted", "duplicate"):
                        self.acknowledged.add(x["event_id"])
                self.accepted += out["accepted"]
                self.duplicates += out["duplicates"]
                self.rejected += out["rejected"]
                return out
            assert r.status_code in (429, 503), f"unexpected {r.status_code}: {r.text[:500]}"
            assert r.json()["error"]["code"] in ("unavailable", "rate_limited", "not_ready")
            wait = float(r.headers["retry-after"])
            self.retry_after.append(wait)
            assert time.monotonic() < deadline, f"still {r.status_code} after {self.retry_for}s"
            time.sleep(min(wait, 1.0))


def ordered(stream: Stream) -> list[dict[str, Any] | bytes]:
    """Every item of a generated stream in one event-time order.

    Sent in this order through the API, each Kafka partition receives its events in
    event-time order, as the oracle assumes. Raw (invalid) items keep their place after
    the event before them in their partition.
    """
    keyed: list[tuple[float, int, int, dict[str, Any] | bytes]] = []
    for p, evs in stream.events.items():
        last = 0.0
        for i, ev in enumerate(evs):
            if isinstance(ev, dict):
                last = datetime.fromisoformat(ev["occurred_at"]).timestamp()
            keyed.append((last, p, i, ev))
    keyed.sort(key=lambda x: (x[0], x[1], x[2]))
    return [x[3] for x in keyed]


def batches(
    items: Iterable[dict[str, Any] | bytes], size: int
) -> Iterator[tuple[str, list[bytes], list[dict[str, Any] | bytes]]]:
    """Consecutive runs of one agency's items (a token sends its own agency only)."""
    agency = ""
    lines: list[bytes] = []
    run: list[dict[str, Any] | bytes] = []
    for item in items:
        a = item["agency"] if isinstance(item, dict) else agency or "soc"
        if run and (a != agency or len(run) >= size):
            yield agency, lines, run
            lines, run = [], []
        agency = a
        run.append(item)
        lines.append(item if isinstance(item, bytes) else json.dumps(item).encode())
    if run:
        yield agency, lines, run


# -- /metrics --------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable exposition line {line!r}"
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def total(samples: list[tuple[str, dict[str, str], float]], name: str) -> float:
    """Sum of one family's samples."""
    return sum(v for n, _, v in samples if n == name)


def working(proc: stack.ManagedProcess) -> bool:
    """Whether a processor instance owns partitions and has processed events."""
    if not proc.running():
        return False
    try:
        samples = scrape(proc.url)
    except httpx.HTTPError:
        return False
    return (
        total(samples, "servicepulse_processor_assigned_partitions") > 0
        and total(samples, "servicepulse_processor_events_total") > 0
    )
