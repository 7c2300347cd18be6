"""The dead-letter topic: one record format for the API's and the processor's rejections.

Every record on ``<prefix>.deadletter`` is a :class:`DeadLetter` encoded as JSON
(docs/AGGREGATES.md, "The dead-letter topic"). The API writes its rejections with
``source="api"`` and the fields it knows; the processor writes ``source="processor"``
with where the record was (``topic``, ``partition``, ``offset``), every problem and, for
an event it could not apply, the exception's class name and place. Fields a writer does
not know are left out of the JSON. The raw event is never copied: it may hold personal
data sent by mistake.

Readers decode with :func:`decode_view`, which keeps only what counting needs and
accepts any JSON types there: a record of an older or foreign writer is counted as
``other``/``unknown``, never an error.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec


class DeadProblem(msgspec.Struct):
    """One problem of a rejected event: field path, reason code, human message."""

    field: str
    reason: str
    message: str


class DeadLetter(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A rejection as written to the dead-letter topic: never the event body.

    ``reason``, ``field`` and ``message`` are the first problem's; ``agency`` is a
    catalog agency or ``""``; ``event_id`` a UUID or ``""``/absent; ``received_at`` RFC
    3339 UTC. Those and ``source`` are always written (``""`` included); the optional
    fields only when set. The field order is the JSON's: keep it.
    """

    reason: str
    field: str
    message: str
    problems: list[DeadProblem] | None = None
    agency: str
    event_id: str | None = None
    source: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    received_at: str
    #: local date of ``received_at`` in the catalog time zone (the processor's)
    received_day: str | None = None
    #: class name of the exception of an event the processor could not apply
    error: str | None = None
    #: ``<file>:<line>`` where it was raised
    where: str | None = None


class DeadLetterView(msgspec.Struct):
    """What a reader counts of a dead-letter record, in whatever types it came."""

    reason: Any = None
    agency: Any = None
    received_at: Any = None


encode: Final = msgspec.json.Encoder().encode
_view_dec: Final = msgspec.json.Decoder(DeadLetterView)


def decode_view(value: bytes) -> DeadLetterView:
    """The counted fields of a dead-letter record.

    Raises:
        msgspec.DecodeError: the value is not a JSON object.
    """
    return _view_dec.decode(value)
