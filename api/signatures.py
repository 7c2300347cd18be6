"""Verifying signed batches of ``POST /v1/events`` (the format is :mod:`contract.signing`).

:meth:`Verifier.verified` checks the four ``X-ServicePulse-*`` headers of a request
against the body and the token's agency before anything of the batch is decoded or
produced, in this order: all or none of the headers (none: allowed unless the agency's
policy is ``required``), their format, the timestamp window, the key (known, of this
agency, active), the signature, and last the nonce (refused when this process saw it
within the window). Each failure is an :class:`ApiError` with its own code, so nothing
of a refused batch reaches Kafka. A verified batch's events carry the key id in the
record header :data:`contract.signing.RECORD_KEY_ID`.

Memory is bounded: nonces are remembered for twice the window after they were seen
(long enough that a replay's timestamp has left the window by then), at most
``capacity`` of them; when that many signed batches arrived within the window, more are
answered 503 (fail closed: a batch whose replay could not be detected is not accepted).

The nonce memory is per process: API replicas behind a load balancer do not share it,
so a replay sent to another replica within the window passes this check. Its events
are then duplicates of events already written, which the API's recent-id check and,
authoritatively, the processor's deduplication count once (docs/SECURITY.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final

from cryptography.exceptions import InvalidSignature
from prometheus_client import CollectorRegistry, Counter

from api.errors import ApiError, Unavailable
from api.keys import KeyStore, Policy
from contract.keyfiles import Ed25519PublicKey
from contract.signing import (
    HEADERS,
    KEY_ID,
    KEY_ID_HEADER,
    NONCE,
    NONCE_HEADER,
    RECORD_KEY_ID,
    SIGNATURE_BYTES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    b64decode,
    message,
)


class SignatureError(ApiError):
    """A batch's signature was missing where required, malformed, or did not verify."""

    status: ClassVar[int] = 401
    code: ClassVar[str] = "bad_signature"

    def headers(self) -> dict[str, str]:
        """Name the scheme that is expected."""
        return {"WWW-Authenticate": "ServicePulse-Signature"}


class MalformedSignature(SignatureError):
    """Some but not all signature headers, or one of them is not in its format."""

    status = 400
    code = "malformed_signature"


class SignatureRequired(SignatureError):
    """The agency's policy requires signed batches and this one is not signed."""

    code = "signature_required"


class BadSignature(SignatureError):
    """The signature does not verify: the body, a signed header or the key differs."""

    code = "bad_signature"


class StaleSignature(SignatureError):
    """The signed timestamp is outside the accepted window around the API's clock."""

    code = "stale_signature"


class ReplayedSignature(SignatureError):
    """The nonce was seen within the window: this batch was sent before."""

    code = "replayed_signature"


class UnknownKey(SignatureError):
    """No key with this id is registered."""

    code = "unknown_key"


class RevokedKey(SignatureError):
    """The key was revoked (or rotated out after its grace period)."""

    code = "revoked_key"


class ForeignKey(SignatureError):
    """The key is registered for another agency than the token's."""

    status = 403
    code = "foreign_key"


#: Results counted by ``servicepulse_api_signature_checks_total`` (a closed set).
RESULTS: Final = (
    "verified",
    "unsigned",
    *(
        c.code
        for c in (
            MalformedSignature,
            SignatureRequired,
            BadSignature,
            StaleSignature,
            ReplayedSignature,
            UnknownKey,
            RevokedKey,
            ForeignKey,
        )
    ),
    "nonce_capacity",
)


@dataclass(frozen=True, slots=True)
class SignatureMetrics:
    """Counters of signature checks."""

    checks: Counter


def build_signature_metrics(registry: CollectorRegistry) -> SignatureMetrics:
    """Register the signature counters in ``registry``."""
    checks = Counter(
        "servicepulse_api_signature_checks",
        "Ingest requests by the result of their signature check",
        ["result"],
        registry=registry,
    )
    for r in RESULTS:
        checks.labels(r)
    return SignatureMetrics(checks)


class NonceCache:
    """The nonces seen in the last ``2 * window`` seconds, at most ``capacity`` of them."""

    def __init__(self, window: float, capacity: int) -> None:
        self._keep = 2 * window
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, kid: str, nonce: str, now: float) -> bool:
        """Remember the nonce; ``False`` if it was seen already (a replay).

        Raises:
            Unavailable: ``capacity`` nonces are within their time already.
        """
        seen = self._seen
        while seen:
            first = next(iter(seen.values()))
            if first > now:
                break
            seen.popitem(last=False)
        key = (kid, nonce)
        if key in seen:
            return False
        if len(seen) >= self._capacity:
            raise Unavailable(
                f"more than {self._capacity} signed batches within the replay window; "
                "nothing was accepted",
                retry_after=1,
            )
        seen[key] = now + self._keep
        return True

    def forget(self, kid: str, nonce: str) -> None:
        """Forget a nonce (its batch was answered 429 or 503 and may be resent as is)."""
        self._seen.pop((kid, nonce), None)


@dataclass(frozen=True, slots=True)
class Verified:
    """A batch whose signature verified."""

    key_id: str
    nonce: str

    @property
    def record_headers(self) -> list[tuple[str, bytes]]:
        """The Kafka record headers every event of the batch is written with."""
        return [(RECORD_KEY_ID, self.key_id.encode())]


class Verifier:
    """Checks signed batches against the key store (see the module docstring).

    Args:
        keys: registered keys and policies.
        window: seconds a signed timestamp may differ from the API's clock.
        capacity: most nonces remembered.
        metrics: where checks are counted.
        clock: Unix seconds, replaceable in tests.
    """

    def __init__(
        self,
        keys: KeyStore,
        window: float,
        capacity: int,
        metrics: SignatureMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._window = window
        self._nonces = NonceCache(window, capacity)
        self._metrics = metrics
        self._clock = clock
        self._public: dict[str, Ed25519PublicKey] = {}

    @contextlib.contextmanager
    def verified(
        self, headers: Mapping[str, str], body: bytes, agency: str
    ) -> Iterator[Verified | None]:
        """Check the batch; yields what verified (``None``: unsigned, which the policy allows).

        When the block raises an :class:`ApiError` with status 429 or 503 (nothing was
        accepted, the client is told to resend), the nonce is forgotten again.
        """
        result = self.check(headers, body, agency)
        try:
            yield result
        except ApiError as exc:
            if result is not None and exc.status in (429, 503):
                self._nonces.forget(result.key_id, result.nonce)
            raise

    def check(self, headers: Mapping[str, str], body: bytes, agency: str) -> Verified | None:
        """Verify one batch (see :meth:`verified`)."""
        try:
            result = self._check(headers, body, agency)
        except SignatureError as exc:
            self._metrics.checks.labels(exc.code).inc()
            raise
        except Unavailable:
            self._metrics.checks.labels("nonce_capacity").inc()
            raise
        self._metrics.checks.labels("verified" if result else "unsigned").inc()
        return result

    def _check(self, headers: Mapping[str, str], body: bytes, agency: str) -> Verified | None:
        # lower case: what Starlette's headers and HTTP/2 use; a plain mapping must be so too
        values = [headers.get(h.lower()) for h in HEADERS]
        present = [h for h, v in zip(HEADERS, values, strict=True) if v is not None]
        if not present:
            if self._keys.policy(agency) is Policy.REQUIRED:
                raise SignatureRequired(
                    f"agency {agency!r} must sign its batches: send "
                    + ", ".join(HEADERS)
                    + " (see docs/API.md)"
                )
            return None
        if len(present) != len(HEADERS):
            missing = [h for h in HEADERS if h not in present]
            raise MalformedSignature(
                "a signed batch needs every header; missing " + ", ".join(missing)
            )
        kid, ts_text, nonce, sig_text = (v or "" for v in values)
        if not KEY_ID.match(kid):
            raise MalformedSignature(f"{KEY_ID_HEADER} must be 16 lower-case hex digits")
        if not ts_text.isdigit() or len(ts_text) > 12:
            raise MalformedSignature(f"{TIMESTAMP_HEADER} must be Unix seconds (decimal digits)")
        if not NONCE.match(nonce):
            raise MalformedSignature(f"{NONCE_HEADER} must be 16-64 of [A-Za-z0-9_-]")
        signature = b64decode(sig_text)
        if signature is None or len(signature) != SIGNATURE_BYTES:
            raise MalformedSignature(
                f"{SIGNATURE_HEADER} must be the base64url of a 64-byte Ed25519 signature"
            )
        now = self._clock()
        ts = int(ts_text)
        if abs(now - ts) > self._window:
            raise StaleSignature(
                f"the signed timestamp {ts} is {now - ts:+.0f} s from the API's clock; "
                f"the window is ±{self._window:g} s: sign again"
            )
        info = self._keys.get(kid)
        if info is None:
            raise UnknownKey(f"no signing key {kid} is registered")
        if info.agency != agency:
            raise ForeignKey(f"key {kid} is not a key of agency {agency!r}")
        if not info.active(datetime.fromtimestamp(now, UTC)):
            raise RevokedKey(f"key {kid} was revoked at {info.revoked_at}")
        public = self._public.get(kid)
        if public is None:
            public = Ed25519PublicKey.from_public_bytes(info.public_key)
            if len(self._public) > 10_000:
                self._public.clear()
            self._public[kid] = public
        signed = message(
            kid, ts, nonce, headers.get("content-type"), hashlib.sha256(body).hexdigest()
        )
        try:
            public.verify(signature, signed)
        except InvalidSignature:
            raise BadSignature(
                f"the signature does not verify with key {kid}: the body, the signed "
                "headers or the Content-Type differ from what was signed"
            ) from None
        if not self._nonces.add(kid, nonce, now):
            raise ReplayedSignature(
                f"nonce {nonce} of key {kid} was used within the last "
                f"{2 * self._window:g} s: this batch was sent before; sign again to resend"
            )
        return Verified(kid, nonce)
