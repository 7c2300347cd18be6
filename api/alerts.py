"""The Alertmanager webhook receiver: alerts that reach people through the web view.

Alertmanager (``deploy/alertmanager/alertmanager.yml``) groups the alerts Prometheus
fires, inhibits warnings while the critical alert of the same agency fires, and posts each
notification to ``POST /v1/alerts/webhook`` (webhook payload version 4). The API keeps the
latest state of each alert (by fingerprint) in a bounded in-memory store, newest first,
and the inspectors' alerts page shows it. The store is a view, not a log: after a restart
Alertmanager's next notification (``repeat_interval``) fills it again.
"""

import threading
from collections import OrderedDict
from datetime import UTC, datetime

from pydantic import BaseModel, Field


class AlertIn(BaseModel):
    """One alert of an Alertmanager notification."""

    status: str = Field(examples=["firing"])
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class Notification(BaseModel):
    """An Alertmanager webhook notification (payload version 4)."""

    version: str = "4"
    groupKey: str = ""
    status: str = "firing"
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    alerts: list[AlertIn] = Field(max_length=1000)


class AlertState(BaseModel):
    """The latest known state of one alert."""

    fingerprint: str
    name: str
    status: str
    severity: str
    labels: dict[str, str]
    summary: str
    description: str
    starts_at: datetime | None
    ends_at: datetime | None
    received_at: datetime
    notifications: int = Field(description="notifications that carried this alert")


def _time(text: str) -> datetime | None:
    if not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class AlertStore:
    """Latest state per alert fingerprint, at most ``limit`` alerts (oldest dropped)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._alerts: OrderedDict[str, AlertState] = OrderedDict()
        self._lock = threading.Lock()
        self.received = 0
        self.version = 0

    def add(self, note: Notification, now: datetime | None = None) -> int:
        """Record a notification; returns how many alerts it carried."""
        now = now or datetime.now(UTC)
        with self._lock:
            self.received += 1
            self.version += 1
            for a in note.alerts:
                key = a.fingerprint or "|".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
                old = self._alerts.pop(key, None)
                self._alerts[key] = AlertState(
                    fingerprint=key,
                    name=a.labels.get("alertname", "?"),
                    status=a.status,
                    severity=a.labels.get("severity", ""),
                    labels=a.labels,
                    summary=a.annotations.get("summary", ""),
                    description=a.annotations.get("description", ""),
                    starts_at=_time(a.startsAt),
                    ends_at=_time(a.endsAt) if a.status == "resolved" else None,
                    received_at=now,
                    notifications=(old.notifications if old else 0) + 1,
                )
            while len(self._alerts) > self.limit:
                self._alerts.popitem(last=False)
        return len(note.alerts)

    def list(self) -> list[AlertState]:
        """Firing alerts first (critical before warning), then resolved; newest first."""
        with self._lock:
            items = list(reversed(self._alerts.values()))
        rank = {"critical": 0, "warning": 1}
        return sorted(items, key=lambda a: (a.status != "firing", rank.get(a.severity, 2)))
