"""One call that adds the web view to the app: its pages, static files and sessions.

``install`` mounts our static files, turns a missing session into a redirect to the
sign-in page and returns :class:`Web`: the sessions (which may authorise a report) and
the alerts store that ``api/routes/alerts.py`` fills. The pages are ``api/routes/web.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.alerts import AlertStore
from api.errors import Forbidden
from api.tokens import TokenStore
from api.web import pages
from api.web.session import Sessions
from api.web.settings import WebSettings
from contract.catalog import Catalog


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


def install(app: FastAPI, settings: WebSettings, catalog: Catalog, tokens: TokenStore) -> Web:
    """Mount the web view's static files, redirect a missing session to the sign-in page
    (when the pages are enabled) and build the sessions and the alerts store."""
    sessions = Sessions(
        settings.session_secret.get_secret_value(),
        int(settings.session_max_age.total_seconds()),
        settings.cookie_secure,
        tokens,
    )
    store = AlertStore(settings.alerts_kept)
    static = resources.files("api") / "web" / "static"
    app.mount("/static/web", StaticFiles(directory=str(static)), name="web-static")

    if settings.web_enabled:

        async def sign_in(request: Request, exc: Exception) -> Response:
            if request.headers.get("x-live") == "1" or not isinstance(exc, pages.SignInRequired):
                return Response(status_code=401)
            return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", status_code=303)

        app.add_exception_handler(pages.SignInRequired, sign_in)
    return Web(settings, sessions, store, catalog)
