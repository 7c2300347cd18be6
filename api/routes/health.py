"""``/healthz`` and ``/readyz``: liveness and readiness of the process."""

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import scrape
from api.deps import ServicesDep

router = APIRouter(tags=["operations"])


class ReadModelReadiness(BaseModel):
    """Progress of the read model."""

    ready: bool = Field(description="caught up with the end offsets seen at start")
    connected: bool
    lag: int = Field(description="records behind the end offsets; -1 before the first poll")
    records: int = Field(description="aggregate records applied")
    restored_from_snapshot: bool = Field(description="started from its local snapshot")
    restored_from_checkpoint: bool = Field(
        description="started from the checkpoint on <prefix>.readmodel (no usable snapshot)"
    )
    error: str = Field(description="the last Kafka error, empty if none")
    business_metrics: Literal["withheld", "served"] = Field(
        description="whether /metrics serves the business families yet"
    )


class ProducerReadiness(BaseModel):
    """Whether the API's Kafka producer is open."""

    connected: bool


class Readiness(BaseModel):
    """The answer of ``/readyz``, with 200 (ready) or 503 (not ready)."""

    status: Literal["ready", "not_ready"]
    readmodel: ReadModelReadiness
    producer: ProducerReadiness


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests (Kafka may still be unreachable)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready yet (body says why)"}},
)
async def readyz(s: ServicesDep) -> JSONResponse:
    """200 once the read model caught up with Kafka and the producer is connected."""
    st = s.model.status
    connected = s.link.connected
    ready = st.ready and connected
    body = Readiness(
        status="ready" if ready else "not_ready",
        readmodel=ReadModelReadiness(
            ready=st.ready,
            connected=st.connected,
            lag=st.lag,
            records=st.records,
            restored_from_snapshot=st.restored_from_snapshot,
            restored_from_checkpoint=st.restored_from_checkpoint,
            error=st.error,
            business_metrics="withheld" if scrape.withheld(s.model) else "served",
        ),
        producer=ProducerReadiness(connected=connected),
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
