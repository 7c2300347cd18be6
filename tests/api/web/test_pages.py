"""Every page of the web view in headless Chromium against a real stack with data.

Pages render without console errors; their numbers equal ``/v1/scorecard``; a live page
changes when the processor processes new events; an agency cannot open another agency's
page or data; public pages show no suppressed cell; no page asks anything of another
host. With ``SERVICEPULSE_SCREENSHOTS=1`` each page is saved at desktop and phone width
into docs/screenshots/, and three sections of the region's printable report beside them.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.web import ru
from contract.catalog import load_catalog
from tests.api.web.conftest import (
    BEYOND_SERVICE,
    WebStack,
    number,
    open_context,
    sign_in,
    wait_until,
)
from tests.fixtures.api import event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
SAVE_SHOTS = os.environ.get("SERVICEPULSE_SCREENSHOTS") == "1"

#: (name, path, scope, code) of the signed-in pages; scope None: no scorecard on the page.
PAGES = [
    ("overview", "/", "region", None),
    ("agency", "/agency/minsoc", "agency", "minsoc"),
    ("service", "/service/large_family_status", "service", "large_family_status"),
    ("life-situation", "/life/large_family", "life_situation", "large_family"),
    ("offices", "/offices", None, None),
    ("quality", "/quality", None, None),
    ("perceived", "/perceived", None, None),
    ("alerts", "/alerts", None, None),
]


def check_scorecard(page: Any, card: dict[str, Any]) -> None:
    """The page's index and every component equal the scorecard API's."""
    shown = page.get_attribute(".score .index", "data-index")
    if card["index"] is None:
        assert shown == ""
    else:
        assert float(shown) == pytest.approx(card["index"], abs=1e-9)
        assert page.inner_text(".score .index").strip() == ru.num(card["index"], 1)
    for comp in card["components"]:
        row = page.locator(f'tr[data-component="{comp["code"]}"]')
        num, den = row.get_attribute("data-num"), row.get_attribute("data-den")
        assert (num or None) == (None if comp["numerator"] is None else str(comp["numerator"]))
        assert (den or None) == (None if comp["denominator"] is None else str(comp["denominator"]))
        cells = row.locator("td").all_inner_texts()
        if comp["suppressed"]:
            assert cells[1:] == ["скрыто"] * 3, cells
        elif comp["denominator"]:
            assert number(cells[2]) == comp["denominator"]
            assert number(cells[1]) == comp["numerator"]


def _notify(base: str) -> None:
    """An Alertmanager-shaped notification to the webhook (the real chain: test_alerts_e2e)."""
    now = datetime.now(UTC).isoformat()

    def alert(sev: str, status: str, summary: str) -> dict[str, Any]:
        return {
            "status": status,
            "labels": {
                "alertname": "ServicePulseOfficeWaitBelowStandard",
                "severity": sev,
                "agency": "mfc" if sev == "critical" else "zags",
            },
            "annotations": {
                "summary": summary,
                "description": "За 1\u00a0ч и за 5\u00a0мин доля нарушений 41% при цели 90%.",
            },
            "startsAt": now,
            "endsAt": now if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": uuid.uuid4().hex[:16],
        }

    body = {
        "version": "4",
        "status": "firing",
        "receiver": "servicepulse-api",
        "alerts": [
            alert("critical", "firing", "mfc: ожидание в очереди дольше норматива"),
            alert("warning", "resolved", "zags: ожидание в очереди дольше норматива"),
        ],
    }
    assert httpx.post(f"{base}/v1/alerts/webhook", json=body, timeout=10).status_code == 200


def shot(page: Any, name: str, phone: bool) -> None:
    if SAVE_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}-{'phone' if phone else 'desktop'}.png"))


#: (screenshot, heading) of the report sections docs/API.md shows.
REPORT_SECTIONS = [
    ("report-funnels", "4. Воронки заполнения: где заявители бросают"),
    ("report-life-situations", "4а. Жизненные ситуации: случаи целиком, по всем ведомствам"),
    ("report-offices", "4б. Офисы: ожидание в очереди"),
]


def shot_section(page: Any, name: str, heading: str) -> None:
    """One section of the report page, from its heading to the next, at most 1,100 px."""
    h2 = page.locator("h2")
    texts = h2.all_inner_texts()
    i = texts.index(heading)
    top = h2.nth(i).bounding_box()
    bottom = h2.nth(i + 1).bounding_box()
    # a heading is as wide as the page's content: the clip is that column and a margin
    clip = {
        "x": max(0, top["x"] - 16),
        "y": top["y"] - 16,
        "width": top["width"] + 32,
        "height": min(1100, bottom["y"] - top["y"]),
    }
    page.screenshot(path=str(SHOTS / f"{name}.png"), clip=clip, full_page=True)


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_every_page_renders_with_the_scorecards_numbers(
    web_stack: WebStack, browser: Any, phone: bool
) -> None:
    ctx, watch = open_context(browser, web_stack.url, phone=phone)
    errors: list[str] = []
    page = ctx.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, web_stack.url, web_stack.inspector)
    assert page.url.rstrip("/") == web_stack.url
    _notify(web_stack.url)  # something for the alerts page to show
    for name, path, scope, code in PAGES:
        resp = page.goto(web_stack.url + path)
        assert resp is not None and resp.status == 200, (path, resp and resp.status)
        assert page.locator("h1").count() == 1, path
        assert page.locator("html").get_attribute("lang") == "ru"
        if scope is not None:
            params = {"scope": scope, **({"code": code} if code else {})}
            check_scorecard(page, web_stack.scorecard(**params))
            assert page.locator("svg.chart").count() >= 1, path
            # the report is one click away and opens with the session cookie alone
            assert page.locator('a[href*="format=html"]').count() == 1
        shot(page, name, phone)
    # the ranking equals each agency's own scorecard
    page.goto(web_stack.url + "/")
    rows = page.locator("table.ranking tbody tr")
    assert rows.count() >= 5
    for i in range(rows.count()):
        row = rows.nth(i)
        code = row.get_attribute("data-agency")
        card = web_stack.scorecard(scope="agency", code=code)
        shown = row.get_attribute("data-index")
        assert (float(shown) if shown else None) == pytest.approx(card["index"])
    # the region's printable report, one click from the overview, with the sections the
    # web pages have no table for
    page.click('a[href*="format=html"]')
    page.wait_for_load_state()
    headings = page.locator("h2").all_inner_texts()
    for name, heading in REPORT_SECTIONS:
        assert heading in headings, (heading, headings)
        if SAVE_SHOTS and not phone:
            shot_section(page, name, heading)
    # public pages and the API docs, signed out
    ctx.clear_cookies()
    for name, path in (("open-data", "/open/"), ("docs", "/docs")):
        resp = page.goto(web_stack.url + path)
        assert resp is not None and resp.status == 200, path
        if name == "docs":
            page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
            assert "ServicePulse API" in page.inner_text(".swagger-ui .info .title")
        shot(page, name, phone)
    page.goto(web_stack.url + "/login")
    shot(page, "login", phone)
    ctx.close()
    assert errors == []
    assert watch.outside == [], watch.outside
    assert len(watch.seen) > 20


def test_report_is_one_click_away_with_the_perceived_section(
    web_stack: WebStack, browser: Any
) -> None:
    ctx, watch = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.inspector, "/agency/minsoc")
    with page.expect_navigation():
        page.click('a[href*="format=html"]')
    assert "Отчёт о качестве" in page.title()
    assert page.locator("text=Оценки и измерения").count() >= 1
    with httpx.Client(base_url=web_stack.url, cookies=_cookies(ctx)) as c:
        csv = c.get(
            "/v1/reports/period", params={"scope": "agency", "code": "minsoc", "format": "csv"}
        )
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    ctx.close()
    assert watch.outside == []


def test_deadlines_past_the_calendar_are_marked_on_the_page_and_in_the_report(
    web_stack: WebStack, browser: Any
) -> None:
    until = load_catalog().calendar_until
    assert until is not None
    shown_until = until.strftime("%d.%m.%Y")
    ctx, _ = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.inspector, f"/service/{BEYOND_SERVICE}")
    note = page.locator("p[data-beyond-calendar]")
    assert note.count() == 1 and note.is_visible()
    text = note.inner_text()
    assert shown_until in text and "6" in text and "предварительная" in text
    card = web_stack.scorecard(scope="service", code=BEYOND_SERVICE)
    assert card["deadlines_beyond_calendar"] == 6
    assert card["calendar_until"] == until.isoformat()
    # the printed report says it once at the top and marks the service
    with page.expect_navigation():
        page.click('a[href*="format=html"]')
    assert page.locator("div.warn[data-beyond-calendar]").count() == 1
    assert shown_until in page.inner_text("div.warn[data-beyond-calendar]")
    assert page.locator("td span[data-beyond-calendar]").count() == 1
    # a scope without such deadlines carries no mark
    page.goto(web_stack.url + "/agency/zags")
    assert page.locator("[data-beyond-calendar]").count() == 0
    ctx.close()


def _report_offices(stack: WebStack, **params: str) -> dict[str, tuple[Any, Any]]:
    """(visits, share within the standard) per office of the report's office section."""
    with stack.server.client(stack.inspector) as c:
        resp = c.get("/v1/reports/period", params=params)
    assert resp.status_code == 200, resp.text
    return {o["code"]: (o["visits"], o["within_standard"]["value"]) for o in resp.json()["offices"]}


def _page_offices(page: Any, table: str) -> dict[str, tuple[Any, Any]]:
    out = {}
    rows = page.locator(f"table.{table} tbody tr[data-office]")
    for i in range(rows.count()):
        row = rows.nth(i)
        visits, within = row.get_attribute("data-visits"), row.get_attribute("data-within")
        cells = row.locator("td").all_inner_texts()
        if visits:
            assert number(cells[1]) == int(visits)
        else:
            assert cells[1] == "скрыто"
        out[row.get_attribute("data-office")] = (
            int(visits) if visits else None,
            float(within) if within else None,
        )
    return out


def test_office_page_shows_each_office_of_the_period_as_the_report_does(
    web_stack: WebStack, browser: Any
) -> None:
    cat = load_catalog()
    ctx, watch = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.inspector)
    period = {"from": web_stack.days[0], "to": web_stack.days[-1]}
    # a part of the data: the period changes the numbers (they are not all-time)
    part = {"from": web_stack.days[7], "to": web_stack.days[-1]}
    shown = {}
    for when in (period, part):
        page.goto(f"{web_stack.url}/offices?from={when['from']}&to={when['to']}")
        shown[when["from"]] = _page_offices(page, "offices")
        assert shown[when["from"]] == _report_offices(web_stack, scope="region", **when)
    whole, half = shown[period["from"]], shown[part["from"]]
    assert {o for o in whole if cat.offices[o].agency == "mfc"} and "zags-chel-dvorets" in whole
    assert sum(v or 0 for v, _ in half.values()) < sum(v or 0 for v, _ in whole.values())
    assert page.locator("svg.chart line.target").count() == 1
    assert page.locator("table.munis tbody tr[data-municipality]").count() >= 1
    # measured against perceived: the same offices, satisfaction by municipality only
    page.goto(f"{web_stack.url}/perceived?from={part['from']}&to={part['to']}")
    assert _page_offices(page, "office-gaps") == half
    assert page.locator("text=удовлетворённость показана по муниципалитетам").count() == 1
    # an agency sees the offices of its own visits only, and not another agency's
    page.goto(f"{web_stack.url}/offices?agency=zags&from={period['from']}&to={period['to']}")
    zags = _page_offices(page, "offices")
    assert "zags-chel-dvorets" in zags
    assert zags == _report_offices(web_stack, scope="agency", code="zags", **period)
    ctx.close()
    for token, agency in (
        (web_stack.server.agency_token("zags"), "zags"),
        (web_stack.agency, "minsoc"),
    ):
        ctx, watch = open_context(browser, web_stack.url)
        page = ctx.new_page()
        sign_in(page, web_stack.url, token)
        page.goto(f"{web_stack.url}/offices?from={period['from']}&to={period['to']}")
        own = _page_offices(page, "offices")
        assert own and own == _report_offices(web_stack, scope="agency", code=agency, **period)
        # the region's numbers are not an agency's: its visits only, another's office absent
        assert all(own[o][0] is None or own[o][0] <= (whole[o][0] or 0) for o in own)
        assert ("zags-chel-dvorets" in own) == (agency == "zags"), own
        ctx.close()
        assert watch.outside == []


def _cookies(ctx: Any) -> dict[str, str]:
    return {c["name"]: c["value"] for c in ctx.cookies()}


def test_pages_of_periods_at_the_ends_of_the_calendar(web_stack: WebStack, browser: Any) -> None:
    # periods the API accepts: each page says there is nothing, never a 500
    ctx, _ = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.inspector)
    for when in ("from=0001-01-01&to=0001-01-05", "from=9999-12-20&to=9999-12-31"):
        for _name, path, _scope, _code in PAGES:
            resp = page.goto(f"{web_stack.url}{path}?{when}")
            assert resp is not None and resp.status == 200, (path, when, resp and resp.status)
    ctx.close()


def test_live_page_changes_when_new_events_are_processed(web_stack: WebStack, browser: Any) -> None:
    ctx, watch = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.inspector)
    page.evaluate("window.__notReloaded = true")
    before = web_stack.scorecard()["journeys_started"]
    den = page.get_attribute('tr[data-component="digital"]', "data-den")
    assert int(den) == before
    # a municipality the written aggregates do not use: the processor's cells are new
    n = 7
    now = datetime.now(UTC)
    events = [
        event(
            "journey.started",
            municipality="75701310",
            channel="portal",
            occurred_at=now,
            journey=f"j-live-{uuid.uuid4().hex[:10]}",
        )
        for _ in range(n)
    ]
    with web_stack.server.client(web_stack.agency) as c:
        resp = c.post("/v1/events", json=events)
    assert resp.status_code == 200 and resp.json()["accepted"] == n, resp.text

    def changed() -> bool:
        value = page.get_attribute('tr[data-component="digital"]', "data-den")
        return value is not None and int(value) == before + n

    wait_until(changed, 180, "the open page did not show the processed events")
    assert page.evaluate("window.__notReloaded") is True  # swapped in, not reloaded
    assert web_stack.scorecard()["journeys_started"] == before + n
    check_scorecard(page, web_stack.scorecard())
    ctx.close()
    assert watch.outside == []


def test_an_agency_sees_only_its_own_agency(web_stack: WebStack, browser: Any) -> None:
    ctx, watch = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.agency)
    assert page.url.startswith(web_stack.url + "/agency/minsoc")
    check_scorecard(page, web_stack.scorecard(scope="agency", code="minsoc"))
    for path in ("/service/large_family_status", "/offices", "/quality", "/perceived"):
        resp = page.goto(web_stack.url + path)
        assert resp is not None and resp.status == 200, path
    # the region overview is the agency's own page
    page.goto(web_stack.url + "/")
    assert page.url.startswith(web_stack.url + "/agency/minsoc")
    forbidden = [
        "/agency/zags",
        "/service/zags_birth",
        "/offices?agency=zags",
        "/life/large_family",
        "/alerts",
        "/v1/reports/period?scope=agency&code=zags&format=html",
        "/v1/reports/period?scope=service&code=zags_birth",
        "/v1/reports/period?scope=region&format=csv",
    ]
    for path in forbidden:
        resp = page.goto(web_stack.url + path)
        assert resp is not None and resp.status == 403, path
        body = resp.json()
        assert body["error"]["code"] == "forbidden" and body["error"]["message"], body
    # the JSON API still wants a bearer token: the cookie opens the report routes only
    with httpx.Client(base_url=web_stack.url, cookies=_cookies(ctx)) as c:
        assert (
            c.get("/v1/scorecard", params={"scope": "agency", "code": "minsoc"}).status_code == 401
        )
        own = c.get("/v1/reports/period", params={"scope": "agency", "code": "minsoc"})
        assert own.status_code == 200 and own.json()["code"] == "minsoc"
    ctx.close()
    assert watch.outside == []


def test_session_cookie_is_httponly_strict_and_forms_need_the_csrf_token(
    web_stack: WebStack, browser: Any
) -> None:
    ctx, _watch = open_context(browser, web_stack.url)
    page = ctx.new_page()
    sign_in(page, web_stack.url, web_stack.inspector)
    cookie = next(c for c in ctx.cookies() if c["name"] == "sp_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert web_stack.inspector not in cookie["value"]
    assert page.evaluate("document.cookie") == ""
    with httpx.Client(base_url=web_stack.url, cookies=_cookies(ctx)) as c:
        # a form posted without (or with another) CSRF token is refused, the session stays
        assert c.post("/logout", data={"csrf": "forged"}).status_code == 403
        assert c.get("/", follow_redirects=False).status_code == 200
        # a cookie with a changed signature is nobody's
        c.cookies.set("sp_session", cookie["value"][:-2] + "xx")
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # sign-in needs the form's own nonce (login CSRF)
    r = httpx.post(f"{web_stack.url}/login", data={"token": web_stack.inspector, "csrf": "x"})
    assert r.status_code == 403
    # signing out through the page's form ends the session
    page.goto(web_stack.url + "/")
    with page.expect_navigation():
        page.click(".logout button")
    assert "/login" in page.url
    assert not [c for c in ctx.cookies() if c["name"] == "sp_session"]
    r = page.goto(web_stack.url + "/quality")
    assert r is not None and "/login" in page.url
    ctx.close()


def test_public_pages_and_files_show_no_suppressed_cell(web_stack: WebStack, browser: Any) -> None:
    base = web_stack.url
    small = web_stack.scorecard()["small_cell"]
    month = web_stack.small_day[:7]
    ctx, watch = open_context(browser, base)
    page = ctx.new_page()
    resp = page.goto(f"{base}/open/?month={month}")
    assert resp is not None and resp.status == 200
    row = page.locator('tr[data-agency="arhiv"]')
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert len(cells) == 1 and "скрыто" in cells[0] and not re.search(r"\d", cells[0][:6])
    page.goto(f"{base}/open/")
    assert "CC BY 4.0" in page.inner_text("main")
    ctx.close()
    assert watch.outside == []

    files = [f"/open/v1/{lv}/{g}.json" for lv in ("agencies", "services") for g in ("day", "month")]
    seen_suppressed = 0
    for path in files:
        r = httpx.get(base + path, params={"from": web_stack.small_day} if "month" in path else {})
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert body["schema_version"] == "1" and body["licence"] == "CC BY 4.0"
        assert "public" in r.headers["cache-control"] and r.headers["etag"]
        again = httpx.get(
            base + path,
            headers={"If-None-Match": r.headers["etag"]},
            params={"from": web_stack.small_day} if "month" in path else {},
        )
        assert again.status_code == 304
        for row in body["rows"]:
            if row["journeys_started"] is None:
                seen_suppressed += 1
                assert row["suppressed"] and row["index"] is None and row["level"] is None
            else:
                assert row["journeys_started"] >= small
            for c in row["components"]:
                if c["suppressed"]:
                    assert c["numerator"] is c["denominator"] is c["value"] is None
                elif c["denominator"] is not None:
                    assert c["denominator"] >= small or c["denominator"] == 0
    assert seen_suppressed > 0  # the test data has small cells: the check did something
    # an agency's month equals its scorecard for that month
    r = httpx.get(base + "/open/v1/agencies/month.json").json()
    last = max(row["period"] for row in r["rows"])
    first_day = f"{last}-01"
    minsoc = next(row for row in r["rows"] if row["period"] == last and row["agency"] == "minsoc")
    card = web_stack.scorecard(scope="agency", code="minsoc", **{"from": first_day, "to": r["to"]})
    assert minsoc["index"] == pytest.approx(card["index"], abs=1e-4)
    assert minsoc["journeys_started"] == card["journeys_started"]
    csv = httpx.get(base + "/open/v1/services/day.csv")
    assert csv.status_code == 200 and "CC BY 4.0" in csv.text.splitlines()[0]
    schema = httpx.get(base + "/open/v1/schema.json").json()
    assert "rows" in schema["properties"]
