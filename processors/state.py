"""Per-partition state: journeys, cases, appeals, interagency requests, and its changelog.

State objects are ``msgspec.Struct`` classes (slotted like ``@dataclass(slots=True)``,
but encoded straight to MessagePack for the changelog and created without the garbage
collector tracking them: millions of open journeys must not slow every GC pass). They
hold integer epoch milliseconds and share their dimension tuples (interned per engine),
so an open journey costs a few hundred bytes.

Changelog record keys (UTF-8, ``|``-separated; ids never contain ``|``):

``j|<agency>|<journey>``          a :class:`Journey`
``c|<agency>|<case>``             a :class:`Case`
``a|<agency>|<appeal>``           an :class:`Appeal`
``i|<agency>|<journey>|<request>`` a :class:`Request`
``d|<hour>|<block>``              a block of event-id hashes (see :mod:`processors.dedup`)
``x|<hour>|<block>``              a block of closed journeys (see :mod:`processors.archive`)
``m``                             the partition's :class:`Meta` (watermark)

A ``null`` value (tombstone) deletes a key; the topic is compacted, so it holds exactly
the latest state of every live key.
"""

from __future__ import annotations

from typing import Final

import msgspec

from contract.aggregates import Dims
from processors.errors import StateError

#: Dimensions by value (a plain tuple finds the shared :class:`Dims` of equal parts)
Intern = dict[tuple[str, str, str, str, str], Dims]

OPEN: Final = 0
SUBMITTED: Final = 1
DECIDED: Final = 2
ABANDONED: Final = 3
STATUS_NAMES: Final = ("open", "submitted", "decided", "abandoned")


class Journey(msgspec.Struct, array_like=True, gc=False):
    """One open or pending application attempt (DESIGN.md section 5).

    Once decided or abandoned it moves to :mod:`processors.archive`.

    ``status`` is one of OPEN, SUBMITTED, DECIDED, ABANDONED. ``steps`` is a bit mask
    over the service's catalog steps. ``deadline_ms`` is set while the journey is
    pending (submitted, or registered on a channel other than portal/mobile).
    ``overdue`` says the watermark passed ``deadline_ms`` while pending.
    """

    dims: Dims
    status: int = OPEN
    last_ms: int = 0
    started_ms: int | None = None
    submitted_ms: int | None = None
    closed_ms: int | None = None
    deadline_ms: int | None = None
    steps: int = 0
    had_error: bool = False
    overdue: bool = False
    case: str | None = None
    #: written to the changelog at least once (closing it then needs a tombstone)
    persisted: bool = False


class Case(msgspec.Struct, array_like=True, gc=False):
    """A life-situation case: the journeys sharing one ``case`` id within an agency.

    ``open`` counts its journeys neither decided nor abandoned; it completes once,
    when that drops to zero with at least one journey decided.
    """

    dims: Dims
    started_ms: int
    open: int = 0
    decided: bool = False
    completed: bool = False
    idle_ms: int | None = None


class Appeal(msgspec.Struct, array_like=True, gc=False):
    """An appeal: received, then answered within the 30-calendar-day term or not."""

    dims: Dims
    received_ms: int | None = None
    deadline_ms: int | None = None
    answered_ms: int | None = None
    overdue: bool = False


class Request(msgspec.Struct, array_like=True, gc=False):
    """An interagency request: requested, then responded within PT48H or not."""

    dims: Dims
    requested_ms: int | None = None
    responded_ms: int | None = None


class Meta(msgspec.Struct, array_like=True):
    """The partition's event-time progress (see :mod:`processors.watermark`)."""

    max_event_ms: int | None = None
    watermark_ms: int | None = None
    live: bool = False
    updated_ms: int = 0
    #: days before this ISO date are final (never moves back; "" before any)
    final_day: str = ""


_enc: Final = msgspec.msgpack.Encoder()
encode: Final = _enc.encode
_decoders: Final[dict[str, msgspec.msgpack.Decoder[object]]] = {
    "j": msgspec.msgpack.Decoder(Journey),
    "c": msgspec.msgpack.Decoder(Case),
    "a": msgspec.msgpack.Decoder(Appeal),
    "i": msgspec.msgpack.Decoder(Request),
    "m": msgspec.msgpack.Decoder(Meta),
}

META_KEY: Final = b"m"
_meta_dec: Final = msgspec.msgpack.Decoder(Meta)


def decode_meta(value: bytes) -> Meta:
    """Decode the ``m`` record (:data:`META_KEY`).

    Raises:
        StateError: when the value is not a :class:`Meta`.
    """
    try:
        return _meta_dec.decode(value)
    except msgspec.DecodeError as exc:
        raise StateError(f"changelog record {META_KEY!r}: cannot decode: {exc}") from exc


def decode(kind: str, key: bytes, value: bytes) -> object:
    """Decode one changelog value of ``kind`` (the key's first part).

    Raises:
        StateError: naming the key, when the value does not match the state type.
    """
    try:
        return _decoders[kind].decode(value)
    except (KeyError, msgspec.DecodeError) as exc:
        raise StateError(f"changelog record {key!r}: cannot decode: {exc}") from exc
