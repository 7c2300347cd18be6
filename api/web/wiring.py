"""One call that adds the web view, open data, the alert receiver and offline docs to the app.

``install`` includes the routers, mounts the static files (ours and the Swagger UI / ReDoc
assets shipped by the ``fastapi-offline`` package, so ``/docs`` works on a closed network)
and turns a missing session into a redirect to the sign-in page.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api import opendata
from api.alerts import AlertStore
from api.alerts import router as alerts_router
from api.errors import Forbidden
from api.readmodel import ReadModel
from api.scorecard import Scorer
from api.tokens import FailureLimiter, TokenStore
from api.web import pages
from api.web.session import Sessions
from api.web.settings import WebSettings
from contract.catalog import Catalog

_DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"


@dataclass
class Web:
    """What the app keeps of the web view: sessions (the report hook) and the alerts."""

    settings: WebSettings
    sessions: Sessions
    alerts: AlertStore
    catalog: Catalog

    def report_allowed(self, request: Request, scope: str, code: str | None) -> bool:
        """Whether a session cookie authorises this report (``False``: no session; the
        bearer token decides). An agency may open the reports of its own agency and
        services only; anything else is 403."""
        v = self.sessions.viewer(request)
        if v is None:
            return False
        if v.inspector:
            return True
        owner = None
        if scope == "agency":
            owner = code
        elif scope == "service" and code in self.catalog.services:
            owner = self.catalog.services[code].service.agency
        if owner is None or owner != v.agency:
            raise Forbidden(f"token {v.token_id} may open only the reports of its own agency")
        return True


def install(
    app: FastAPI,
    settings: WebSettings,
    scorer: Scorer,
    model: ReadModel,
    tokens: TokenStore,
    failures: FailureLimiter,
) -> Web:
    """Add every route of the web view to ``app`` (created with ``docs_url=None``)."""
    sessions = Sessions(
        settings.session_secret.get_secret_value(),
        int(settings.session_max_age.total_seconds()),
        settings.cookie_secure,
        tokens,
    )
    store = AlertStore(settings.alerts_kept)
    static = resources.files("api") / "web" / "static"
    app.mount("/static/web", StaticFiles(directory=str(static)), name="web-static")
    app.mount("/static/docs", StaticFiles(directory=str(_DOCS_ASSETS)), name="docs-static")
    app.include_router(alerts_router(store, settings.alerts_webhook_token))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: документация",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
            # Swagger UI would fetch a validity badge from its public validator otherwise
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: документация",
            redoc_js_url="/static/docs/redoc.standalone.js",
            redoc_favicon_url="/static/docs/favicon.png",
            with_google_fonts=False,
        )

    env = pages.environment()
    if settings.open_data_enabled:
        app.include_router(
            opendata.router(
                scorer,
                settings.open_data_licence,
                int(settings.open_data_max_age.total_seconds()),
                env.get_template("open.html"),
            )
        )
    if settings.web_enabled:
        app.include_router(pages.router(settings, scorer, model, tokens, store, failures, sessions))

        async def sign_in(request: Request, exc: Exception) -> Response:
            if request.headers.get("x-live") == "1" or not isinstance(exc, pages.SignInRequired):
                return Response(status_code=401)
            return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", status_code=303)

        app.add_exception_handler(pages.SignInRequired, sign_in)
    return Web(settings, sessions, store, scorer.catalog)
