"""POST /v1/events over HTTP against the real broker: auth, isolation, per-event results,
limits, idempotency, what reaches the events and dead-letter topics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from contract.events import Event, decode_event, encode_event, event_key
from contract.settings import CommonSettings
from contract.topics import Topics
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


def post(server: ApiServer, token: str | None, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    with server.client(token) as c:
        return c.post("/v1/events", content=data, headers=headers)


def test_authentication_and_token_kinds(api: ApiServer) -> None:
    r = post(api, None, [event()])
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"
    assert post(api, "sp_000000000000_guess", [event()]).status_code == 401

    inspector = api.inspector_token()
    r = post(api, inspector, [event()])
    assert r.status_code == 403 and "inspector" in r.json()["error"]["message"]

    agency = api.agency_token("minsoc")
    assert post(api, agency, [event()]).status_code == 200
    with api.client(agency) as c:
        assert c.get("/v1/scorecard").status_code == 403
    with api.client(inspector) as c:
        assert c.get("/v1/scorecard").status_code == 200

    token_id = agency.split("_")[1]
    api.tokens.revoke(token_id)
    assert post(api, agency, [event()]).status_code == 401


def test_per_event_results_isolation_and_what_reaches_kafka(
    api: ApiServer, env: tuple[Topics, CommonSettings, Path]
) -> None:
    topics, common, _ = env
    token = api.agency_token("minsoc")
    good = [
        event(),
        event("journey.step", attrs={"step": "identity"}),
        event("feedback.given", attrs={"score": 5}),
    ]
    bad_score = event("feedback.given", attrs={"score": 9})
    foreign = event(agency="zags", service=None, journey=None)  # a valid zags event
    foreign["type"] = "appeal.received"
    foreign["attrs"] = {"appeal": "a-1"}
    unknown_service = event(service="no_such_service")
    snils = event(citizen="123-456-789 01")
    batch = [good[0], bad_score, foreign, good[1], unknown_service, snils, good[2]]
    r = post(api, token, batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 4)
    res = body["results"]
    assert [x["index"] for x in res] == list(range(7))
    assert [x["status"] for x in res] == [
        "accepted",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert res[1]["code"] == 422
    assert res[1]["problems"][0]["field"] == "attrs.score"
    assert res[1]["problems"][0]["reason"] == "out_of_range"
    assert res[2]["code"] == 403 and res[2]["problems"][0]["reason"] == "forbidden_agency"
    assert res[4]["problems"][0] == {
        "field": "service",
        "reason": "unknown_service",
        "message": "unknown service 'no_such_service'",
    }
    assert res[5]["problems"][0]["reason"] == "not_pseudonym"
    assert "123-456-789" not in r.text  # a SNILS sent by mistake is never echoed

    # exactly the accepted events, keyed by event_key, in the canonical encoding
    records = read_topic(common, topics.events)
    want = {}
    for raw in good:
        ev = decode_event(json.dumps(raw))
        assert isinstance(ev, Event)
        want[ev.event_id] = (event_key(ev), encode_event(ev))
    got = {json.loads(v)["event_id"]: (k, v) for k, v in records}
    assert got == want

    # dead letters: one per rejection, the sending token's agency, never the event body
    dead = [json.loads(v) for _, v in read_topic(common, topics.deadletter)]
    assert sorted(d["reason"] for d in dead) == sorted(
        ["out_of_range", "forbidden_agency", "unknown_service", "not_pseudonym"]
    )
    for d in dead:
        assert d["agency"] == "minsoc" and d["source"] == "api" and d["received_at"]
        assert set(d) <= {
            "reason",
            "field",
            "message",
            "agency",
            "event_id",
            "source",
            "received_at",
        }
        assert "123-456-789" not in json.dumps(d)

    # counted by reason and agency: the API's own counter at once, the business family
    # once the read model has read the dead letters back
    v = api.registry.get_sample_value
    assert (
        v(
            "servicepulse_api_ingest_rejected_total",
            {"agency": "minsoc", "reason": "forbidden_agency"},
        )
        == 1
    )
    assert v("servicepulse_api_ingest_events_total", {"result": "accepted"}) == 3
    # the business families are served by /metrics from the read model, not the registry
    deadline = time.monotonic() + 15
    line = 'servicepulse_events_rejected_total{agency="minsoc",reason="out_of_range"} 1\n'
    while line not in httpx.get(f"{api.url}/metrics", timeout=10).text:
        assert time.monotonic() < deadline, "dead letters not counted by the read model"
        time.sleep(0.2)


def test_ndjson_one_bad_line_does_not_affect_the_others(api: ApiServer) -> None:
    token = api.agency_token()
    lines = [json.dumps(event()).encode(), b"{not json", b"", json.dumps(event()).encode()]
    r = post(api, token, b"\n".join(lines), **{"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["accepted", "rejected", "accepted"]
    assert body["results"][1]["problems"][0]["reason"] == "invalid_json"


def test_malformed_array_and_empty_body_are_400(api: ApiServer) -> None:
    token = api.agency_token()
    r = post(api, token, b'[{"event_id": 1,')
    assert r.status_code == 400 and "malformed JSON array" in r.json()["error"]["message"]
    assert post(api, token, b"  \n").status_code == 400


def test_size_limits_are_413_and_write_nothing(
    api: ApiServer, env: tuple[Topics, CommonSettings, Path]
) -> None:
    topics, common, _ = env
    token = api.agency_token()
    big = [event(journey="x" * 100) for _ in range(1001)]
    r = post(api, token, big)
    assert r.status_code == 413 and "1001 events" in r.json()["error"]["message"]
    padding = b" " * (1024 * 1024)
    r = post(api, token, b"[" + json.dumps(event()).encode() + padding + b"]")
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert read_topic(common, topics.events) == []


def test_rate_limit_is_429_with_retry_after(env: tuple[Topics, CommonSettings, Path]) -> None:
    topics, common, tmp = env
    settings = api_settings(common, tmp, rate_limit_events_per_second=100, rate_limit_burst=1000)
    with running_api(settings) as server:
        server.wait_ready()
        token = server.agency_token()
        batch = [event() for _ in range(1000)]
        first = post(server, token, batch)
        assert first.status_code == 200 and first.json()["accepted"] == 1000
        r = post(server, token, [event() for _ in range(500)])
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 4  # 500 events at 100/s after the burst
        other = server.agency_token("zags")  # the limit is per token
        ok = post(
            server,
            other,
            [
                event(
                    agency="zags",
                    service=None,
                    journey=None,
                    type="appeal.received",
                    attrs={"appeal": "a1"},
                )
            ],
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["accepted"] == 1
    assert len(read_topic(common, topics.events)) == 1001


def test_same_event_id_is_a_duplicate(
    api: ApiServer, env: tuple[Topics, CommonSettings, Path]
) -> None:
    topics, common, _ = env
    token = api.agency_token()
    a, b = event(), event()
    r1 = post(api, token, [a, b, a])
    assert [x["status"] for x in r1.json()["results"]] == ["accepted", "accepted", "duplicate"]
    r2 = post(api, token, [b, a])
    assert r2.json() == {
        "accepted": 0,
        "duplicates": 2,
        "rejected": 0,
        "results": [
            {"index": 0, "status": "duplicate", "event_id": b["event_id"], "code": 200},
            {"index": 1, "status": "duplicate", "event_id": a["event_id"], "code": 200},
        ],
    }
    ids = [msgspec.json.decode(v)["event_id"] for _, v in read_topic(common, topics.events)]
    assert sorted(ids) == sorted([a["event_id"], b["event_id"]])
