"""No false jump: a real Prometheus scrapes the real API across restarts of everything.

Kafka -> ``servicepulse process`` (subprocesses) -> ``servicepulse serve`` (a subprocess)
-> a real Prometheus scraping it every second. The aggregates topic is given a long
history first (records of another input partition, as a year of traffic leaves), so a
read model that starts from nothing takes several scrapes to catch up. Then, with live
events flowing in batches: the API is SIGKILLed and restarted without a snapshot, then
with one; a processor is SIGKILLed and restarted; a second processor joins (a
rebalance) and leaves again. Over the whole window Prometheus must record no reset of
any business counter, and ``increase()`` over the window must equal, series by series,
the events sent in it. The window's ends are two scrapes, so ``increase()`` needs no
extrapolation and the comparison is exact.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from contract import aggregates as agg
from contract.aggregates import Hist, Rollup
from contract.catalog import demo_catalog_path, load_catalog
from contract.metrics import FAMILIES
from dashboards import pipeline
from tests.fixtures.api import event
from tests.fixtures.kafka import Broker
from tests.fixtures.prometheus import PromServer, start_prometheus
from tests.fixtures.streams import canonical_key
from tests.reliability.harness import Stack, scrape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATALOG = load_catalog()
#: (agency, service, channel) of the live events
CELLS: list[tuple[str, str, str]] = [
    (svc.service.agency, code, channel)
    for code, svc in sorted(CATALOG.services.items())[:3]
    for channel in ("portal", "mfc")
]
#: filler history: records of an input partition no processor owns (days x cells)
HISTORY_DAYS = 120
HISTORY_CELLS = 400
BATCH = 12
STARTED = "servicepulse_journeys_started_total"
PROCESSED = "servicepulse_events_processed_total"


def _business_counters() -> list[str]:
    names = [f.full for f in FAMILIES if f.kind == "counter"]
    return names + [
        f"{f.full}_{s}"
        for f in FAMILIES
        if f.kind == "histogram"
        for s in ("bucket", "count", "sum")
    ]


def _write_history(stack: Stack) -> int:
    """Rollups of many past days and cells from input partition 999 (no processor's)."""
    producer = KafkaProducer(
        **stack.settings.kafka_config(),
        linger_ms=50,
        batch_size=512 * 1024,
    )
    services = sorted(CATALOG.services.items())[3:]
    municipalities = sorted(CATALOG.municipalities)
    value = agg.encode(
        Rollup(
            events=3, started=2, feedback={"5": 1}, skew_seconds=Hist([1, 0, 0, 0, 0, 0, 0, 0], 10)
        )
    )
    n = 0
    for d in range(HISTORY_DAYS):
        day = f"2025-{1 + d // 28:02d}-{1 + d % 28:02d}"
        for i in range(HISTORY_CELLS):
            code, svc = services[i % len(services)]
            m = municipalities[(i // len(services)) % len(municipalities)]
            key = agg.RollupKey(
                999, day, agg.Dims(svc.service.agency, code, m, "phone", "")
            ).encode()
            producer.send(stack.topics.aggregates, key=key, value=value)
            n += 1
    producer.flush(120)
    producer.close()
    return n


class Sender:
    """Live journey starts straight to the events topic; counts what it sent per cell."""

    def __init__(self, stack: Stack) -> None:
        self.topic = stack.topics.events
        self.producer = KafkaProducer(**stack.settings.kafka_config())
        self.sent: Counter[tuple[str, str, str]] = Counter()
        self._i = 0

    def batch(self, n: int = BATCH) -> None:
        for _ in range(n):
            agency, service, channel = CELLS[self._i % len(CELLS)]
            self._i += 1
            ev = event(agency=agency, service=service, channel=channel)
            raw = json.dumps(ev).encode()
            # the contract's key (a record keyed otherwise is dead-lettered: wrong_key)
            self.producer.send(self.topic, key=canonical_key(raw), value=raw)
            self.sent[(agency, service, channel)] += 1
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close()


def _api_counts(url: str) -> dict[tuple[str, str, str], float] | None:
    try:
        samples = scrape(url)
    except httpx.HTTPError:
        return None
    return {
        (lb["agency"], lb["service"], lb["channel"]): v
        for name, lb, v in samples
        if name == STARTED and (lb["agency"], lb["service"], lb["channel"]) in CELLS
    }


def _until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}", pytrace=False)
        time.sleep(0.25)


def _last_sample(prom: PromServer, want: dict[tuple[str, str, str], int]) -> float:
    """The timestamp of a scrape at which Prometheus saw every cell at ``want``."""
    found: list[float] = []

    def seen() -> bool:
        rows = prom.query(f"{STARTED}[20s]")
        by_cell = {
            (r["metric"]["agency"], r["metric"]["service"], r["metric"]["channel"]): r["values"]
            for r in rows
        }
        if any(c not in by_cell for c in want):
            return False
        last = {c: by_cell[c][-1] for c in want}
        stamps = {float(v[0]) for v in last.values()}
        if len(stamps) == 1 and all(float(last[c][1]) == n for c, n in want.items()):
            found.append(stamps.pop())
            return True
        return False

    _until(f"Prometheus sees {want}", seen, 120)
    return found[0]


def _withheld_while_catching_up(url: str, timeout: float) -> bool:
    """Poll /metrics and /readyz until served; True if a withheld phase was observed.

    A body that says the business families are withheld must hold none of them.
    """
    deadline = time.monotonic() + timeout
    observed = False
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{url}/metrics", timeout=10).text
            ready = httpx.get(f"{url}/readyz", timeout=5).json()
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        if "servicepulse_api_business_withheld 1.0" in text:
            observed = True
            assert STARTED not in text and PROCESSED not in text, "a partial sum was served"
        if ready["readmodel"]["business_metrics"] == "served":
            return observed
        time.sleep(0.05)
    pytest.fail(f"API not serving business metrics within {timeout:.0f}s", pytrace=False)


@pytest.fixture
def live_stack(kafka_broker: Broker, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(kafka_broker, tmp_path / "stack", demo_catalog_path(), partitions=4)
    try:
        yield stack
    finally:
        stack.stop_all()


def test_no_reset_and_exact_increase_across_api_and_processor_restarts(
    live_stack: Stack, tmp_path: Path
) -> None:
    stack = live_stack
    history = _write_history(stack)
    snapshot = tmp_path / "readmodel.snapshot"
    stack.processor(1)
    api = stack.api()
    stack.wait_ready(180)
    prom = start_prometheus(tmp_path / "prometheus", scrape_interval="1s")
    try:
        prom.scrape({pipeline.JOB_API: [stack.url.removeprefix("http://")]})
        sender = Sender(stack)
        try:
            _run(stack, api, prom, sender, snapshot, history)
        finally:
            sender.close()
    finally:
        prom.process.stop()


def _counted(stack: Stack, sender: Sender, timeout: float = 180) -> None:
    want = {c: float(n) for c, n in sender.sent.items()}
    _until(
        f"API counts {want}",
        lambda: _api_counts(stack.url) == want,
        timeout,
    )


def _run(
    stack: Stack,
    api: Any,
    prom: PromServer,
    sender: Sender,
    snapshot: Path,
    history: int,
) -> None:
    sender.batch(len(CELLS))  # every series exists before the window
    _counted(stack, sender)
    t_start = _last_sample(prom, dict(sender.sent))
    before = dict(sender.sent)

    sender.batch()
    _counted(stack, sender)

    # API SIGKILL, restarted without a snapshot: catches up over the whole history
    api.kill()
    sender.batch()
    api = stack.api(readmodel_snapshot=snapshot, snapshot_interval="PT1S")
    observed = _withheld_while_catching_up(stack.url, 180)
    assert observed, f"the read model caught up before a poll ({history} records)"
    _counted(stack, sender)
    _until("a snapshot saved", snapshot.exists, 60)
    sender.batch()
    _counted(stack, sender)

    # API SIGKILL, restarted from its snapshot (older than what it had served)
    api.kill()
    sender.batch()
    api = stack.api(readmodel_snapshot=snapshot, snapshot_interval="PT1S")
    _withheld_while_catching_up(stack.url, 180)
    ready = stack.wait_ready(60)
    assert ready["readmodel"]["restored_from_snapshot"]
    _counted(stack, sender)

    # processor SIGKILL and restart
    stack.processes["processor-1"].kill()
    sender.batch()
    stack.processor(1)
    _counted(stack, sender)

    # rebalance: a second instance joins, then leaves
    stack.processor(2)
    sender.batch()
    _counted(stack, sender)
    stack.processes["processor-2"].stop()
    sender.batch()
    _counted(stack, sender)

    t_end = _last_sample(prom, dict(sender.sent))
    window = f"{round((t_end - t_start) * 1000)}ms"
    checked = 0
    for name in _business_counters():
        resets = prom.query(f"resets({name}[{window}])", at=t_end)
        checked += len(resets)
        bad = {json.dumps(r["metric"], sort_keys=True): r["value"][1] for r in resets}
        assert all(v == "0" for v in bad.values()), (
            name,
            {k: v for k, v in bad.items() if v != "0"},
        )
    assert checked > len(CELLS), "hardly any business counter in the window"

    rows = prom.query(f"increase({STARTED}[{window}])", at=t_end)
    got = {
        (r["metric"]["agency"], r["metric"]["service"], r["metric"]["channel"]): r["value"][1]
        for r in rows
        if (r["metric"]["agency"], r["metric"]["service"], r["metric"]["channel"]) in CELLS
    }
    sent = {c: str(sender.sent[c] - before[c]) for c in CELLS}
    assert got == sent
    total = prom.query(f"sum(increase({PROCESSED}[{window}]))", at=t_end)
    assert total[0]["value"][1] == str(sum(sender.sent.values()) - sum(before.values()))


def _restore_seconds(url: str, timeout: float = 180) -> float:
    """The processor's total restore time, once it has finished a restore."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            samples = scrape(url)
        except httpx.HTTPError:
            samples = []
        got = {
            n: v for n, _, v in samples if n.startswith("servicepulse_processor_restore_seconds")
        }
        if got.get("servicepulse_processor_restore_seconds_count", 0) >= 1:
            return got["servicepulse_processor_restore_seconds_sum"]
        time.sleep(0.5)
    pytest.fail(f"no restore finished within {timeout:.0f}s", pytrace=False)


def test_a_restore_that_makes_progress_never_times_out(live_stack: Stack) -> None:
    """The restore limit is on a lack of progress: a restore longer than it succeeds."""
    stack = live_stack
    _write_history(stack)
    first = stack.processor(1)
    took = _restore_seconds(first.url)
    first.stop()
    # a limit well below the time the restore takes: a total-time limit would fail
    # every restore (and retry forever), a progress limit never fires while records come
    stall = max(0.2, took / 4)
    second = stack.processor(1, restore_timeout=f"PT{stall:.3f}S")
    sender = Sender(stack)
    try:
        sender.batch()
    finally:
        sender.close()
    stack.wait_processed(180)
    again = _restore_seconds(second.url)
    assert again > stall, f"inconclusive: the restore took {again:.2f}s, the limit {stall:.2f}s"
    assert "no record for" not in stack.logs()
