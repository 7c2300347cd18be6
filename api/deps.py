"""What the routes depend on: the app's services, the caller's token and shared parameters.

The app factory (:func:`api.app.create_app`) builds one :class:`Services` and keeps it in
``app.state.services``; routes ask for it, or for the principal, with the ``Annotated``
aliases below (``InspectorDep``, ``AgencyDep``, ...), as FastAPI's full-stack template
does with its ``SessionDep`` and ``CurrentUser``.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at run time.

import math
from dataclasses import dataclass
from datetime import date
from typing import Annotated, cast

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from api.errors import Forbidden, TooManyFailures, Unauthorized
from api.exposition import ApiMetrics
from api.ingest import Ingestor
from api.issuing import IssuingService
from api.producer import ProducerLink
from api.ratelimit import TokenBuckets
from api.readmodel import ReadModel
from api.scorecard import Scope, Scorer
from api.settings import ApiSettings
from api.signatures import Verifier
from api.tokens import Kind, TokenInfo, TokenStore
from api.web.wiring import Web
from contract.catalog import Catalog


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the routes use, built once by the app factory (no I/O)."""

    settings: ApiSettings
    catalog: Catalog
    registry: CollectorRegistry
    metrics: ApiMetrics
    tokens: TokenStore
    #: failed authentications per client address (bearer tokens and web sign-in)
    failures: TokenBuckets
    link: ProducerLink
    ingestor: Ingestor
    model: ReadModel
    scorer: Scorer
    signatures: Verifier
    issuing: IssuingService
    web: Web


async def services(request: Request) -> Services:
    """The app's :class:`Services` (async: FastAPI would run a plain function of this in
    its thread pool, a hop per request for an attribute read)."""
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(services)]

bearer = HTTPBearer(auto_error=False, description="an agency or inspector token")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def authenticate(request: Request, s: ServicesDep, credentials: BearerDep) -> TokenInfo:
    """The token of the request: 401 without a known one, 429 while the client's failed
    authentications are over their limit (then not even a right token is checked)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send Authorization: Bearer <token>")
    # the peer, or with SERVICEPULSE_TRUSTED_PROXIES the address a proxy forwarded
    client = request.client.host if request.client else "unknown"
    wait = s.failures.wait(client)
    if wait > 0:
        # guessing learns nothing while the client waits
        raise TooManyFailures(
            f"too many failed authentications from this address; retry after {math.ceil(wait)} s",
            retry_after=wait,
        )
    info = s.tokens.verify(credentials.credentials)
    if info is None:
        s.failures.spend(client)
        raise Unauthorized("unknown or revoked token")
    return info


TokenDep = Annotated[TokenInfo, Depends(authenticate)]


def agency_token(info: TokenDep) -> TokenInfo:
    """An agency token (it may push its agency's events); 403 for an inspector token."""
    if info.kind is not Kind.AGENCY or not info.agency:
        raise Forbidden(f"token {info.id} is an inspector token: it cannot push events")
    return info


def inspector_token(info: TokenDep) -> TokenInfo:
    """An inspector token (read-only, every agency); 403 for an agency token."""
    if info.kind is not Kind.INSPECTOR:
        raise Forbidden(f"token {info.id} is an agency token: scorecards need an inspector")
    return info


AgencyDep = Annotated[TokenInfo, Depends(agency_token)]
InspectorDep = Annotated[TokenInfo, Depends(inspector_token)]

# -- the query parameters of a scope and period (scorecards and reports) -----------------------

ScopeQuery = Annotated[Scope, Query(description="region, agency, service or life_situation")]
CodeQuery = Annotated[
    str | None,
    Query(
        description="catalog code of the agency, service or life situation",
        examples=["minsoc"],
        max_length=64,
    ),
]
FromQuery = Annotated[
    date | None,
    Query(alias="from", description="first day (YYYY-MM-DD); default: 29 days before `to`"),
]
ToQuery = Annotated[
    date | None,
    Query(alias="to", description="last day, inclusive (YYYY-MM-DD); default: today"),
]
