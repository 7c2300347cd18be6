"""Unit tests of the web view's pure parts: Russian wording, SVG charts, sessions,
the alert store, the open-data suppression and the settings guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import anyio
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from api.alerts import AlertIn, AlertStore, Notification
from api.tokens import Kind, TokenStore
from api.web import charts, ru, views
from api.web.session import COOKIE, Sessions
from api.web.settings import WebSettings
from contract.catalog import load_catalog
from contract.errors import ConfigError


@pytest.mark.parametrize(
    ("n", "word"),
    [
        (0, "заявлений"),
        (1, "заявление"),
        (2, "заявления"),
        (4, "заявления"),
        (5, "заявлений"),
        (11, "заявлений"),
        (12, "заявлений"),
        (14, "заявлений"),
        (21, "заявление"),
        (22, "заявления"),
        (25, "заявлений"),
        (101, "заявление"),
        (111, "заявлений"),
        (1012, "заявлений"),
        (17541, "заявление"),
    ],
)
def test_plural_agreement(n: int, word: str) -> None:
    assert ru.plural(n, "заявление", "заявления", "заявлений") == word


def test_numbers_shares_and_points_are_russian() -> None:
    assert ru.num(17541) == "17\u202f541"
    assert ru.num(72.84, 1) == "72,8"
    assert ru.pct(0.912) == "91,2\u00a0%"
    assert ru.points(-0.035) == "−3,5\u00a0п.\u00a0п."
    assert ru.points(0.0) == "0,0\u00a0п.\u00a0п."
    assert ru.num(None) == ru.pct(None) == ru.month(None) == "—"
    assert ru.month("2026-12") == "декабрь 2026"


def test_times_are_in_the_regions_zone_in_plain_words() -> None:
    tz = load_catalog().tz  # Asia/Yekaterinburg, UTC+5
    moment = datetime(2026, 12, 2, 5, 15, tzinfo=UTC)
    assert ru.local_time(moment, tz) == "2\u00a0декабря 2026, 10:15"
    assert ru.duration(30) == "меньше минуты"
    assert ru.duration(180) == "3\u00a0минуты"
    assert ru.duration(3600 * 2 + 300) == "2\u00a0часа 5\u00a0минут"
    assert ru.duration(86400 * 5) == "5\u00a0дней"
    text, level = ru.freshness(moment, 0, True, moment + timedelta(minutes=2), tz)
    assert "2\u00a0минуты назад" in text and "всё обработанное" in text and level == "ok"
    text, level = ru.freshness(moment, 21, True, moment + timedelta(hours=8), tz)
    assert "21\u00a0запись" in text and level == "bad"
    assert ru.freshness(None, -1, False, moment, tz)[1] == "warn"


def test_trend_is_valid_svg_with_gaps_and_escaped_text() -> None:
    svg = charts.trend(
        [("01.11", 50.0), ("02.11", None), ("03.11", 70.0), ("04.11", 65.0)],
        label="Индекс <тест> & «кавычки»",
        bands=[(60.0, "продвинутый")],
    )
    root = ElementTree.fromstring(svg)  # noqa: S314 - our own output
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img" and "<тест>" in (root.get("aria-label") or "")
    # the missing day splits the line: one point alone, then a two-point line
    assert len(root.findall(f"{ns}polyline")) == 1
    assert len(root.findall(f"{ns}circle")) == 3


def test_bars_scale_to_the_share() -> None:
    svg = charts.bars([("a", 1.0, "100"), ("b", 0.5, "50"), ("c", 2.0, "?")], label="x")
    root = ElementTree.fromstring(svg)  # noqa: S314 - our own output
    widths = [float(r.get("width") or 0) for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert widths[1] == pytest.approx(widths[0] / 2) and widths[2] == widths[0]


def _request(cookie: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    return Request({"type": "http", "headers": headers, "method": "GET", "path": "/"})


def _cookie(resp: Response) -> str:
    header = resp.headers["set-cookie"]
    return header.split(";", 1)[0].split("=", 1)[1]


def test_a_session_is_signed_expires_and_ends_with_its_token(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "t.db", cache_seconds=0)
    raw, info = tokens.create(Kind.AGENCY, "minsoc", "t")
    sessions = Sessions("s3cret", 60, True, tokens, recheck=0)
    resp = Response()
    viewer = sessions.issue(resp, info)
    header = resp.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "secure" in header
    value = _cookie(resp)
    assert raw not in value
    seen = sessions.viewer(_request(value))
    assert seen == viewer and not seen.inspector and seen.may_see("minsoc")
    assert not seen.may_see("zags")
    assert Sessions.csrf_ok(viewer, viewer.csrf) and not Sessions.csrf_ok(viewer, "x")
    assert sessions.viewer(_request(value[:-3] + "abc")) is None  # signature
    assert Sessions("other", 60, True, tokens).viewer(_request(value)) is None  # key
    assert Sessions("s3cret", 60, True, tokens).viewer(_request(value)) is not None
    tokens.revoke(info.id)
    assert sessions.viewer(_request(value)) is None  # revoked token: no session


def test_an_expired_session_is_nobodys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenStore(tmp_path / "t.db", cache_seconds=0)
    _raw, info = tokens.create(Kind.INSPECTOR, None, "t")
    sessions = Sessions("s3cret", 60, False, tokens, recheck=0)
    resp = Response()
    sessions.issue(resp, info)
    value = _cookie(resp)
    import time as time_module

    later = time_module.time() + 120
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert sessions.viewer(_request(value)) is None


def test_the_session_secret_must_be_real_outside_local_mode() -> None:
    with pytest.raises(ConfigError, match="SESSION_SECRET"):
        WebSettings(mode="production")
    WebSettings(mode="production", session_secret="a-real-one-9f2c")
    WebSettings(mode="production", web_enabled=False)


def _note(*alerts: tuple[str, str, str]) -> Notification:
    return Notification(
        alerts=[
            AlertIn(
                status=status, labels={"alertname": name, "severity": sev}, fingerprint=name + sev
            )
            for name, sev, status in alerts
        ]
    )


def test_alert_store_keeps_the_latest_state_and_is_bounded() -> None:
    store = AlertStore(limit=3)
    store.add(_note(("A", "warning", "firing"), ("B", "critical", "firing")))
    store.add(_note(("A", "warning", "resolved")))
    items = store.list()
    assert [(a.name, a.status) for a in items] == [("B", "firing"), ("A", "resolved")]
    assert items[1].notifications == 2
    store.add(_note(("C", "warning", "firing"), ("D", "warning", "firing")))
    assert {a.name for a in store.list()} == {"A", "C", "D"}  # B, the oldest, dropped


def _alert(summary: str, **labels: str) -> Any:
    store = AlertStore(limit=1)
    note = Notification(
        alerts=[
            AlertIn(
                status="firing",
                labels={"alertname": "ServicePulseX", "severity": "warning", **labels},
                annotations={"summary": summary},
                fingerprint="f",
            )
        ]
    )
    store.add(note)
    return store.list()[0]


def test_an_alert_names_the_agency_and_the_service_as_the_catalog_does() -> None:
    catalog = load_catalog()
    v = views.alert_view(_alert("minsoc: растёт число", agency="minsoc"), catalog)
    assert (v.title, v.labels) == ("Минсоц: растёт число", ["ведомство: Минсоц"])
    service = catalog.services["large_family_status"].service.name
    v = views.alert_view(
        _alert("large_family_status: падает", service="large_family_status", channel="mfc"),
        catalog,
    )
    assert v.title == f"{service}: падает"
    assert v.labels == [f"услуга: {service}", "канал: МФЦ"]
    # a code the catalog does not know, and a label without a Russian name, as they came
    v = views.alert_view(_alert("nobody: x", agency="nobody", component="wait"), catalog)
    assert (v.title, v.labels) == ("nobody: x", ["ведомство: nobody", "component=wait"])
    # a summary that does not start with the code is left alone
    v = views.alert_view(_alert("Обработчик отстаёт", agency="minsoc"), catalog)
    assert v.title == "Обработчик отстаёт"


def _status(app: Any, path: str) -> int:
    # in-process ASGI, no lifespan: nothing connects to Kafka
    async def get() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return (await c.get(path)).status_code

    return anyio.run(get)


def test_settings_turn_the_open_data_and_the_web_view_off(tmp_path: Path) -> None:
    from api.app import create_app
    from api.settings import ApiSettings

    settings = ApiSettings(token_db=tmp_path / "t.db", readmodel_snapshot=None)
    on = create_app(settings)
    assert _status(on, "/open/v1/agencies/month.json") == 200
    assert _status(on, "/login") == 200
    off = create_app(settings, web=WebSettings(open_data_enabled=False, web_enabled=False))
    assert _status(off, "/open/v1/agencies/month.json") == 404
    assert _status(off, "/open/") == 404
    assert _status(off, "/login") == 404
    assert _status(off, "/docs") == 200


def test_open_data_periods_at_the_ends_of_the_calendar(tmp_path: Path) -> None:
    from api.app import create_app
    from api.settings import ApiSettings

    app = create_app(ApiSettings(token_db=tmp_path / "t.db", readmodel_snapshot=None))
    for grain in ("day", "month"):
        # the default start would be before year 1: a clear 400, not a 500
        assert _status(app, f"/open/v1/agencies/{grain}.csv?to=0001-01-01") == 400
        assert _status(app, f"/open/v1/agencies/{grain}.csv?from=0001-01-01&to=9999-12-31") == 400
    assert _status(app, "/open/v1/agencies/day.csv?from=0001-01-01&to=0001-01-30") == 200
    # December 9999 is a month like any other
    assert _status(app, "/open/v1/services/month.csv?from=9999-12-01&to=9999-12-31") == 200
    assert _status(app, "/open/v1/agencies/month.json?from=0001-01-01&to=0001-12-31") == 200
