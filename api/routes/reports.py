"""``/v1/reports/period``: the period report as JSON, CSV or printable HTML, issued on the log."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import (
    BearerDep,
    CodeQuery,
    FromQuery,
    ScopeQuery,
    ServicesDep,
    ToQuery,
    authenticate,
    inspector_token,
)
from api.errors import error_responses
from api.report_render import render
from api.reports import Report, build_report
from api.scorecard import period_bounds

router = APIRouter(tags=["reports"])


@router.get(
    "/v1/reports/period",
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
    s: ServicesDep,
    credentials: BearerDep,
    scope: ScopeQuery = "region",
    code: CodeQuery = None,
    date_from: FromQuery = None,
    date_to: ToQuery = None,
    fmt: Annotated[
        Literal["json", "csv", "html"], Query(alias="format", description="json, csv or html")
    ] = "json",
) -> Response:
    """Ranking of agencies, per-service table, funnel drop-offs, overdue applications,
    data quality per source and the methodology: the report an inspector prints and
    signs. The same numbers as `/v1/scorecard`. A browser signed in to the web view may
    open it with its session cookie instead of a token."""
    if not (credentials is None and s.web.report_allowed(request, scope, code)):
        inspector_token(authenticate(request, s, credentials))
    start, end = period_bounds(s.catalog, date_from, date_to)
    report = build_report(s.scorer, scope, code, start, end, datetime.now(UTC))
    body, media = render(report, fmt)
    params = {"scope": scope, "code": code, "from": start.isoformat(), "to": end.isoformat()}
    body, issued = s.issuing.issue(body, fmt, params)
    filename = f"servicepulse-{scope}-{start.isoformat()}-{end.isoformat()}.{fmt}"
    disposition = "inline" if fmt != "csv" else "attachment"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'{disposition}; filename="{filename}"', **issued},
    )
