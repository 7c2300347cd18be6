"""The web view's pages: sign-in, the inspectors' and agencies' pages, live updates.

What they share (templates, headers, the sign-in redirect) is in :mod:`api.web.pages`;
who sees what is said there. ``SERVICEPULSE_WEB_ENABLED=false`` leaves the router out.
"""

import functools
import secrets
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import Services, ServicesDep
from api.errors import BadRequest, Forbidden, NotFound, TooManyFailures
from api.scorecard import Scope, period_bounds
from api.tokens import Kind
from api.web import ru, views
from api.web.pages import HEADERS, LOGIN_COOKIE, SignInRequired, environment, safe_next
from api.web.session import Viewer

router = APIRouter(include_in_schema=False)


@functools.cache
def _env() -> jinja2.Environment:
    return environment()


def viewer(request: Request, s: ServicesDep) -> Viewer:
    """Who is signed in; :class:`SignInRequired` (a redirect to /login) if nobody."""
    v = s.web.sessions.viewer(request)
    if v is None:
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(url)
    return v


Who = Annotated[Viewer, Depends(viewer)]


def inspector(v: Who) -> Viewer:
    """A signed-in inspector; 403 for an agency."""
    if not v.inspector:
        raise Forbidden(f"token {v.token_id} is an agency token: this page is for inspectors")
    return v


def period(
    s: ServicesDep,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
) -> views.Period:
    """The period a page shows (default: the last 30 days)."""
    start, end = period_bounds(s.catalog, date_from, date_to)
    return views.Period(start, end)


Inspector = Annotated[Viewer, Depends(inspector)]
When = Annotated[views.Period, Depends(period)]


def _page(
    request: Request, s: Services, name: str, v: Viewer | None, title: str, **ctx: Any
) -> HTMLResponse:
    now = datetime.now(UTC)
    model, catalog = s.model, s.catalog
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
        "interval": int(s.web.settings.live_interval.total_seconds()),
        "open_data": s.web.settings.open_data_enabled,
        "path": request.url.path,
        "live": request.headers.get("x-live") == "1",
        **ctx,
    }
    html = _env().get_template(name).render(**context)
    return HTMLResponse(html, headers=HEADERS)


def _scope_page(
    request: Request,
    s: Services,
    v: Viewer,
    p: views.Period,
    scope: Scope,
    code: str | None,
    template: str,
    **extra: Any,
) -> HTMLResponse:
    rep = views.report(s.scorer, scope, code, p)
    chart = views.trend(s.scorer, scope, code, p)
    report_q = f"scope={scope}" + (f"&code={quote(code)}" if code else "") + f"&{p.query()}"
    return _page(
        request,
        s,
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


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 8192:
        raise BadRequest("the form is too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


# -- sign-in ------------------------------------------------------------------------------


@router.get("/login")
def login_form(
    request: Request, s: ServicesDep, next: str | None = None, error: str = ""
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    resp = _page(
        request, s, "login.html", None, "Вход", nonce=nonce, next=safe_next(next), error=error
    )
    resp.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=900,
        httponly=True,
        samesite="strict",
        secure=s.web.settings.cookie_secure,
        path="/login",
    )
    return resp


@router.post("/login")
async def login(request: Request, s: ServicesDep) -> Response:
    f = await _form(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not secrets.compare_digest(nonce, f.get("csrf", "")):
        raise Forbidden("the sign-in form expired or came from another site: reload it")
    client = request.client.host if request.client else "unknown"
    wait = s.failures.wait(client)
    if wait > 0:
        raise TooManyFailures("too many failed sign-ins; wait and retry", retry_after=wait)
    info = s.tokens.verify(f.get("token", "").strip())
    nxt = safe_next(f.get("next"))
    if info is None:
        s.failures.spend(client)
        return RedirectResponse(f"/login?error=1&next={quote(nxt)}", status_code=303)
    if nxt == "/" and info.kind is not Kind.INSPECTOR and info.agency:
        nxt = f"/agency/{info.agency}"
    resp = RedirectResponse(nxt, status_code=303)
    s.web.sessions.issue(resp, info)
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, v: Who, s: ServicesDep) -> Response:
    f = await _form(request)
    if not s.web.sessions.csrf_ok(v, f.get("csrf")):
        raise Forbidden("the form's CSRF token does not match the session")
    resp = RedirectResponse("/login", status_code=303)
    s.web.sessions.clear(resp)
    return resp


# -- pages --------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, v: Who, p: When, s: ServicesDep) -> Response:
    if not v.inspector:
        return RedirectResponse(f"/agency/{v.agency}?{p.query()}", status_code=303)
    rep = views.report(s.scorer, "region", None, p)
    return _scope_page(
        request,
        s,
        v,
        p,
        "region",
        None,
        "overview.html",
        ranking=views.ranking_chart(rep),
        life_situations=list(s.catalog.life_situations.values()),
    )


@router.get("/agency/{code}")
def agency(request: Request, code: str, v: Who, p: When, s: ServicesDep) -> HTMLResponse:
    if code not in s.catalog.agencies:
        raise NotFound(f"unknown agency {code!r}")
    v.require(code)
    rep = views.report(s.scorer, "agency", code, p)
    return _scope_page(request, s, v, p, "agency", code, "agency.html", gaps=views.gaps(rep))


@router.get("/service/{code}")
def service(request: Request, code: str, v: Who, p: When, s: ServicesDep) -> HTMLResponse:
    scorer = s.scorer
    idx = s.catalog.services.get(code)
    if idx is None:
        raise NotFound(f"unknown service {code!r}")
    v.require(idx.service.agency)
    rep = views.report(scorer, "service", code, p)
    return _scope_page(
        request,
        s,
        v,
        p,
        "service",
        code,
        "service.html",
        svc=idx.service,
        row=next((row for row in rep.services if row.code == code), None),
        channels=views.channel_funnels(scorer, code),
        funnel=views.funnel_chart(rep, code),
        decisions=views.decisions(scorer, code, p),
        gaps=views.gaps(rep),
    )


@router.get("/life/{code}")
def life(request: Request, code: str, v: Inspector, p: When, s: ServicesDep) -> HTMLResponse:
    ls = s.catalog.life_situations.get(code)
    if ls is None:
        raise NotFound(f"unknown life situation {code!r}")
    return _scope_page(
        request,
        s,
        v,
        p,
        "life_situation",
        code,
        "life.html",
        ls=ls,
        case=views.case_time(s.scorer, code, p),
    )


@router.get("/offices")
def offices(
    request: Request, v: Who, p: When, s: ServicesDep, agency: str | None = None
) -> HTMLResponse:
    scorer = s.scorer
    if agency is not None:
        if agency not in s.catalog.agencies:
            raise NotFound(f"unknown agency {agency!r}")
        v.require(agency)
    elif not v.inspector:
        agency = v.agency
    rows = views.offices(scorer, agency, p)
    minutes = scorer.methodology.standards.office_wait_seconds // 60
    target = views.wait_target(scorer)
    return _page(
        request,
        s,
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


@router.get("/quality")
def quality(request: Request, v: Who, p: When, s: ServicesDep) -> HTMLResponse:
    scope: Scope = "region" if v.inspector else "agency"
    rep = views.report(s.scorer, scope, None if v.inspector else v.agency, p)
    return _page(request, s, "quality.html", v, "Качество данных", r=rep, p=p)


@router.get("/perceived")
def perceived_page(request: Request, v: Who, p: When, s: ServicesDep) -> HTMLResponse:
    scope: Scope = "region" if v.inspector else "agency"
    rep = views.report(s.scorer, scope, None if v.inspector else v.agency, p)
    return _page(
        request,
        s,
        "perceived.html",
        v,
        "Измеренное и воспринимаемое",
        r=rep,
        p=p,
        gaps=views.gaps(rep),
    )


@router.get("/alerts")
def alerts_page(request: Request, v: Inspector, s: ServicesDep) -> HTMLResponse:
    items = s.web.alerts.list()
    tz = s.catalog.tz
    return _page(
        request,
        s,
        "alerts.html",
        v,
        "Оповещения",
        items=items,
        firing=sum(1 for a in items if a.status == "firing"),
        local=lambda t: ru.local_time(t, tz),
        view=lambda a: views.alert_view(a, s.catalog),
    )
