"""``/open/`` and ``/open/v1/...``: public open data, no token (see :mod:`api.opendata`).

Answers carry an ``ETag`` (a hash of the body; ``If-None-Match`` gets 304) and
``Cache-Control: public``; ``SERVICEPULSE_OPEN_DATA_ENABLED=false`` leaves the router out.
"""

import functools
import hashlib
import json
from datetime import date, timedelta
from typing import Annotated

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import Services, ServicesDep
from api.errors import error_responses
from api.opendata import Grain, Level, OpenFile, bounds, build, to_csv
from api.scorecard import LEVEL_NAMES
from api.web import pages

router = APIRouter(tags=["open data"])

OpenFromQuery = Annotated[date | None, Query(alias="from", description="first day (YYYY-MM-DD)")]
OpenToQuery = Annotated[date | None, Query(alias="to", description="last day, inclusive")]


@functools.cache
def _page() -> jinja2.Template:
    return pages.environment().get_template("open.html")


def _file(s: Services, level: Level, grain: Grain, d0: date | None, d1: date | None) -> OpenFile:
    scorer, licence = s.scorer, s.web.settings.open_data_licence
    start, end = bounds(scorer, grain, d0, d1)
    result: OpenFile = scorer.cached(
        ("open", level, grain, start, end),
        lambda: build(scorer, level, grain, start, end, licence),
    )
    return result


def _cached(request: Request, s: Services, body: bytes, media: str) -> Response:
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": tag,
        "Cache-Control": f"public, max-age={int(s.web.settings.open_data_max_age.total_seconds())}",
        "Access-Control-Allow-Origin": "*",
    }
    sent = request.headers.get("if-none-match", "")
    if tag in [t.strip() for t in sent.split(",")] or sent.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


@router.get(
    "/open/v1/{level}/{grain}.json",
    summary="Open data as JSON",
    response_model=OpenFile,
    response_model_by_alias=True,
    responses=error_responses(400),
)
def open_json(
    request: Request,
    s: ServicesDep,
    level: Level,
    grain: Grain,
    date_from: OpenFromQuery = None,
    date_to: OpenToQuery = None,
) -> Response:
    """Index and components per agency or service, per day (default: the last 30 days)
    or month (default: the last 12 months); small cells suppressed. No token."""
    f = _file(s, level, grain, date_from, date_to)
    body = f.model_dump_json(by_alias=True).encode()
    return _cached(request, s, body, "application/json")


@router.get(
    "/open/v1/{level}/{grain}.csv",
    summary="Open data as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **error_responses(400)},
)
def open_csv(
    request: Request,
    s: ServicesDep,
    level: Level,
    grain: Grain,
    date_from: OpenFromQuery = None,
    date_to: OpenToQuery = None,
) -> Response:
    """The same rows as the JSON file, one line per cell and metric, UTF-8 with BOM."""
    f = _file(s, level, grain, date_from, date_to)
    return _cached(request, s, to_csv(f), "text/csv; charset=utf-8")


@router.get("/open/v1/schema.json", summary="JSON Schema of the open data files")
def open_schema(request: Request, s: ServicesDep) -> Response:
    """The JSON Schema of schema version 1 (see docs/OPENDATA.md)."""
    body = json.dumps(OpenFile.model_json_schema(by_alias=True), ensure_ascii=False)
    return _cached(request, s, body.encode(), "application/json")


@router.get("/open/", response_class=HTMLResponse, include_in_schema=False)
def open_page(
    request: Request,
    s: ServicesDep,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> Response:
    scorer = s.scorer
    # only the month shown is computed; the list of months comes from the days held
    months = sorted({d[:7] for d in scorer.model.days()})
    shown = month if month in months else (months[-1] if months else None)
    if shown is None:
        f = _file(s, "agencies", "month", None, None)
    else:
        first = date.fromisoformat(shown + "-01")
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        f = _file(s, "agencies", "month", first, last)
    html = _page().render(
        f=f,
        rows=f.rows,
        month=shown,
        months=months,
        region=scorer.catalog.file.region.name,
        LEVEL_NAMES=LEVEL_NAMES,
        names={c.code: c.name for c in scorer.methodology.components},
    )
    return _cached(request, s, html.encode(), "text/html; charset=utf-8")
