"""The OpenAPI document: title, description, and what FastAPI cannot derive itself.

The event and the ingest results are msgspec Structs (decoded on the hot path), so their
schemas are added as components here; the request body of ``POST /v1/events`` is read
raw and documented with this deployment's limits.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.ingest import IngestResponse
from api.routes import ingest as ingest_routes
from api.settings import ApiSettings
from contract.events import Event

TITLE = "ServicePulse API"
VERSION = "1.0.0"

DESCRIPTION = """\
ServicePulse API: agencies push usage events of public services; inspectors read the
client-centricity index as scorecards and period reports; Prometheus scrapes `/metrics`.

**Authentication**: `Authorization: Bearer <token>`. Agency tokens (`servicepulse tokens
create --agency CODE`) may push events of their own agency only; inspector tokens
(`--inspector`) are read-only and see every agency.

**Signed batches** (optional, or required by an agency's policy): the headers
`X-ServicePulse-Key-Id`, `-Timestamp`, `-Nonce` and `-Signature` carry an Ed25519
signature of the exact body (docs/API.md, "Signed batches"); a refused batch is answered
with its own error code and nothing of it is written.

**Issued reports** are recorded in a signed, hash-chained log before they are answered
(`X-ServicePulse-Log-Seq`); `servicepulse reports verify FILE` checks a file later.

**Ingest guarantees**: an event reported `accepted` was acknowledged by Kafka
(`acks=all`). On 503 nothing of the batch was accepted: retry the same batch after
`Retry-After` seconds; event ids already written are answered `duplicate` or counted once
by the processor.
"""


def install(app: FastAPI, settings: ApiSettings) -> None:
    """Make ``app.openapi()`` build (once) the document with the msgspec schemas and the
    ingest request body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, components = msgspec.json.schema_components(
            [Event, IngestResponse], ref_template="#/components/schemas/{name}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
        post = schema.get("paths", {}).get("/v1/events", {}).get("post")
        if post is not None:
            post["requestBody"] = ingest_routes.request_body(
                settings.max_events, settings.max_body_bytes
            )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
