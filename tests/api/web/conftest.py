"""A real stack for the web view: broker, processed data, the API, Chromium by Playwright.

``web_stack`` (one per module) writes 14 days of plausible aggregates up to today (what
the processor writes, as tests/fixtures/api.py makes them) and dead letters, starts a
real processor (``servicepulse process``) on the same topics for live changes, and runs
the API under uvicorn with a short live interval. ``browser`` is the Debian ``chromium``
driven by Playwright (never ``playwright install``); ``watch`` records every request a
page makes and answers anything not addressed to the API with an abort, so a page that
reached outside the machine fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.web.settings import WebSettings
from contract import aggregates as agg
from contract.aggregates import Rollup
from contract.catalog import load_catalog
from contract.settings import CommonSettings
from contract.topics import Topics
from servicepulse.stack import free_port
from tests.fixtures.api import (
    ApiServer,
    api_settings,
    demo_records,
    running_api,
    write_transactionally,
)
from tests.fixtures.kafka import Broker, make_topics

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: A month far enough back that only the small cell written for it is there.
SMALL_DAY_BACK = 200


@dataclass
class WebStack:
    """The running stack of a web test module."""

    server: ApiServer
    topics: Topics
    common: CommonSettings
    inspector: str
    agency: str
    days: list[str]
    small_day: str
    processor: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def scorecard(self, **params: Any) -> dict[str, Any]:
        with self.server.client(self.inspector) as c:
            resp = c.get("/v1/scorecard", params=params)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


def _dead_letters(days: list[str]) -> list[tuple[bytes, bytes]]:
    dead = [("minsoc", "bad_format")] * 12 + [("zags", "unknown_step")] * 4
    return [
        (
            a.encode(),
            json.dumps(
                {
                    "reason": r,
                    "field": "",
                    "message": "",
                    "agency": a,
                    "source": "api",
                    "received_at": f"{days[i % len(days)]}T12:00:00+05:00",
                }
            ).encode(),
        )
        for i, (a, r) in enumerate(dead)
    ]


def _small_cell(day: str) -> tuple[bytes, bytes]:
    # one agency with 2 journeys in an otherwise empty month: a small cell to suppress
    r = Rollup(events=4, started=2, started_digital=2, submitted=1, abandoned=1)
    r.feedback = {"5": 1}
    key = agg.RollupKey(0, day, agg.Dims("arhiv", "", "75701000", "portal", ""))
    return key.encode(), agg.encode(r)


#: the service whose deadlines fall past the production calendar in the web stack's data
BEYOND_SERVICE = "large_family_status"


def _beyond_calendar(day: str) -> tuple[bytes, bytes]:
    # deadlines set in the period that end after the catalog's calendar (a municipality
    # the demo records leave out, so no other cell is overwritten)
    r = Rollup(beyond_calendar=6)
    key = agg.RollupKey(0, day, agg.Dims("minsoc", BEYOND_SERVICE, "75707000", "portal", ""))
    return key.encode(), agg.encode(r)


def _processor(topics: Topics, common: CommonSettings, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SERVICEPULSE_KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "SERVICEPULSE_TOPIC_PREFIX": topics.prefix,
        "SERVICEPULSE_GROUP_ID": f"{topics.prefix}-group",
        "SERVICEPULSE_STACK_DIR": str(tmp),
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp / "processor.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servicepulse",
            "process",
            "--metrics-port",
            str(free_port()),
            "--instance",
            "web",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def web_stack(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    tmp = tmp_path_factory.mktemp("web")
    topics, common = make_topics(kafka_broker, 2)
    cat = load_catalog()
    today = datetime.now(cat.tz).date()
    days = [(today - timedelta(days=13 - i)).isoformat() for i in range(14)]
    small_day = (today - timedelta(days=SMALL_DAY_BACK)).isoformat()
    write_transactionally(
        common,
        topics.aggregates,
        [*demo_records(days), _small_cell(small_day), _beyond_calendar(days[-2])],
    )
    write_transactionally(common, topics.deadletter, _dead_letters(days))
    web = WebSettings(live_interval=2, alerts_kept=50)
    proc = _processor(topics, common, tmp)
    try:
        with running_api(api_settings(common, tmp), web=web) as server:
            server.wait_ready(60)
            yield WebStack(
                server=server,
                topics=topics,
                common=common,
                inspector=server.inspector_token(),
                agency=server.agency_token("minsoc"),
                days=days,
                small_day=small_day,
                processor=proc,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Watch:
    """Every URL a browser context asked for, and those that were not the API's."""

    base: str
    seen: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_context(browser: Any, base: str, *, phone: bool = False) -> tuple[Any, Watch]:
    """A fresh browser context (no cookies) whose every request is checked."""
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    ctx = browser.new_context(viewport=size, locale="ru-RU", is_mobile=phone, has_touch=phone)
    watch = Watch(base)

    def route(r: Any) -> None:
        url = r.request.url
        watch.seen.append(url)
        if url.startswith(base + "/") or url == base or url.startswith("data:"):
            r.continue_()
        else:
            watch.outside.append(url)
            r.abort()

    ctx.route("**/*", route)
    return ctx, watch


def sign_in(page: Any, base: str, token: str, next_path: str = "/") -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"{base}/login?next={next_path}")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


def number(text: str) -> float:
    """A number as the pages print it (thin-space thousands, decimal comma)."""
    cleaned = re.sub(r"[\s\u202f\u00a0%]", "", text).replace(",", ".").replace("−", "-")
    return float(cleaned)


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s")
        time.sleep(0.5)


def get(url: str, **kw: Any) -> httpx.Response:
    return httpx.get(url, timeout=30, **kw)
