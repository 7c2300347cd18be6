"""The wire format of signed batches: header names and the exact message that is signed.

One codec, used by the signer (``producers/signing.py``) and the verifier
(``api/signatures.py``) alike. A batch sent to ``POST /v1/events`` is signed with the
agency's Ed25519 key over this message (UTF-8, ``\\n`` between the lines, no trailing
newline)::

    servicepulse-batch-v1
    <key id>
    <timestamp: Unix seconds, decimal>
    <nonce>
    <media type of Content-Type, lower case, without parameters; empty if none>
    <SHA-256 of the exact body bytes, 64 lower-case hex digits>

The signature (64 bytes) travels base64url-encoded without padding. Timestamp and nonce
are covered by the signature, so a replay can only repeat them, and the API refuses a
timestamp outside its window and a nonce it saw within the window. The media type is
covered because it decides how the same bytes are split into events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Final

VERSION: Final = "servicepulse-batch-v1"

KEY_ID_HEADER: Final = "X-ServicePulse-Key-Id"
TIMESTAMP_HEADER: Final = "X-ServicePulse-Timestamp"
NONCE_HEADER: Final = "X-ServicePulse-Nonce"
SIGNATURE_HEADER: Final = "X-ServicePulse-Signature"
HEADERS: Final = (KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

#: The Kafka record header that carries the key id of the batch an event came in.
RECORD_KEY_ID: Final = "servicepulse-key-id"

KEY_ID: Final = re.compile(r"^[0-9a-f]{16}$")
NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SIGNATURE_BYTES: Final = 64
PUBLIC_KEY_BYTES: Final = 32


def key_id(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: the first 16 hex digits of its SHA-256.

    The id is derived from the key, so one id can never name two keys.
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).hexdigest()[:16]


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value as it is signed: lower case, no parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def message(
    kid: str, timestamp: int, nonce: str, content_type: str | None, body_sha256: str
) -> bytes:
    """The exact bytes that are signed (see the module docstring)."""
    lines = (VERSION, kid, str(timestamp), nonce, media_type(content_type), body_sha256)
    return "\n".join(lines).encode()


def b64encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str) -> bytes | None:
    """Inverse of :func:`b64encode`; ``None`` for anything that is not base64url."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
