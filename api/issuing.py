"""The API's use of the log of issued numbers: record each report, close due days.

:class:`IssuingService` is built by the app factory without I/O (:meth:`check` only
refuses a missing log key outside local mode), opened in the lifespan (the key is read,
or created in local mode) and then records every report before it is answered: a report
that could not be recorded is answered 503 and not handed out. A background thread
appends the ``day_close`` entries that are due every ``ledger_close_interval``; it runs
in every replica, and a replica that finds a day already closed with the same totals
appends nothing (the single-writer protocol of :mod:`api.ledger` orders the appends).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from api.errors import Unavailable
from api.ledger import (
    Ledger,
    LedgerError,
    close_days,
    deployment_key,
    issue,
    issued_headers,
    transactional_id,
)
from api.readmodel import ReadModel
from api.settings import ApiSettings
from contract.catalog import Catalog
from contract.errors import ConfigError
from contract.topics import Topics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssuingMetrics:
    """Counters of the log of issued numbers."""

    reports: Counter
    day_closes: Counter
    failures: Counter


def build_issuing_metrics(registry: CollectorRegistry) -> IssuingMetrics:
    """Register the counters in ``registry``."""
    reports = Counter(
        "servicepulse_api_reports_issued",
        "Reports recorded in the log and handed out, by format",
        ["format"],
        registry=registry,
    )
    for fmt in ("json", "csv", "html"):
        reports.labels(fmt)
    day_closes = Counter(
        "servicepulse_api_day_closes",
        "Day-close entries appended to the log (restatements of closed days included)",
        registry=registry,
    )
    failures = Counter(
        "servicepulse_api_log_failures",
        "Appends to the log that failed (a report answered 503, or a close retried later)",
        registry=registry,
    )
    return IssuingMetrics(reports, day_closes, failures)


class IssuingService:
    """Records reports and closes days in the log (see the module docstring)."""

    def __init__(
        self,
        settings: ApiSettings,
        topics: Topics,
        model: ReadModel,
        catalog: Catalog,
        metrics: IssuingMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topics.ledger
        self._txn_id = transactional_id(topics.prefix)
        self._model = model
        self._catalog = catalog
        self._metrics = metrics or build_issuing_metrics(CollectorRegistry())
        self._ledger: Ledger | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """Whether reports are recorded."""
        return self._settings.ledger_enabled

    def check(self) -> None:
        """Refuse a missing log key outside local mode (before the API serves anything)."""
        path = self._settings.ledger_key_path
        if self.enabled and self._settings.mode != "local" and not path.exists():
            raise ConfigError(
                f"SERVICEPULSE_LEDGER_KEY: the log signing key {str(path)!r} does not exist; "
                "create it with `servicepulse log init-key` (local mode creates one itself)"
            )

    def start(self) -> None:
        """Read (or, in local mode, create) the key; start the day-closing thread."""
        if not self.enabled:
            return
        key = deployment_key(self._settings.ledger_key_path, self._settings.mode)
        self._ledger = Ledger(
            self._settings,
            self._topic,
            key,
            self._txn_id,
            timeout=self._settings.request_timeout.total_seconds(),
        )
        interval = self._settings.ledger_close_interval.total_seconds()
        if interval > 0:
            self._thread = threading.Thread(
                target=self._close_loop, args=(interval,), name="api-ledger-close", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._ledger is not None:
            self._ledger.close()

    def issue(self, body: bytes, fmt: str, params: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Record a report; the bytes to answer and headers naming its log entry.

        Raises:
            Unavailable: the log could not be written; the report is not handed out.
        """
        if not self.enabled:
            return body, {}
        ledger = self._ledger
        if ledger is None:
            raise Unavailable("the log of issued reports is not open yet", retry_after=5)
        try:
            out, entry = issue(ledger, body, fmt, params, "api")
        except LedgerError as exc:
            self._metrics.failures.inc()
            logger.warning("report not issued: %s", exc)
            raise Unavailable(
                "the report could not be recorded in the log of issued reports; it was not issued",
                retry_after=int(self._settings.kafka_retry_after.total_seconds()),
            ) from exc
        self._metrics.reports.labels(fmt).inc()
        return out, issued_headers(entry)

    def _close_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._ledger is None or not self._model.status.ready:
                continue
            try:
                entries = close_days(
                    self._ledger,
                    self._settings,
                    self._model,
                    self._catalog,
                    self._settings.ledger_close_after,
                )
            except LedgerError as exc:
                self._metrics.failures.inc()
                logger.warning("closing days in the log failed (retried later): %s", exc)
                continue
            self._metrics.day_closes.inc(len(entries))
            for e in entries:
                logger.info(
                    "day closed in the log day=%s seq=%d restates=%s",
                    e.body["day"],
                    e.seq,
                    e.body.get("restates"),
                )
