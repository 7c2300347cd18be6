"""The processor's own metrics: operational only, never a business family."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from contract.metrics import FAMILIES
from processors.metrics import build_metrics


def test_processor_metrics_are_operational_only() -> None:
    registry = CollectorRegistry()
    m = build_metrics(registry)
    m.events.inc(3)
    m.deadletters.labels("invalid_json").inc()
    m.lag.labels("4").set(17)
    text = generate_latest(registry).decode()
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert all(n.startswith("servicepulse_processor_") for n in names)
    assert not names & {f.full for f in FAMILIES}
    assert registry.get_sample_value("servicepulse_processor_events_total") == 3
    assert (
        registry.get_sample_value(
            "servicepulse_processor_deadletters_total", {"reason": "invalid_json"}
        )
        == 1
    )
    assert registry.get_sample_value("servicepulse_processor_lag_records", {"partition": "4"}) == 17


def test_a_stuck_poll_is_interrupted_by_the_watchdog_signal() -> None:
    import signal
    import threading
    import time
    from types import SimpleNamespace

    import pytest

    from contract.catalog import Catalog
    from contract.methodology import load_methodology
    from processors.errors import PollStuckError
    from processors.runner import Processor
    from processors.settings import ProcessorSettings
    from tests.fixtures.streams import CATALOG_PATH

    proc = Processor(
        ProcessorSettings(instance_id="t"),
        Catalog.from_file(CATALOG_PATH),
        load_methodology().standards,
        build_metrics(CollectorRegistry()),
    )
    session = SimpleNamespace(call_started=time.monotonic(), abandon_consumer=False)
    proc._session = session  # type: ignore[assignment]
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: proc.interrupt_stuck_poll())
    try:
        proc.interrupt_stuck_poll()  # not asked: nothing happens
        blocked = threading.Event()  # stands for kafka-python's wait that never ends
        main = threading.main_thread().ident
        assert main is not None

        def watchdog() -> None:
            time.sleep(0.2)
            proc.abort_call = True
            signal.pthread_kill(main, signal.SIGUSR2)

        threading.Thread(target=watchdog, daemon=True).start()
        with pytest.raises(PollStuckError):
            blocked.wait(10)
        assert session.abandon_consumer
    finally:
        signal.signal(signal.SIGUSR2, old)
