"""``POST /v1/events`` and the JSON Schema of an event: the agencies' way in."""

import asyncio
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from api.deps import AgencyDep, ServicesDep
from api.errors import BadRequest, PayloadTooLarge, RequestTimeout, error_responses
from api.media import NDJSON_TYPES, media_of, without_signature
from contract.events import json_schema

router = APIRouter(tags=["ingest"])

EVENT_EXAMPLE = {
    "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
    "type": "journey.started",
    "schema_version": 1,
    "occurred_at": "2026-11-26T10:15:00+05:00",
    "agency": "minsoc",
    "service": "large_family_status",
    "municipality": "75701000",
    "channel": "portal",
    "journey": "j-20261126-000123",
}

_RESULTS_EXAMPLE = {
    "accepted": 1,
    "duplicates": 0,
    "rejected": 1,
    "results": [
        {"index": 0, "status": "accepted", "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b"},
        {
            "index": 1,
            "status": "rejected",
            "event_id": "5d0c9a1e-3b7f-4e2a-8c6d-1f2e3a4b5c6d",
            "code": 422,
            "problems": [
                {
                    "field": "attrs.score",
                    "reason": "out_of_range",
                    "message": "attrs.score: Expected `int` <= 5",
                }
            ],
        },
    ],
}


def request_body(max_events: int, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of ``POST /v1/events`` with this deployment's limits.

    The body is read raw (its bytes are what a signature covers), so FastAPI cannot
    derive it from a parameter; :mod:`api.openapi` puts it in the document.
    """
    return {
        "required": True,
        "description": (
            f"Up to {max_events} events and {max_body_bytes} bytes: "
            "a JSON array, or NDJSON (one event per line)."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Event"},
                    "maxItems": max_events,
                },
                "example": [EVENT_EXAMPLE],
            },
            "application/x-ndjson": {
                "schema": {"type": "string"},
                "example": msgspec.json.encode(EVENT_EXAMPLE).decode() + "\n",
            },
        },
    }


@router.get("/v1/schema/event", summary="JSON Schema of an event")
async def event_schema() -> dict[str, Any]:
    """The JSON Schema of event contract v1 (what every event of a batch must be)."""
    return json_schema()


@router.post(
    "/v1/events",
    summary="Push a batch of events",
    response_class=Response,
    responses={
        200: {
            "description": (
                "The batch was processed: one result per event, in order. `accepted` "
                "events were acknowledged by Kafka; `rejected` ones carry code 403 "
                "(another agency's event) or 422 (invalid) with field and reason."
            ),
            "content": {
                "application/json": {
                    # IngestResponse is a msgspec Struct: api.openapi adds its schema
                    "schema": {"$ref": "#/components/schemas/IngestResponse"},
                    "example": _RESULTS_EXAMPLE,
                }
            },
        },
        **error_responses(400, 401, 403, 408, 413, 415, 429, 503),
    },
)
async def post_events(request: Request, token: AgencyDep, s: ServicesDep) -> Response:
    """Validate every event, write the valid ones to Kafka, answer per event.

    Idempotent by `event_id` per agency: a repeat of an id this API wrote recently
    for the same agency is answered `duplicate` and not written again.
    """
    settings, ingestor = s.settings, s.ingestor
    media = media_of(request.headers)
    # the body is read holding only this token's slot: a trickling client of one
    # agency never holds a slot the others need
    with ingestor.admit_token(token.id):
        body = await _read_body(
            request, settings.max_body_bytes, settings.body_timeout.total_seconds()
        )
        # the signature covers the bytes as sent (a byte order mark included)
        with s.signatures.verified(request.headers, body, token.agency or "") as signed:
            headers = signed.record_headers if signed else None
            body = without_signature(body)
            with ingestor.admit():
                outcome = await ingestor.ingest(
                    body, token, ndjson=media in NDJSON_TYPES, record_headers=headers
                )
    return Response(outcome.body, media_type="application/json")


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes, and with
    408 when it has not all arrived within ``timeout`` seconds (a trickling client would
    otherwise hold its ingest slot for ever)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"the body is {int(length)} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout:g} s ({size} bytes came)"
        ) from None
    except ClientDisconnect:
        # nobody reads the answer; it keeps a traceback and a false 500 out of logs and metrics
        raise BadRequest(f"the client went away after {size} bytes of the body") from None
    return b"".join(chunks)
