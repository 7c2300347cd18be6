"""Upload the dashboards to a running Grafana over its HTTP API (grafana-client).

Idempotent: the folder and the Prometheus data source are created only when missing
(found by their fixed uids), dashboards are saved with ``overwrite`` under their fixed
uids, so pushing twice leaves Grafana as pushing once. Errors say what failed and what to
do: Grafana unreachable, token rejected (401), token without the right (403).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)

from contract.errors import ServicePulseError

logger = logging.getLogger(__name__)

FOLDER_UID: Final = "servicepulse"
FOLDER_TITLE: Final = "ServicePulse"
_T = TypeVar("_T")


class PushError(ServicePulseError):
    """Grafana could not be reached or refused a step of the upload."""


@dataclass
class PushResult:
    """What a push did."""

    folder_created: bool = False
    datasource_created: bool = False
    dashboards: list[str] = field(default_factory=list)


_ERRORS = (GrafanaException, niquests.exceptions.RequestException)


def _explain(what: str, url: str, exc: Exception) -> PushError:
    """A :class:`PushError` that says which step failed and what to do about it."""
    if isinstance(exc, GrafanaUnauthorizedError):
        return PushError(
            f"{what}: Grafana at {url} rejected the token (HTTP 401); "
            "create a service-account token and pass it with --token"
        )
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return PushError(
            f"{what}: the token may not do this at {url} (HTTP 403); it needs the Editor "
            "role for dashboards and folders, and Admin to create a data source"
        )
    if isinstance(exc, GrafanaException) and exc.status_code:
        return PushError(f"{what}: Grafana at {url} answered HTTP {exc.status_code}: {exc.message}")
    return PushError(f"{what}: cannot reach Grafana at {url}: {exc}")


def _call(what: str, url: str, fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except _ERRORS as exc:
        raise _explain(what, url, exc) from exc


def _exists(what: str, url: str, fn: Callable[[], object]) -> bool:
    """True if the lookup succeeds, False on HTTP 404."""
    try:
        fn()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise _explain(what, url, exc) from exc
    except _ERRORS as exc:
        raise _explain(what, url, exc) from exc
    return True


def push(
    grafana_url: str,
    token: str,
    dashboards: Mapping[str, dict[str, Any]],
    *,
    datasource_uid: str,
    prometheus_url: str,
    folder_title: str = FOLDER_TITLE,
    timeout: float = 10.0,
) -> PushResult:
    """Create the folder and data source if missing, then upload every dashboard.

    Args:
        grafana_url: base URL of Grafana, e.g. ``http://grafana:3000``.
        token: a service-account token (Editor; Admin if the data source must be created).
        dashboards: uid -> dashboard JSON model.
        datasource_uid: uid the dashboards' data source variable defaults to.
        prometheus_url: URL of Prometheus as Grafana's server reaches it.
        folder_title: the folder the dashboards go into.
        timeout: seconds per HTTP request.
    """
    api = GrafanaApi.from_url(grafana_url, credential=token, timeout=timeout)
    result = PushResult()
    url = grafana_url
    if not _exists("look up folder", url, lambda: api.folder.get_folder(FOLDER_UID)):
        _call("create folder", url, lambda: api.folder.create_folder(folder_title, uid=FOLDER_UID))
        result.folder_created = True
    if not _exists(
        "look up data source", url, lambda: api.datasource.get_datasource_by_uid(datasource_uid)
    ):
        _call(
            "create data source",
            url,
            lambda: api.datasource.create_datasource(
                {
                    "name": "Prometheus (ServicePulse)",
                    "uid": datasource_uid,
                    "type": "prometheus",
                    "access": "proxy",
                    "url": prometheus_url,
                    "jsonData": {"timeInterval": "15s", "httpMethod": "POST"},
                }
            ),
        )
        result.datasource_created = True
    for uid, model in dashboards.items():
        body = {
            "dashboard": {**model, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "servicepulse dashboards push",
        }
        _call(f"upload dashboard {uid}", url, partial(api.dashboard.update_dashboard, body))
        result.dashboards.append(uid)
        logger.info("uploaded dashboard uid=%s", uid)
    return result
