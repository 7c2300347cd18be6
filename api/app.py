"""The FastAPI app factory: wiring of settings, Kafka clients, read model and routes.

``create_app(settings)`` builds everything without I/O; the Kafka producer and the
read-model consumer are opened in the lifespan (in background threads, so the API
answers ``/healthz`` even while Kafka is still starting) and closed on shutdown. The
same app runs under uvicorn (``servicepulse serve``) and in-process (tests, benchmarks).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the
# route functions defined inside create_app, which refer to local dependencies.

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors, scrape
from api.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RequestTimeout,
    TooManyFailures,
    Unauthorized,
    error_responses,
)
from api.exposition import ApiMetrics, build_metrics
from api.ingest import Ingestor, IngestResponse, ProducerLink
from api.issuing import IssuingService, build_issuing_metrics
from api.keys import KeyStore
from api.media import NDJSON_TYPES, media_of, without_signature
from api.readmodel import ReadModel
from api.reports import Report, build_report, render
from api.scorecard import Scope as ScopeName
from api.scorecard import Scorecard, Scorer, period_bounds
from api.server import MetricsListener, metrics_token_ok
from api.settings import ApiSettings
from api.signatures import Verifier, build_signature_metrics
from api.tokens import FailureLimiter, Kind, TokenInfo, TokenStore
from api.web.settings import WebSettings
from api.web.wiring import install as install_web
from contract.catalog import Catalog, load_catalog
from contract.events import Event, json_schema
from contract.methodology import Methodology, load_methodology
from contract.topics import Topics

logger = logging.getLogger(__name__)

VERSION = "1.0.0"

DESCRIPTION = """\
ServicePulse API: agencies push usage events of public services; inspectors read the
client-centricity index as scorecards and period reports; Prometheus scrapes `/metrics`.

**Authentication**: `Authorization: Bearer <token>`. Agency tokens (`servicepulse tokens
create --agency CODE`) may push events of their own agency only; inspector tokens
(`--inspector`) are read-only and see every agency.

**Signed batches** (optional, or required by an agency's policy): the headers
`X-ServicePulse-Key-Id`, `-Timestamp`, `-Nonce` and `-Signature` carry an Ed25519
signature of the exact body (docs/API.md, "Signed batches"); a refused batch is answered
with its own error code and nothing of it is written.

**Issued reports** are recorded in a signed, hash-chained log before they are answered
(`X-ServicePulse-Log-Seq`); `servicepulse reports verify FILE` checks a file later.

**Ingest guarantees**: an event reported `accepted` was acknowledged by Kafka
(`acks=all`). On 503 nothing of the batch was accepted: retry the same batch after
`Retry-After` seconds; event ids already written are answered `duplicate` or counted once
by the processor.
"""

_EVENT_EXAMPLE = {
    "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
    "type": "journey.started",
    "schema_version": 1,
    "occurred_at": "2026-11-26T10:15:00+05:00",
    "agency": "minsoc",
    "service": "large_family_status",
    "municipality": "75701000",
    "channel": "portal",
    "journey": "j-20261126-000123",
}


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Counts requests by route template, method and status, and times them."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            # any token is a valid HTTP method: only known ones may become label values
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes, and with
    408 when it has not all arrived within ``timeout`` seconds (a trickling client would
    otherwise hold its ingest slot for ever)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"the body is {int(length)} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout:g} s ({size} bytes came)"
        ) from None
    except ClientDisconnect:
        # nobody reads the answer; it keeps a traceback and a false 500 out of logs and metrics
        raise BadRequest(f"the client went away after {size} bytes of the body") from None
    return b"".join(chunks)


def create_app(
    settings: ApiSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    catalog: Catalog | None = None,
    methodology: Methodology | None = None,
    tokens: TokenStore | None = None,
    keys: KeyStore | None = None,
    web: WebSettings | None = None,
) -> FastAPI:
    """Build the API. No I/O happens until the app's lifespan starts.

    Args:
        settings: defaults to :class:`ApiSettings` read from the environment.
        registry: where the metrics go; defaults to a fresh registry with the process
            and platform collectors (pass ``prometheus_client.REGISTRY`` from a CLI).
        catalog: defaults to ``settings.catalog`` (else the demo catalog).
        methodology: defaults to ``settings.methodology`` (else the shipped one).
        tokens: defaults to the SQLite store at ``settings.token_db``.
        keys: agencies' signing keys; defaults to the SQLite store at
            ``settings.key_db_path``.
        web: settings of the web view, open data and alerts; default: from the environment.
    """
    settings = settings or ApiSettings()
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    catalog = catalog or load_catalog(str(settings.catalog) if settings.catalog else None)
    methodology = methodology or load_methodology(
        str(settings.methodology) if settings.methodology else None
    )
    tokens = tokens or TokenStore(settings.token_db, settings.token_cache.total_seconds())
    topics = Topics(settings.topic_prefix)
    metrics = build_metrics(registry)
    link = ProducerLink(settings, topics)
    ingestor = Ingestor(settings, catalog, topics, link, metrics)
    model = ReadModel(
        settings,
        topics,
        catalog,
        snapshot=settings.readmodel_snapshot,
        snapshot_interval=settings.snapshot_interval.total_seconds(),
    )
    scorer = Scorer(model, catalog, methodology)
    keys = keys or KeyStore(settings.key_db_path, settings.token_cache.total_seconds())
    signatures = Verifier(
        keys,
        settings.signature_window.total_seconds(),
        settings.signature_nonce_capacity,
        build_signature_metrics(registry),
    )
    issuing = IssuingService(settings, topics, model, catalog, build_issuing_metrics(registry))
    issuing.check()
    scrape.install(metrics, model, catalog)
    metrics.inflight.set_function(lambda: ingestor.inflight)
    metrics.readmodel_ready.set_function(lambda: 1.0 if model.status.ready else 0.0)
    metrics.readmodel_lag.set_function(lambda: model.status.lag)
    metrics.readmodel_records.set_function(lambda: model.status.records)
    listener = (
        MetricsListener(settings, lambda enc: scrape.body(model, registry, metrics, enc))
        if settings.api_metrics_port
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "API starting: kafka=%s topics=%s.* catalog=%s",
            settings.kafka_bootstrap,
            topics.prefix,
            catalog.source,
        )
        tokens.open()  # a new stack starts its (empty) token database here, mode 0600
        if listener is not None:
            listener.start()
        link.start()
        model.start()
        issuing.start()
        try:
            yield
        finally:
            issuing.stop()
            if listener is not None:
                listener.stop()
            model.stop()
            link.close()
            tokens.close()
            keys.close()
            logger.info("API stopped")

    app = FastAPI(
        title="ServicePulse API",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by the web view (api/web/wiring.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.ingestor = ingestor
    app.state.model = model
    app.state.scorer = scorer
    app.state.tokens = tokens
    app.state.link = link
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.proxies:
        # the client address of the failed-authentication limit; uvicorn's own proxy
        # handling is off (server.server_options) as it believes any local client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxies)

    bearer = HTTPBearer(auto_error=False, description="an agency or inspector token")

    failures = FailureLimiter(settings.auth_failure_burst, settings.auth_failures_per_minute / 60)
    web_view = install_web(app, web or WebSettings(), scorer, model, tokens, failures)
    app.state.web = web_view

    def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> TokenInfo:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("send Authorization: Bearer <token>")
        # the peer, or with SERVICEPULSE_TRUSTED_PROXIES the address a proxy forwarded
        client = request.client.host if request.client else "unknown"
        wait = failures.wait(client)
        if wait > 0:
            # not even a right token is checked now: guessing learns nothing
            raise TooManyFailures(
                "too many failed authentications from this address; retry after "
                f"{math.ceil(wait)} s",
                retry_after=wait,
            )
        info = tokens.verify(credentials.credentials)
        if info is None:
            failures.failed(client)
            raise Unauthorized("unknown or revoked token")
        return info

    def agency_token(info: Annotated[TokenInfo, Depends(authenticate)]) -> TokenInfo:
        if info.kind is not Kind.AGENCY or not info.agency:
            raise Forbidden(f"token {info.id} is an inspector token: it cannot push events")
        return info

    def inspector_token(info: Annotated[TokenInfo, Depends(authenticate)]) -> TokenInfo:
        if info.kind is not Kind.INSPECTOR:
            raise Forbidden(f"token {info.id} is an agency token: scorecards need an inspector")
        return info

    # -- operations ---------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """200 while the process serves requests (Kafka may still be unreachable)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness",
        responses={503: {"description": "not ready yet (body says why)"}},
    )
    async def readyz() -> JSONResponse:
        """200 once the read model caught up with Kafka and the producer is connected."""
        st = model.status
        ready = st.ready and link.connected
        body = {
            "status": "ready" if ready else "not_ready",
            "readmodel": {
                "ready": st.ready,
                "connected": st.connected,
                "lag": st.lag,
                "records": st.records,
                "restored_from_snapshot": st.restored_from_snapshot,
                "error": st.error,
                "business_metrics": "withheld" if scrape.withheld(model) else "served",
            },
            "producer": {"connected": link.connected},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    if listener is None:

        @app.get(
            "/metrics",
            tags=["operations"],
            summary="Prometheus exposition",
            response_class=Response,
            responses={
                200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                **error_responses(401),
            },
        )
        def prometheus_metrics(request: Request) -> Response:
            """Business metrics from the read model and the API's own metrics; with
            `SERVICEPULSE_METRICS_TOKEN` set, only for `Authorization: Bearer <it>`."""
            if not metrics_token_ok(settings, request.headers.get("authorization")):
                raise Unauthorized("/metrics needs its bearer token (SERVICEPULSE_METRICS_TOKEN)")
            content, headers = scrape.body(
                model, registry, metrics, request.headers.get("accept-encoding", "")
            )
            return Response(content, headers=headers)

    @app.get("/v1/schema/event", tags=["ingest"], summary="JSON Schema of an event")
    async def event_schema() -> dict[str, Any]:
        """The JSON Schema of event contract v1 (what every event of a batch must be)."""
        return json_schema()

    # -- ingest -------------------------------------------------------------------------------

    @app.post(
        "/v1/events",
        tags=["ingest"],
        summary="Push a batch of events",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": (
                    f"Up to {settings.max_events} events and {settings.max_body_bytes} bytes: "
                    "a JSON array, or NDJSON (one event per line)."
                ),
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Event"},
                            "maxItems": settings.max_events,
                        },
                        "example": [_EVENT_EXAMPLE],
                    },
                    "application/x-ndjson": {
                        "schema": {"type": "string"},
                        "example": msgspec.json.encode(_EVENT_EXAMPLE).decode() + "\n",
                    },
                },
            }
        },
        responses={
            200: {
                "description": (
                    "The batch was processed: one result per event, in order. `accepted` "
                    "events were acknowledged by Kafka; `rejected` ones carry code 403 "
                    "(another agency's event) or 422 (invalid) with field and reason."
                ),
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/IngestResponse"},
                        "example": {
                            "accepted": 1,
                            "duplicates": 0,
                            "rejected": 1,
                            "results": [
                                {
                                    "index": 0,
                                    "status": "accepted",
                                    "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
                                },
                                {
                                    "index": 1,
                                    "status": "rejected",
                                    "event_id": "5d0c9a1e-3b7f-4e2a-8c6d-1f2e3a4b5c6d",
                                    "code": 422,
                                    "problems": [
                                        {
                                            "field": "attrs.score",
                                            "reason": "out_of_range",
                                            "message": "attrs.score: Expected `int` <= 5",
                                        }
                                    ],
                                },
                            ],
                        },
                    }
                },
            },
            **error_responses(400, 401, 403, 408, 413, 415, 429, 503),
        },
    )
    async def post_events(
        request: Request, token: Annotated[TokenInfo, Depends(agency_token)]
    ) -> Response:
        """Validate every event, write the valid ones to Kafka, answer per event.

        Idempotent by `event_id` per agency: a repeat of an id this API wrote recently
        for the same agency is answered `duplicate` and not written again.
        """
        media = media_of(request.headers)
        # the body is read holding only this token's slot: a trickling client of one
        # agency never holds a slot the others need
        with ingestor.admit_token(token.id):
            body = await _read_body(
                request, settings.max_body_bytes, settings.body_timeout.total_seconds()
            )
            # the signature covers the bytes as sent (a byte order mark included)
            with signatures.verified(request.headers, body, token.agency or "") as signed:
                headers = signed.record_headers if signed else None
                body = without_signature(body)
                with ingestor.admit():
                    outcome = await ingestor.ingest(
                        body, token, ndjson=media in NDJSON_TYPES, record_headers=headers
                    )
        return Response(outcome.body, media_type="application/json")

    # -- scorecards and reports ------------------------------------------------------------------

    ScopeQ = Annotated[ScopeName, Query(description="region, agency, service or life_situation")]
    CodeQ = Annotated[
        str | None,
        Query(
            description="catalog code of the agency, service or life situation",
            examples=["minsoc"],
            max_length=64,
        ),
    ]
    FromQ = Annotated[
        date | None,
        Query(alias="from", description="first day (YYYY-MM-DD); default: 29 days before `to`"),
    ]
    ToQ = Annotated[
        date | None,
        Query(alias="to", description="last day, inclusive (YYYY-MM-DD); default: today"),
    ]

    @app.get(
        "/v1/scorecard",
        tags=["scorecards"],
        summary="Client-centricity index of a scope and period",
        response_model=Scorecard,
        response_model_by_alias=True,
        responses=error_responses(400, 401, 403, 404),
    )
    def get_scorecard(
        _token: Annotated[TokenInfo, Depends(inspector_token)],
        scope: ScopeQ = "region",
        code: CodeQ = None,
        date_from: FromQ = None,
        date_to: ToQ = None,
    ) -> Scorecard:
        """Each component with numerator, denominator and value; the index and its level.

        Components with a denominator below the small-cell threshold are suppressed and
        left out of the index. Days restated after they closed are listed.
        """
        start, end = period_bounds(catalog, date_from, date_to)
        return scorer.scorecard(scope, code, start, end)

    @app.get(
        "/v1/reports/period",
        tags=["reports"],
        summary="Period report as JSON, CSV or printable HTML",
        response_model=Report,
        response_model_by_alias=True,
        responses={
            200: {
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                },
                "description": "The report in the requested format",
            },
            **error_responses(400, 401, 403, 404, 503),
        },
    )
    def get_report(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        scope: ScopeQ = "region",
        code: CodeQ = None,
        date_from: FromQ = None,
        date_to: ToQ = None,
        fmt: Annotated[
            Literal["json", "csv", "html"], Query(alias="format", description="json, csv or html")
        ] = "json",
    ) -> Response:
        """Ranking of agencies, per-service table, funnel drop-offs, overdue applications,
        data quality per source and the methodology: the report an inspector prints and
        signs. The same numbers as `/v1/scorecard`. A browser signed in to the web view may
        open it with its session cookie instead of a token."""
        if not (credentials is None and web_view.report_allowed(request, scope, code)):
            inspector_token(authenticate(request, credentials))
        start, end = period_bounds(catalog, date_from, date_to)
        report = build_report(scorer, scope, code, start, end, datetime.now(UTC))
        body, media = render(report, fmt)
        params = {"scope": scope, "code": code, "from": start.isoformat(), "to": end.isoformat()}
        body, issued = issuing.issue(body, fmt, params)
        filename = f"servicepulse-{scope}-{start.isoformat()}-{end.isoformat()}.{fmt}"
        disposition = "inline" if fmt != "csv" else "attachment"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'{disposition}; filename="{filename}"', **issued},
        )

    _install_openapi(app)
    return app


def _install_openapi(app: FastAPI) -> None:
    """Add the msgspec-defined schemas (events, ingest results) to the OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, components = msgspec.json.schema_components(
            [Event, IngestResponse], ref_template="#/components/schemas/{name}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
