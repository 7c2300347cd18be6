"""``/metrics`` on the API's port: the Prometheus exposition (unless it has a port of its own)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import scrape
from api.deps import ServicesDep
from api.errors import Unauthorized, error_responses
from api.server import metrics_token_ok

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus exposition",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(401),
    },
)
def prometheus_metrics(request: Request, s: ServicesDep) -> Response:
    """Business metrics from the read model and the API's own metrics; with
    `SERVICEPULSE_METRICS_TOKEN` set, only for `Authorization: Bearer <it>`."""
    if not metrics_token_ok(s.settings, request.headers.get("authorization")):
        raise Unauthorized("/metrics needs its bearer token (SERVICEPULSE_METRICS_TOKEN)")
    content, headers = scrape.body(
        s.model, s.registry, s.metrics, request.headers.get("accept-encoding", "")
    )
    return Response(content, headers=headers)
