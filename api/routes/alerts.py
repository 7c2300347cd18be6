"""``POST /v1/alerts/webhook``: Alertmanager's receiver, feeding the web view's alerts page."""

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.alerts import Notification
from api.deps import ServicesDep
from api.errors import Unauthorized, error_responses

router = APIRouter(tags=["alerts"])

_bearer = HTTPBearer(auto_error=False, description="the alerts webhook token, if set")


@router.post(
    "/v1/alerts/webhook",
    summary="Alertmanager webhook receiver",
    responses=error_responses(400, 401),
)
def webhook(
    note: Notification,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    s: ServicesDep,
) -> dict[str, Any]:
    """Takes Alertmanager's notifications (webhook payload version 4) for the alerts
    page. With `SERVICEPULSE_ALERTS_WEBHOOK_TOKEN` set, Alertmanager must send it as a
    bearer token (`http_config.authorization.credentials`)."""
    token = s.web.settings.alerts_webhook_token
    if token is not None:
        sent = credentials.credentials if credentials else ""
        if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
            raise Unauthorized("send the alerts webhook token as Authorization: Bearer")
    return {"alerts": s.web.alerts.add(note)}
