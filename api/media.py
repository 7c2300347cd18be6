"""What an ingest body may be: its content type, its encoding, a UTF-8 signature.

Checked on the headers before the body is read, so a form, a multipart upload or a
gzip stream is answered one 415 and counted as nothing (not N ``invalid_json``
rejections in the agency's data quality).
"""

from __future__ import annotations

import re
from typing import Final

from starlette.datastructures import Headers

from api.errors import UnsupportedMediaType

#: Content types of a batch: JSON array, or NDJSON (one event per line). No header at
#: all is read as before (a body starting with ``[`` is an array, else NDJSON).
JSON: Final = "application/json"
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson"})
_ACCEPTED: Final = frozenset({"", JSON, *NDJSON_TYPES})
_IDENTITY: Final = frozenset({"", "identity"})
_UTF8: Final = frozenset({"utf-8", "utf8"})

#: The UTF-8 byte order mark: RFC 8259 lets a parser ignore it, and Windows tools write it.
UTF8_BOM: Final = b"\xef\xbb\xbf"

_TOKEN: Final = re.compile(r"^[A-Za-z0-9.+/_-]{1,64}$")


def _quoted(value: str) -> str:
    """A header value fit to repeat in a message (token-shaped), else a neutral phrase."""
    return repr(value) if _TOKEN.match(value) else "this value"


def media_of(headers: Headers) -> str:
    """The media type of an ingest request, lower case without parameters.

    Raises:
        UnsupportedMediaType: a Content-Encoding (gzip, deflate, ...), a content type
            other than JSON or NDJSON (form, multipart, text), or a charset other than
            UTF-8.
    """
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY:
        raise UnsupportedMediaType(
            f"Content-Encoding {_quoted(encoding)} is not supported: send the body "
            "uncompressed (TLS and the 1 MiB limit make compression of little use)"
        )
    media, _, params = headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    if media not in _ACCEPTED:
        raise UnsupportedMediaType(
            f"content type {_quoted(media)} is not supported: send {JSON} (an array of "
            "events) or application/x-ndjson (one event per line)"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in _UTF8:
            raise UnsupportedMediaType(
                f"charset {_quoted(charset)} is not supported: events are UTF-8"
            )
    return media


def without_signature(body: bytes) -> bytes:
    """The body without a leading UTF-8 byte order mark.

    Raises:
        UnsupportedMediaType: the body starts with a UTF-16 or UTF-32 byte order mark
            followed by a character in that encoding.
    """
    if body.startswith(UTF8_BOM):
        return body[len(UTF8_BOM) :]
    # a byte order mark and then an ASCII character as UTF-16 (or UTF-32) code unit: a
    # whole body in another encoding, one error rather than N invalid lines
    le = body[:2] == b"\xff\xfe" and body[2:3] != b"\x00" and body[3:4] == b"\x00"
    be = body[:3] == b"\xfe\xff\x00" and body[3:4] not in (b"", b"\x00")
    if le or be or body.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise UnsupportedMediaType("the body is UTF-16 or UTF-32: events are UTF-8")
    return body
