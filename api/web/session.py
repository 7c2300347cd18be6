"""Web sessions: an API token exchanged for a signed, expiring, HttpOnly cookie.

The cookie holds the token's id, kind and agency and a per-session CSRF token, signed
with ``SERVICEPULSE_SESSION_SECRET`` by itsdangerous (HMAC-SHA1 over a timestamped
payload) and refused after ``SERVICEPULSE_SESSION_MAX_AGE``. The token itself is
never stored in the cookie. Every request checks that the token is still active, so
revoking a token ends its sessions within the token store's cache time. Every form POST
carries the session's CSRF token; the cookie is ``SameSite=Strict`` as a second guard.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from api.errors import Forbidden
from api.tokens import Kind, TokenInfo, TokenStore

COOKIE: str = "sp_session"
_SALT = "servicepulse-web-session"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in: an inspector (every agency) or one agency."""

    token_id: str
    kind: Kind
    agency: str | None
    csrf: str

    @property
    def inspector(self) -> bool:
        """Whether the viewer sees every agency."""
        return self.kind is Kind.INSPECTOR

    def may_see(self, agency: str) -> bool:
        """Whether the viewer may see this agency's numbers."""
        return self.inspector or self.agency == agency

    def require(self, agency: str) -> None:
        """Raise 403 unless the viewer may see this agency."""
        if not self.may_see(agency):
            raise Forbidden(f"token {self.token_id} belongs to another agency")


class Sessions:
    """Issues and checks session cookies."""

    def __init__(
        self, secret: str, max_age: int, secure: bool, tokens: TokenStore, recheck: float = 5.0
    ) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self.max_age = max_age
        self.secure = secure
        self._tokens = tokens
        self._recheck = recheck
        self._active: dict[str, tuple[float, bool]] = {}

    def issue(self, response: Response, info: TokenInfo) -> Viewer:
        """Set a fresh session cookie for a verified token."""
        viewer = Viewer(info.id, info.kind, info.agency, secrets.token_urlsafe(24))
        value = self._serializer.dumps(
            {"t": viewer.token_id, "k": viewer.kind.value, "a": viewer.agency, "c": viewer.csrf}
        )
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        return viewer

    def clear(self, response: Response) -> None:
        """Remove the session cookie."""
        response.delete_cookie(
            COOKIE, path="/", secure=self.secure, httponly=True, samesite="strict"
        )

    def viewer(self, request: Request) -> Viewer | None:
        """The signed-in viewer, or ``None`` (no cookie, bad signature, expired, revoked)."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a subclass
            return None
        if not isinstance(data, dict):
            return None
        try:
            viewer = Viewer(str(data["t"]), Kind(data["k"]), data.get("a"), str(data["c"]))
        except (KeyError, ValueError):
            return None
        return viewer if self._still_active(viewer.token_id) else None

    def _still_active(self, token_id: str) -> bool:
        now = time.monotonic()
        cached = self._active.get(token_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        active = any(t.id == token_id and t.active for t in self._tokens.list())
        if len(self._active) > 10_000:
            self._active.clear()
        self._active[token_id] = (now + self._recheck, active)
        return active

    @staticmethod
    def csrf_ok(viewer: Viewer, sent: str | None) -> bool:
        """Whether a form's CSRF token is the session's."""
        return bool(sent) and hmac.compare_digest(viewer.csrf, str(sent))
