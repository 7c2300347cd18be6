"""The FastAPI app factory: it wires settings, Kafka clients, read model, routers, middleware.

``create_app(settings)`` builds everything without I/O; the Kafka producer and the
read-model consumer are opened in the lifespan (in background threads, so the API
answers ``/healthz`` even while Kafka is still starting) and closed on shutdown. The
same app runs under uvicorn (``servicepulse serve``) and in-process (tests, benchmarks).
The routes are in :mod:`api.routes`, one router per concern; what they depend on
(services, the caller's token) in :mod:`api.deps`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors, openapi, scrape
from api.checkpoint import ReadModelCheckpoint
from api.deps import Services
from api.exposition import build_metrics
from api.ingest import Ingestor
from api.issuing import IssuingService, build_issuing_metrics
from api.keys import KeyStore
from api.middleware import MetricsMiddleware
from api.producer import ProducerLink
from api.ratelimit import TokenBuckets
from api.readmodel import ReadModel
from api.routes import alerts, docs, health, ingest, opendata, reports, scorecards
from api.routes import metrics as metrics_route
from api.routes import web as web_pages
from api.scorecard import Scorer
from api.server import MetricsListener
from api.settings import ApiSettings
from api.signatures import Verifier, build_signature_metrics
from api.tokens import TokenStore
from api.web.settings import WebSettings
from api.web.wiring import install as install_web
from contract.catalog import Catalog, load_catalog
from contract.methodology import Methodology, load_methodology
from contract.topics import Topics

logger = logging.getLogger(__name__)


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
        checkpoint=ReadModelCheckpoint(settings, topics),
        checkpoint_interval=settings.checkpoint_interval.total_seconds(),
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
    failures = TokenBuckets(settings.auth_failure_burst, settings.auth_failures_per_minute / 60)

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
        title=openapi.TITLE,
        version=openapi.VERSION,
        description=openapi.DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline (api/routes/docs.py)
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.proxies:
        # the client address of the failed-authentication limit; uvicorn's own proxy
        # handling is off (server.server_options) as it believes any local client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxies)
    web = web or WebSettings()
    web_view = install_web(app, web, catalog, tokens)
    app.state.services = Services(
        settings=settings,
        catalog=catalog,
        registry=registry,
        metrics=metrics,
        tokens=tokens,
        failures=failures,
        link=link,
        ingestor=ingestor,
        model=model,
        scorer=scorer,
        signatures=signatures,
        issuing=issuing,
        web=web_view,
    )
    app.mount("/static/docs", StaticFiles(directory=str(docs.ASSETS)), name="docs-static")
    app.include_router(docs.router)
    app.include_router(alerts.router)
    if web.open_data_enabled:
        app.include_router(opendata.router)
    if web.web_enabled:
        app.include_router(web_pages.router)
    app.include_router(health.router)
    if listener is None:
        app.include_router(metrics_route.router)
    app.include_router(ingest.router)
    app.include_router(scorecards.router)
    app.include_router(reports.router)
    openapi.install(app, settings)
    return app
