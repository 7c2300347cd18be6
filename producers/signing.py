"""Signing batches for ``POST /v1/events`` with the agency's Ed25519 key.

:func:`sign_batch` returns the four ``X-ServicePulse-*`` headers for one request body
(see :mod:`contract.signing` for the exact message). Sign every request anew: each
signature carries a fresh nonce and the current time, and the API refuses a nonce it
has seen within its window (a batch answered 429 or 503 may be resent with the same
headers; after any other answer, sign again).

Example::

    key = load_private_key(Path("minsoc-signing.pem"))
    body = json.dumps(events).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               **sign_batch(body, key, content_type="application/json")}
    httpx.post(f"{api}/v1/events", content=body, headers=headers)

Signatures apply to the HTTPS path only: events written straight to Kafka by
:class:`producers.producer.EventProducer` are authenticated by the agency's Kafka
principal (SASL) and ACLs, because nothing between the topic and the processor could
check a per-record signature against the registered keys (see docs/SECURITY.md).
"""

from __future__ import annotations

import hashlib
import secrets
import time

from contract.keyfiles import Ed25519PrivateKey, key_id_of, load_private_key
from contract.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    b64encode,
    message,
)

__all__ = ["BatchSigner", "load_private_key", "sign_batch"]


def sign_batch(
    body: bytes,
    key: Ed25519PrivateKey,
    *,
    content_type: str = "application/json",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The signature headers of one request body.

    Args:
        body: the exact bytes that will be sent.
        key: the agency's private key (its id is derived from the public half).
        content_type: the Content-Type the request is sent with (its media type is signed).
        timestamp: Unix seconds; default now.
        nonce: default 128 random bits (base64url); 16-64 of ``[A-Za-z0-9_-]``.
    """
    kid = key_id_of(key)
    ts = int(time.time()) if timestamp is None else timestamp
    n = nonce or secrets.token_urlsafe(16)
    digest = hashlib.sha256(body).hexdigest()
    signature = key.sign(message(kid, ts, n, content_type, digest))
    return {
        KEY_ID_HEADER: kid,
        TIMESTAMP_HEADER: str(ts),
        NONCE_HEADER: n,
        SIGNATURE_HEADER: b64encode(signature),
    }


class BatchSigner:
    """A private key held for signing many batches; never printed or logged.

    Args:
        key: the private key.
    """

    __slots__ = ("_key", "key_id")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = key_id_of(key)

    def __repr__(self) -> str:
        return f"BatchSigner(key_id={self.key_id!r})"

    def headers(self, body: bytes, content_type: str = "application/json") -> dict[str, str]:
        """The signature headers of ``body`` (see :func:`sign_batch`)."""
        return sign_batch(body, self._key, content_type=content_type)
