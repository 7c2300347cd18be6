"""The web view's routes: sign-in, the inspectors' and agencies' pages, live updates.

Server-rendered Russian HTML (Jinja2 templates in ``templates/``), one stylesheet and one
small script of ours (``static/``), charts as server-made SVG. No page loads anything from
another host. A page asked with ``X-Live: 1`` answers only its ``<main>`` so the script can
swap it in without a reload (every ``live_interval``).

Who sees what: an inspector every page; an agency its own agency, services, offices and
data quality; another agency's page or data answers 403 with the API's error shape.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations of the route
# functions defined inside router(), which refer to local dependencies.

import secrets
from datetime import UTC, date, datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.alerts import AlertStore
from api.errors import BadRequest, Forbidden, NotFound, TooManyFailures
from api.readmodel import ReadModel
from api.scorecard import LEVEL_NAMES, Scope, Scorer, period_bounds
from api.tokens import FailureLimiter, Kind, TokenStore
from api.web import ru, views
from api.web.session import Sessions, Viewer
from api.web.settings import WebSettings

_LOGIN_COOKIE = "sp_login"
#: Nothing from another host: the policy a browser enforces besides our own discipline.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SignInRequired(Exception):
    """Raised by a page dependency when nobody is signed in: redirect to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def environment() -> jinja2.Environment:
    """The templates of the web view with the Russian formatting filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("api") / "web" / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = ru.num
    env.filters["pct"] = ru.pct
    env.filters["points"] = ru.points
    env.filters["month"] = ru.month
    env.globals["LEVEL_NAMES"] = LEVEL_NAMES
    env.globals["CHANNEL_RU"] = views.CHANNEL_RU
    env.globals["plural"] = ru.plural
    env.globals["count"] = ru.count
    return env


def _safe_next(value: str | None) -> str:
    # only paths of this site: no scheme, no host, no protocol-relative //
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def router(
    settings: WebSettings,
    scorer: Scorer,
    model: ReadModel,
    tokens: TokenStore,
    alerts: AlertStore,
    failures: FailureLimiter,
    sessions: Sessions,
) -> APIRouter:
    """The pages (see the module docstring)."""
    catalog = scorer.catalog
    env = environment()
    r = APIRouter(include_in_schema=False)

    def viewer(request: Request) -> Viewer:
        v = sessions.viewer(request)
        if v is None:
            url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(url)
        return v

    def inspector(v: Annotated[Viewer, Depends(viewer)]) -> Viewer:
        if not v.inspector:
            raise Forbidden(f"token {v.token_id} is an agency token: this page is for inspectors")
        return v

    def period(
        date_from: Annotated[date | None, Query(alias="from")] = None,
        date_to: Annotated[date | None, Query(alias="to")] = None,
    ) -> views.Period:
        start, end = period_bounds(catalog, date_from, date_to)
        return views.Period(start, end)

    Who = Annotated[Viewer, Depends(viewer)]
    Inspector = Annotated[Viewer, Depends(inspector)]
    When = Annotated[views.Period, Depends(period)]

    def page(request: Request, name: str, v: Viewer | None, title: str, **ctx: Any) -> HTMLResponse:
        now = datetime.now(UTC)
        st = model.status
        fresh, fresh_level = ru.freshness(model.watermark(), st.lag, st.ready, now, catalog.tz)
        context = {
            "title": title,
            "viewer": v,
            "region": catalog.file.region.name,
            "agencies": catalog.agencies,
            "fresh": fresh,
            "fresh_level": fresh_level,
            "updated": ru.local_time(now, catalog.tz),
            "interval": int(settings.live_interval.total_seconds()),
            "open_data": settings.open_data_enabled,
            "path": request.url.path,
            "live": request.headers.get("x-live") == "1",
            **ctx,
        }
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, headers=_HEADERS)

    def scope_page(
        request: Request,
        v: Viewer,
        p: views.Period,
        scope: Scope,
        code: str | None,
        template: str,
        **extra: Any,
    ) -> HTMLResponse:
        rep = views.report(scorer, scope, code, p)
        chart = views.trend(scorer, scope, code, p)
        report_q = f"scope={scope}" + (f"&code={quote(code)}" if code else "") + f"&{p.query()}"
        return page(
            request,
            template,
            v,
            rep.name,
            r=rep,
            sc=rep.summary,
            trend=chart,
            p=p,
            report_q=report_q,
            **extra,
        )

    # -- sign-in ------------------------------------------------------------------------------

    @r.get("/login")
    def login_form(request: Request, next: str | None = None, error: str = "") -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        resp = page(
            request, "login.html", None, "Вход", nonce=nonce, next=_safe_next(next), error=error
        )
        resp.set_cookie(
            _LOGIN_COOKIE,
            nonce,
            max_age=900,
            httponly=True,
            samesite="strict",
            secure=settings.cookie_secure,
            path="/login",
        )
        return resp

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > 8192:
            raise BadRequest("the form is too large")
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    @r.post("/login")
    async def login(request: Request) -> Response:
        f = await form(request)
        nonce = request.cookies.get(_LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(nonce, f.get("csrf", "")):
            raise Forbidden("the sign-in form expired or came from another site: reload it")
        client = request.client.host if request.client else "unknown"
        wait = failures.wait(client)
        if wait > 0:
            raise TooManyFailures("too many failed sign-ins; wait and retry", retry_after=wait)
        info = tokens.verify(f.get("token", "").strip())
        nxt = _safe_next(f.get("next"))
        if info is None:
            failures.failed(client)
            return RedirectResponse(f"/login?error=1&next={quote(nxt)}", status_code=303)
        if nxt == "/" and info.kind is not Kind.INSPECTOR and info.agency:
            nxt = f"/agency/{info.agency}"
        resp = RedirectResponse(nxt, status_code=303)
        sessions.issue(resp, info)
        resp.delete_cookie(_LOGIN_COOKIE, path="/login")
        return resp

    @r.post("/logout")
    async def logout(request: Request, v: Who) -> Response:
        f = await form(request)
        if not sessions.csrf_ok(v, f.get("csrf")):
            raise Forbidden("the form's CSRF token does not match the session")
        resp = RedirectResponse("/login", status_code=303)
        sessions.clear(resp)
        return resp

    # -- pages --------------------------------------------------------------------------------

    @r.get("/")
    def overview(request: Request, v: Who, p: When) -> Response:
        if not v.inspector:
            return RedirectResponse(f"/agency/{v.agency}?{p.query()}", status_code=303)
        rep = views.report(scorer, "region", None, p)
        return scope_page(
            request,
            v,
            p,
            "region",
            None,
            "overview.html",
            ranking=views.ranking_chart(rep),
            life_situations=list(catalog.life_situations.values()),
        )

    @r.get("/agency/{code}")
    def agency(request: Request, code: str, v: Who, p: When) -> HTMLResponse:
        if code not in catalog.agencies:
            raise NotFound(f"unknown agency {code!r}")
        v.require(code)
        rep = views.report(scorer, "agency", code, p)
        return scope_page(request, v, p, "agency", code, "agency.html", gaps=views.gaps(rep))

    @r.get("/service/{code}")
    def service(request: Request, code: str, v: Who, p: When) -> HTMLResponse:
        idx = catalog.services.get(code)
        if idx is None:
            raise NotFound(f"unknown service {code!r}")
        v.require(idx.service.agency)
        rep = views.report(scorer, "service", code, p)
        return scope_page(
            request,
            v,
            p,
            "service",
            code,
            "service.html",
            svc=idx.service,
            row=next((s for s in rep.services if s.code == code), None),
            channels=views.channel_funnels(scorer, code),
            funnel=views.funnel_chart(rep, code),
            decisions=views.decisions(scorer, code, p),
            gaps=views.gaps(rep),
        )

    @r.get("/life/{code}")
    def life(request: Request, code: str, v: Inspector, p: When) -> HTMLResponse:
        ls = catalog.life_situations.get(code)
        if ls is None:
            raise NotFound(f"unknown life situation {code!r}")
        return scope_page(
            request,
            v,
            p,
            "life_situation",
            code,
            "life.html",
            ls=ls,
            case=views.case_time(scorer, code, p),
        )

    @r.get("/offices")
    def offices(request: Request, v: Who, p: When, agency: str | None = None) -> HTMLResponse:
        if agency is not None:
            if agency not in catalog.agencies:
                raise NotFound(f"unknown agency {agency!r}")
            v.require(agency)
        elif not v.inspector:
            agency = v.agency
        rows = views.offices(scorer, agency, p)
        minutes = scorer.methodology.standards.office_wait_seconds // 60
        target = views.wait_target(scorer)
        return page(
            request,
            "offices.html",
            v,
            "Ожидание в офисах",
            rows=rows,
            p=p,
            minutes=minutes,
            target=target,
            chart=views.office_chart(rows, minutes, target),
            munis=views.municipality_waits(scorer, [agency] if agency else None),
            agency=agency,
        )

    @r.get("/quality")
    def quality(request: Request, v: Who, p: When) -> HTMLResponse:
        scope: Scope = "region" if v.inspector else "agency"
        rep = views.report(scorer, scope, None if v.inspector else v.agency, p)
        return page(request, "quality.html", v, "Качество данных", r=rep, p=p)

    @r.get("/perceived")
    def perceived_page(request: Request, v: Who, p: When) -> HTMLResponse:
        scope: Scope = "region" if v.inspector else "agency"
        rep = views.report(scorer, scope, None if v.inspector else v.agency, p)
        return page(
            request,
            "perceived.html",
            v,
            "Измеренное и воспринимаемое",
            r=rep,
            p=p,
            gaps=views.gaps(rep),
        )

    @r.get("/alerts")
    def alerts_page(request: Request, v: Inspector) -> HTMLResponse:
        items = alerts.list()
        return page(
            request,
            "alerts.html",
            v,
            "Оповещения",
            items=items,
            firing=sum(1 for a in items if a.status == "firing"),
            local=lambda t: ru.local_time(t, catalog.tz),
        )

    return r
