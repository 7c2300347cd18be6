"""Errors of the API and the one place that maps them to HTTP responses.

Handlers raise an :class:`ApiError` subclass; :func:`install` registers one exception
handler that answers ``{"error": {"code", "message"}}`` with the status and headers of
the error. Messages are short and safe: they never contain a token or an event body.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract.errors import BusError, ServicePulseError

logger = logging.getLogger(__name__)


class ApiError(ServicePulseError):
    """An error answered to the client with an HTTP status and a machine-readable code."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After, WWW-Authenticate)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class BadRequest(ApiError):
    """The request is malformed as a whole (not one event in it)."""


class Unauthorized(ApiError):
    """No bearer token, or an unknown or revoked one."""

    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        """Tell the client which scheme to use."""
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    """The token is valid but may not do this (an agency token reading scorecards)."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """An unknown catalog code or resource."""

    status = 404
    code = "not_found"


class PayloadTooLarge(ApiError):
    """The body exceeds the byte limit or holds more events than allowed."""

    status = 413
    code = "payload_too_large"


class RateLimited(ApiError):
    """The token sent more events than its rate allows; retry after the given time."""

    status = 429
    code = "rate_limited"


class TooManyRequests(ApiError):
    """The token has its share of ingest requests or in-flight events in use; retry later.

    One agency's slow or many clients must not take every slot of the API: each token
    has its own cap besides the shared one.
    """

    status = 429
    code = "too_many_requests"


class UnsupportedMediaType(ApiError):
    """A body in a content type or encoding the API does not read (form, multipart, gzip)."""

    status = 415
    code = "unsupported_media_type"


class RequestTimeout(ApiError):
    """The client took too long to send the request body (a trickling upload)."""

    status = 408
    code = "request_timeout"


class TooManyFailures(ApiError):
    """This client failed to authenticate too often; no token is checked until it waits."""

    status = 429
    code = "too_many_failures"


class Unavailable(ApiError):
    """Kafka is unreachable or the API is saturated; nothing was accepted. Retry later."""

    status = 503
    code = "unavailable"


class ErrorDetail(BaseModel):
    """The body of every error response."""

    code: str = Field(description="machine-readable error code", examples=["rate_limited"])
    message: str = Field(
        description="what went wrong, for a human",
        examples=["token 3f9a1c2e exceeded 2000 events/s; retry after 1 s"],
    )


class ErrorResponse(BaseModel):
    """Envelope of an error response."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    descriptions = {
        400: "Malformed request",
        401: "Missing, unknown or revoked bearer token",
        403: "The token may not do this",
        404: "Unknown code",
        408: "The request body did not arrive in time",
        413: "Body over the byte limit or too many events",
        415: "A content type or encoding other than JSON or NDJSON, uncompressed",
        429: "Over the token's rate or share of ingest, or too many failed "
        "authentications; see Retry-After",
        503: "Kafka unavailable, API saturated or read model not ready; see Retry-After",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message}}


async def _handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    if exc.status >= 500:
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, exc.status, exc)
    return JSONResponse(
        error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers()
    )


async def _handle_bus_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("%s %s -> 503: %s", request.method, request.url.path, exc)
    err = Unavailable("Kafka is unavailable; nothing was accepted", retry_after=5)
    return JSONResponse(
        error_body(err.code, err.message), status_code=err.status, headers=err.headers()
    )


#: Codes of the HTTP errors Starlette and FastAPI raise themselves (unknown route, method).
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _handle_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """A bad query parameter: 400 naming the parameter and the rule, never the value."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return JSONResponse(error_body("invalid_parameter", "; ".join(parts)), status_code=400)


def install(app: FastAPI) -> None:
    """Register the exception handlers: every error answers ``{"error": {code, message}}``."""
    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(BusError, _handle_bus_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
