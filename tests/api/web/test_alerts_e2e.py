"""Alerts that reach people: real Prometheus -> real Alertmanager -> the API's webhook ->
the inspectors' alerts page in Chromium. Grouping by alert and agency and the inhibition
of a warning by the critical alert of the same agency are Alertmanager's own doing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.web.settings import WebSettings
from servicepulse import alertmanager
from tests.api.web.conftest import open_context, sign_in
from tests.fixtures.alertmanager import (
    alertmanager_for,
    prometheus_alerting,
    reload_rules,
    wait_for,
)
from tests.fixtures.api import api_settings, running_api
from tests.fixtures.kafka import Broker, make_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


def _rule(severity: str, agency: str) -> dict[str, Any]:
    return {
        "alert": "WebViewTestAlert",
        "expr": "vector(1)",
        "labels": {"severity": severity, "agency": agency},
        "annotations": {"summary": f"{agency}: тестовое оповещение ({severity})"},
    }


def test_alerts_reach_the_alerts_page_grouped_and_inhibited(
    kafka_broker: Broker, browser: Any, tmp_path: Path
) -> None:
    _topics, common = make_topics(kafka_broker, 1)
    web = WebSettings(live_interval=2)
    with running_api(api_settings(common, tmp_path), web=web) as server:
        hook = f"{server.url}{alertmanager.WEBHOOK_PATH}"
        (tmp_path / "am").mkdir()
        (tmp_path / "prom").mkdir()
        critical = [_rule("critical", "minsoc")]
        rules = [*critical, _rule("warning", "minsoc"), _rule("warning", "zags")]
        with (
            alertmanager_for(tmp_path / "am", hook) as am,
            prometheus_alerting(tmp_path / "prom", critical, am) as prom,
        ):
            store = server.app.state.services.web.alerts
            # The warnings come once Alertmanager holds the critical alert, as a slow
            # window's warning follows the fast window's critical: Alertmanager inhibits
            # only against alerts it already holds, and which of two alerts of one
            # evaluation reaches it first is not the test's to decide.
            wait_for(
                lambda: (
                    ("minsoc", "critical")
                    in {(a.labels["agency"], a.severity) for a in store.list()}
                ),
                90,
                "Alertmanager did not deliver the critical alert",
            )
            reload_rules(prom, tmp_path / "prom", rules)

            def delivered() -> bool:
                names = {(a.labels["agency"], a.severity) for a in store.list()}
                return {("minsoc", "critical"), ("zags", "warning")} <= names

            wait_for(delivered, 90, "Alertmanager did not deliver both groups")

            # Alertmanager holds the minsoc warning back: inhibited by its critical alert.
            # It marks an alert inhibited when that alert's group is next evaluated, which
            # a busy CPU delays past the delivery of the other groups: wait for the mark.
            def minsoc_warning() -> dict[str, Any]:
                alerts = httpx.get(f"{am}/api/v2/alerts", timeout=10).json()
                return next(
                    a
                    for a in alerts
                    if a["labels"]["agency"] == "minsoc" and a["labels"]["severity"] == "warning"
                )

            wait_for(
                lambda: bool(minsoc_warning()["status"]["inhibitedBy"]),
                90,
                "Alertmanager did not inhibit minsoc's warning behind its critical alert",
            )
            groups = httpx.get(f"{am}/api/v2/alerts/groups", timeout=10).json()
            assert {g["labels"]["agency"] for g in groups} == {"minsoc", "zags"}
            assert ("minsoc", "warning") not in {
                (a.labels["agency"], a.severity) for a in store.list()
            }

            ctx, watch = open_context(browser, server.url)
            page = ctx.new_page()
            sign_in(page, server.url, server.inspector_token(), "/alerts")
            assert page.url.endswith("/alerts")
            items = page.locator("li.alert")
            assert items.count() == 2
            assert "критическое" in items.nth(0).inner_text()
            # the agency's code in the rule's summary reads as the catalog's short name
            first = items.nth(0).inner_text()
            assert "Минсоц: тестовое оповещение (critical)" in first
            assert "ведомство: Минсоц" in first and "agency=" not in first
            assert "Госкомитет ЗАГС: тестовое оповещение (warning)" in page.inner_text("main")
            ctx.close()
            assert watch.outside == []
        # an agency may not see the alerts page
        ctx, _ = open_context(browser, server.url)
        page = ctx.new_page()
        sign_in(page, server.url, server.agency_token("zags"))
        resp = page.goto(server.url + "/alerts")
        assert resp is not None and resp.status == 403
        ctx.close()


def test_the_shipped_alertmanager_config_is_valid_and_current() -> None:
    shipped = ROOT / "deploy/alertmanager/alertmanager.yml"
    body = "\n".join(line for line in shipped.read_text().splitlines() if not line.startswith("#"))
    assert body.strip() == alertmanager.render_config(alertmanager.COMPOSE_WEBHOOK).strip()
    amtool = subprocess.run(
        ["amtool", "check-config", str(shipped)], capture_output=True, text=True, check=False
    )
    if amtool.returncode == 127:
        pytest.skip("amtool is not installed")
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr
