"""Settings of the web view, open data and the alert receiver (``SERVICEPULSE_*``).

A separate settings class so the API's own settings stay as they are; the app factory
builds one from the environment unless a test passes its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from contract.settings import CommonSettings, refuse_placeholder


class WebSettings(CommonSettings):
    """The web UI (sessions), the public open data and the Alertmanager webhook."""

    web_enabled: bool = Field(True, description="serve the web UI at / (sign-in with a token)")
    session_secret: SecretStr = Field(
        SecretStr("local-dev-secret"),
        description="key that signs session cookies; a real secret outside local mode",
    )
    session_max_age: timedelta = Field(
        timedelta(hours=8),
        ge=timedelta(minutes=1),
        description="how long a sign-in lasts (ISO 8601)",
    )
    cookie_secure: bool = Field(
        False, description="mark the session cookie Secure (set it when served over HTTPS)"
    )
    live_interval: timedelta = Field(
        timedelta(seconds=15),
        ge=timedelta(seconds=2),
        le=timedelta(minutes=10),
        description="how often an open page asks for fresh numbers (ISO 8601)",
    )
    open_data_enabled: bool = Field(True, description="serve public open data at /open/")
    open_data_licence: str = Field(
        "CC BY 4.0", description="licence line shown on open data pages and files"
    )
    open_data_max_age: timedelta = Field(
        timedelta(minutes=5),
        ge=timedelta(0),
        description="Cache-Control max-age of open data answers (ISO 8601, whole seconds sent)",
    )
    alerts_webhook_token: SecretStr | None = Field(
        None, description="bearer token Alertmanager must send to /v1/alerts/webhook; unset: none"
    )
    alerts_kept: int = Field(500, ge=1, description="most alerts the API remembers (newest kept)")

    old_duration_names: ClassVar[Mapping[str, tuple[str, float]]] = {
        "session_max_age": ("SESSION_MAX_AGE_SECONDS", 1.0),
        "live_interval": ("LIVE_INTERVAL_SECONDS", 1.0),
        "open_data_max_age": ("OPEN_DATA_MAX_AGE_SECONDS", 1.0),
    }

    @model_validator(mode="after")
    def _real_session_secret(self) -> Self:
        if self.web_enabled:
            refuse_placeholder(self, "session_secret", self.session_secret)
        return self
