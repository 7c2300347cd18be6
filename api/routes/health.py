"""``/healthz`` and ``/readyz``: liveness and readiness of the process."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import scrape
from api.deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests (Kafka may still be unreachable)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"description": "not ready yet (body says why)"}},
)
async def readyz(s: ServicesDep) -> JSONResponse:
    """200 once the read model caught up with Kafka and the producer is connected."""
    st = s.model.status
    connected = s.link.connected
    ready = st.ready and connected
    body = {
        "status": "ready" if ready else "not_ready",
        "readmodel": {
            "ready": st.ready,
            "connected": st.connected,
            "lag": st.lag,
            "records": st.records,
            "restored_from_snapshot": st.restored_from_snapshot,
            "error": st.error,
            "business_metrics": "withheld" if scrape.withheld(s.model) else "served",
        },
        "producer": {"connected": connected},
    }
    return JSONResponse(body, status_code=200 if ready else 503)
