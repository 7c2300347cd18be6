"""Schemathesis against the OpenAPI document of the running API (real broker, real HTTP):
no 5xx, and every response matches the documented status codes, media types, headers
and schemas. Requests carry valid tokens (agency for ingest, inspector for reads) so the
generated data reaches the handlers rather than stopping at authentication."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.api import (
    ApiServer,
    api_settings,
    demo_records,
    running_api,
    write_transactionally,
)
from tests.fixtures.kafka import Broker, make_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T = TypeVar("T")
E = TypeVar("E", bound=Exception)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_api(
    kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    topics, common = make_topics(kafka_broker, 3)
    write_transactionally(common, topics.aggregates, demo_records(["2026-11-02", "2026-11-03"]))
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    # a rate limit high enough that generated batches are not refused with 429
    settings_ = api_settings(common, tmp, rate_limit_events_per_second=0)
    with running_api(settings_) as server:
        server.wait_ready()
        tokens = {"agency": server.agency_token("minsoc"), "inspector": server.inspector_token()}
        yield server, tokens
    shutil.rmtree(tmp, ignore_errors=True)


def exercise(op: Any, url: str, headers: dict[str, str], calls: list[int]) -> None:
    """Run Hypothesis over one operation's generated requests with every check."""

    @given(case=op.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        calls[0] += 1
        kw = case.as_transport_kwargs(base_url=url, headers=headers)
        request: dict[str, Any] = {
            "method": kw["method"],
            "url": kw["url"],
            "headers": dict(kw.get("headers") or {}),
            "params": kw.get("params") or None,
        }
        if "json" in kw:
            request["json"] = kw["json"]
        data = kw.get("data")
        if isinstance(data, (bytes, str)):
            request["content"] = data
        elif data is not None:
            request["data"] = data
        response = client.request(**request)
        case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs=kw)

    with httpx.Client(timeout=30) as client:
        run()


def _ok(result: Ok[T] | Err[E]) -> T:
    """The operation, failing on one the document does not describe correctly."""
    assert isinstance(result, Ok), result.err()
    return result.ok()


def test_openapi_contract(live_api: tuple[ApiServer, dict[str, str]]) -> None:
    # Hypothesis runs each operation's strategy here rather than through
    # schemathesis.pytest.from_fixture, which fails under pytest 9 ('Function' object has
    # no attribute '_nodeid'); requests are sent with httpx because the requests
    # transport breaks when urllib3-future (a dependency of grafana-client via niquests)
    # has replaced urllib3 ('TrafficPolice' object has no attribute 'keys').
    server, tokens = live_api
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [_ok(result) for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/events",
        "/v1/scorecard",
        "/v1/reports/period",
        "/readyz",
    }
    failures: list[str] = []
    calls = [0]
    for op in operations:
        kind = "agency" if op.path == "/v1/events" else "inspector"
        try:
            exercise(op, server.url, {"Authorization": f"Bearer {tokens[kind]}"}, calls)
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{op.method.upper()} {op.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert calls[0] >= 5 * len(operations)
