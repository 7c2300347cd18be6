"""How the API is served: uvicorn's options, a header-read deadline, the /metrics listener.

uvicorn has a keep-alive timeout (an idle connection between requests) but none for the
headers of a request: a client that opens a connection and sends a header byte now and
then (slowloris) holds it for ever. :class:`HeaderDeadlineProtocol` adds that deadline to
uvicorn's h11 protocol: the headers of a request must be complete within
``SERVICEPULSE_HEADER_TIMEOUT`` of the connection opening or of the previous
answer, else the connection is answered 408 and closed. The body has its own deadline
in the app (``SERVICEPULSE_BODY_TIMEOUT``).

``servicepulse serve`` and the tests build their uvicorn server from
:func:`server_options`, so both run the same protocol and options.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from uvicorn.protocols.http.h11_impl import H11Protocol

from api.errors import error_body
from api.settings import ApiSettings

logger = logging.getLogger(__name__)

_TIMEOUT_BODY: Final = (
    b'{"error":{"code":"request_timeout","message":"the request headers did not arrive in time"}}'
)
_TIMEOUT_RESPONSE: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n"
) + _TIMEOUT_BODY


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers.

    The timer runs whenever the connection waits for a request (from its opening and from
    each complete answer) and stops when the headers are parsed; data arriving does not
    reset it, so trickling bytes buys no time. ``header_timeout`` is set on a subclass by
    :func:`protocol_class`.
    """

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        timer = getattr(self, "_header_deadline", None)
        if timer is not None:
            timer.cancel()
            self._header_deadline = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def handle_events(self) -> None:
        super().handle_events()
        if not self._waiting_for_headers():
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or not self._waiting_for_headers():
            return
        logger.debug("closing a connection whose request headers did not arrive in time")
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def protocol_class(header_timeout: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's ``http`` option with this header deadline."""
    return type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout}
    )


def server_options(settings: ApiSettings) -> dict[str, Any]:
    """uvicorn options of the API (besides app, host and port).

    ``proxy_headers`` is off: the app itself believes ``X-Forwarded-For`` only from
    ``SERVICEPULSE_TRUSTED_PROXIES`` (uvicorn would believe any local client).
    ``h11_max_incomplete_event_size`` bounds the request line and headers to 16 KiB.
    """
    return {
        "http": protocol_class(settings.header_timeout.total_seconds()),
        "timeout_keep_alive": int(settings.keep_alive.total_seconds()),
        "h11_max_incomplete_event_size": 16 * 1024,
        "proxy_headers": False,
        "server_header": False,
        "ws": "none",
        "lifespan": "on",
        "log_config": None,
    }


def metrics_token_ok(settings: ApiSettings, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header value may read /metrics (always without a token)."""
    if settings.metrics_token is None:
        return True
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    # compare_digest even for a wrong scheme: the time taken says nothing about the token
    same = hmac.compare_digest(credentials.strip().encode(), expected)
    return same and scheme.lower() == "bearer"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics listener: " + format, *args)  # noqa: G003


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


#: Renders a ``/metrics`` body for an ``Accept-Encoding`` value: (bytes, headers).
MetricsRender = Callable[[str], tuple[bytes, dict[str, str]]]


class MetricsListener:
    """``/metrics`` (as ``render`` makes it) on its own port (``SERVICEPULSE_API_METRICS_PORT``),
    behind ``SERVICEPULSE_METRICS_TOKEN`` when that is set. Served by a thread; the API
    port then has no ``/metrics``.
    """

    def __init__(self, settings: ApiSettings, render: MetricsRender) -> None:
        self._settings = settings
        self._render = render
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _app(self) -> Callable[..., Iterable[bytes]]:
        render = self._render
        settings = self._settings

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                body = _json(error_body("not_found", "only /metrics is served here"))
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [body]
            if not metrics_token_ok(settings, environ.get("HTTP_AUTHORIZATION")):
                body = _json(error_body("unauthorized", "/metrics needs its bearer token"))
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
                )
                return [body]
            content, headers = render(environ.get("HTTP_ACCEPT_ENCODING", ""))
            start_response("200 OK", list(headers.items()))
            return [content]

        return app

    def start(self) -> None:
        """Bind the port and serve in a daemon thread."""
        port = self._settings.api_metrics_port
        assert port is not None  # noqa: S101 - built only with a metrics port
        self._server = make_server(
            self._settings.api_host,
            port,
            self._app(),
            server_class=_Server,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="api-metrics", daemon=True
        )
        self._thread.start()
        logger.info("/metrics served on %s:%d", self._settings.api_host, port)

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()
