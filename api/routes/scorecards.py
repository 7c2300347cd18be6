"""``/v1/scorecard``: the client-centricity index of a scope and period, for inspectors."""

from fastapi import APIRouter

from api.deps import CodeQuery, FromQuery, InspectorDep, ScopeQuery, ServicesDep, ToQuery
from api.errors import error_responses
from api.scorecard import Scorecard, period_bounds

router = APIRouter(tags=["scorecards"])


@router.get(
    "/v1/scorecard",
    summary="Client-centricity index of a scope and period",
    response_model=Scorecard,
    response_model_by_alias=True,
    responses=error_responses(400, 401, 403, 404),
)
def get_scorecard(
    _token: InspectorDep,
    s: ServicesDep,
    scope: ScopeQuery = "region",
    code: CodeQuery = None,
    date_from: FromQuery = None,
    date_to: ToQuery = None,
) -> Scorecard:
    """Each component with numerator, denominator and value; the index and its level.

    Components with a denominator below the small-cell threshold are suppressed and
    left out of the index. Days restated after they closed are listed.
    """
    start, end = period_bounds(s.catalog, date_from, date_to)
    return s.scorer.scorecard(scope, code, start, end)
