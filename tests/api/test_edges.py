"""The API at its edges (issue 12), over HTTP against the real app and broker: event ids
in any case and per agency, bodies the API does not read (415, counted as nothing), a
UTF-8 signature, the error shape of every 4xx, /metrics behind a token or on its own
port, X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from contract.settings import CommonSettings
from contract.topics import Topics
from servicepulse.stack import free_port
from tests.fixtures.api import ApiServer, api_settings, event, read_topic, running_api
from tests.fixtures.kafka import TopicFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def env(topic_factory: TopicFactory, tmp_path: Path) -> tuple[Topics, CommonSettings, Path]:
    topics, common = topic_factory(3)
    return topics, common, tmp_path


@pytest.fixture
def api(env: tuple[Topics, CommonSettings, Path]) -> Iterator[ApiServer]:
    _topics, common, tmp = env
    with running_api(api_settings(common, tmp)) as server:
        server.wait_ready()
        yield server


def post(server: ApiServer, token: str, body: Any, **headers: str) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    with server.client(token) as c:
        return c.post("/v1/events", content=data, headers=headers)


def rejected_total(server: ApiServer, agency: str) -> float:
    """Every rejection counted for the agency, over all reasons."""
    total = 0.0
    for family in server.registry.collect():
        for s in family.samples:
            if (
                s.name == "servicepulse_api_ingest_rejected_total"
                and s.labels.get("agency") == agency
            ):
                total += s.value
    return total


def appeal(event_id: str | None = None) -> dict[str, Any]:
    """A valid event of agency zags (an appeal: no service, no journey)."""
    ev = event("appeal.received", agency="zags", service=None, attrs={"appeal": "a1"})
    del ev["journey"]
    if event_id:
        ev["event_id"] = event_id
    return ev


def assert_error_shape(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body


# -- items 4 and 5: one event id, one event, per agency ------------------------------------


def test_an_event_id_in_upper_case_is_the_same_id(
    api: ApiServer, env: tuple[Topics, CommonSettings, Path]
) -> None:
    """Item 4, the API side: the same UUID in upper case was a new event."""
    topics, common, _ = env
    token = api.agency_token("minsoc")
    ev = event()
    first = post(api, token, [ev]).json()
    assert first["accepted"] == 1
    upper = {**ev, "event_id": ev["event_id"].upper()}
    again = post(api, token, [upper]).json()
    assert again["duplicates"] == 1 and again["accepted"] == 0, again
    # the answer names the canonical id
    assert again["results"][0]["event_id"] == ev["event_id"]
    # upper case first, lower case after: one event as well
    ev2 = event()
    ev2_upper = {**ev2, "event_id": ev2["event_id"].upper()}
    mixed = post(api, token, [ev2_upper, ev2]).json()
    assert [x["status"] for x in mixed["results"]] == ["accepted", "duplicate"], mixed
    ids = {msgspec.json.decode(v)["event_id"].lower() for _, v in read_topic(common, topics.events)}
    assert len(read_topic(common, topics.events)) == 2 and ids == {ev["event_id"], ev2["event_id"]}


def test_an_id_another_agency_used_is_not_a_duplicate(
    api: ApiServer, env: tuple[Topics, CommonSettings, Path]
) -> None:
    """Item 5, the API side: an agency's event whose id another agency used was answered
    `duplicate` and never written."""
    topics, common, _ = env
    minsoc, zags = api.agency_token("minsoc"), api.agency_token("zags")
    shared = str(uuid.uuid4())
    assert post(api, minsoc, [event(event_id=shared)]).json()["accepted"] == 1
    theirs = post(api, zags, [appeal(shared)]).json()
    assert theirs["accepted"] == 1 and theirs["duplicates"] == 0, theirs
    # within one agency a repeat still is a duplicate, in any case
    assert post(api, zags, [appeal(shared.upper())]).json()["duplicates"] == 1
    agencies = sorted(
        msgspec.json.decode(v)["agency"] for _, v in read_topic(common, topics.events)
    )
    assert agencies == ["minsoc", "zags"]


# -- item 8: bodies the API does not read ---------------------------------------------------


def test_compressed_form_and_multipart_bodies_are_415_and_count_nothing(api: ApiServer) -> None:
    token = api.agency_token("minsoc")
    batch = json.dumps([event(), event(), event()]).encode()
    cases: list[tuple[bytes, dict[str, str]]] = [
        (gzip.compress(batch), {"Content-Encoding": "gzip", "Content-Type": "application/json"}),
        (gzip.compress(batch), {"Content-Encoding": "deflate"}),
        (b"events=" + batch, {"Content-Type": "application/x-www-form-urlencoded"}),
        (batch, {"Content-Type": "text/plain"}),
        (batch, {"Content-Type": "application/json; charset=latin-1"}),
    ]
    for body, headers in cases:
        r = post(api, token, body, **headers)
        assert_error_shape(r, 415, "unsupported_media_type")
    with api.client(token) as c:
        multipart = c.post("/v1/events", files={"file": ("events.json", batch, "application/json")})
    assert_error_shape(multipart, 415, "unsupported_media_type")
    assert rejected_total(api, "minsoc") == 0
    # what the API reads still works beside them
    assert post(api, token, batch, **{"Content-Type": "application/json"}).json()["accepted"] == 3


def test_a_byte_order_mark_before_the_body_is_a_utf8_signature(api: ApiServer) -> None:
    """A BOM before an array was read as NDJSON: N `invalid_json` rejections counted in
    the agency's data quality. It is the UTF-8 signature: ignored."""
    token = api.agency_token("minsoc")
    array = b"\xef\xbb\xbf" + json.dumps([event(), event(), event()]).encode()
    r = post(api, token, array, **{"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    lines = b"\xef\xbb\xbf" + b"\n".join(json.dumps(event()).encode() for _ in range(2))
    r = post(api, token, lines, **{"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    utf16 = json.dumps([event(), event()]).encode("utf-16")  # with its own BOM
    assert_error_shape(post(api, token, utf16), 415, "unsupported_media_type")
    assert rejected_total(api, "minsoc") == 0


# -- item 8: the error shape on every 4xx -----------------------------------------------------


def test_every_4xx_has_the_documented_error_shape(api: ApiServer) -> None:
    inspector, agency = api.inspector_token(), api.agency_token("minsoc")
    with api.client(inspector) as c:
        for query in (
            {"scope": "79123456789"},
            {"from": "79123456789"},
            {"code": "7" * 65},
            {"format": "79123456789"},
        ):
            for path in ("/v1/scorecard", "/v1/reports/period"):
                r = c.get(path, params=query)
                if path == "/v1/scorecard" and "format" in query:
                    continue  # not a parameter of the scorecard: ignored
                body = assert_error_shape(r, 400, "invalid_parameter")
                # names the parameter, never repeats the value
                name = next(iter(query))
                assert repr(name) in body["error"]["message"], body
                assert "79123456789" not in r.text and "7" * 65 not in r.text
        assert_error_shape(c.get("/v1/nosuch"), 404, "not_found")
        assert_error_shape(c.get("/no/such/page"), 404, "not_found")
    with api.client(agency) as c:
        r = c.request("PATCH", "/v1/events")
        assert_error_shape(r, 405, "method_not_allowed")
        assert "POST" in r.headers["allow"]
        assert_error_shape(c.get("/v1/events"), 405, "method_not_allowed")


# -- item 8: /metrics behind a token or on its own port ---------------------------------------


def test_metrics_behind_a_token(env: tuple[Topics, CommonSettings, Path]) -> None:
    _topics, common, tmp = env
    secret = "metrics-" + uuid.uuid4().hex
    with running_api(api_settings(common, tmp, metrics_token=secret)) as api:
        assert_error_shape(httpx.get(f"{api.url}/metrics"), 401, "unauthorized")
        wrong = httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert_error_shape(wrong, 401, "unauthorized")
        # an agency token is no metrics token
        agency = api.agency_token("minsoc")
        other = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {agency}"})
        assert other.status_code == 401
        ok = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200 and "servicepulse_api_requests_total" in ok.text
        assert secret not in ok.text


def test_metrics_on_their_own_port(env: tuple[Topics, CommonSettings, Path]) -> None:
    _topics, common, tmp = env
    port = free_port()
    secret = "metrics-" + uuid.uuid4().hex
    settings = api_settings(common, tmp, api_metrics_port=port, metrics_token=secret)
    with running_api(settings) as api:
        assert_error_shape(httpx.get(f"{api.url}/metrics"), 404, "not_found")
        own = f"http://127.0.0.1:{port}"
        assert_error_shape(httpx.get(f"{own}/metrics"), 401, "unauthorized")
        ok = httpx.get(f"{own}/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200 and "servicepulse_api_requests_total" in ok.text
        assert_error_shape(httpx.get(f"{own}/v1/events"), 404, "not_found")
    with pytest.raises(httpx.TransportError):  # the listener stopped with the API
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


# -- item 8: X-Forwarded-For only from trusted proxies -----------------------------------------


def _guesses(api: ApiServer, n: int, forwarded: Any) -> list[int]:
    statuses = []
    with httpx.Client(base_url=api.url, timeout=30) as c:
        for i in range(n):
            headers = {"Authorization": f"Bearer sp_{i:012d}_guess"}
            xff = forwarded(i)
            if xff:
                headers["X-Forwarded-For"] = xff
            statuses.append(c.get("/v1/scorecard", headers=headers).status_code)
    return statuses


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    env: tuple[Topics, CommonSettings, Path],
) -> None:
    """300 wrong tokens, each with a new X-Forwarded-For, were never answered 429."""
    _topics, common, tmp = env
    with running_api(api_settings(common, tmp)) as api:
        burst = api.settings.auth_failure_burst
        statuses = _guesses(api, burst + 10, lambda i: f"198.51.100.{i % 250}")
        assert statuses[:burst] == [401] * burst
        assert statuses[burst:] == [429] * 10  # the peer (127.0.0.1) counts, not the header
    trusted = api_settings(common, tmp / "trusted", trusted_proxies=["127.0.0.0/8"])
    with running_api(trusted) as api:
        # behind a trusted proxy every forwarded client has its own budget ...
        statuses = _guesses(api, burst + 10, lambda i: f"198.51.100.{i % 250}")
        assert set(statuses) == {401}
        # ... and one client is limited whichever proxy hop it came through
        statuses = _guesses(api, burst + 5, lambda i: f"203.0.113.7, 127.0.0.{1 + i % 3}")
        assert statuses[burst:] == [429] * 5
