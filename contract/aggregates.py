"""The aggregates topic: the record format between the processor and the API.

Every record on ``<prefix>.aggregates.v2`` (compacted, written in the processor's
transactions, read ``read_committed``) has a UTF-8 key of ``|``-separated parts whose
first part names the kind, and a JSON value (``null`` never occurs; values are
replaced whole, so compaction keeps exactly the latest state of each key):

``r|<partition>|<day>|<agency>|<service>|<municipality>|<channel>|<life_situation>``
    :class:`Rollup` - cumulative counters and histograms of one event-time day and one
    cell, contributed by one input partition. Only the owner of the partition writes
    it, so the latest value is the whole truth for that partition; readers sum the
    partitions. ``service`` and ``life_situation`` are ``""`` where they do not apply
    (appeals; visits that name no service). ``day`` is ISO ``YYYY-MM-DD`` in the catalog time zone.

``g|<partition>|<agency>|<service>|<municipality>|<channel>``
    :class:`Gauges` - live counts now (open journeys, pending and overdue
    applications, open and overdue appeals) held by one partition's state.

``s|<partition>|<day>|<agency>``
    :class:`Restatement` - the log of late changes to a day that the partition's
    watermark had already closed.

``w|<partition>``
    :class:`Watermark` - the event-time watermark of one input partition.

Each kind has a key class (:class:`RollupKey`, :class:`GaugeKey`,
:class:`RestatementKey`, :class:`WatermarkKey`, and :class:`ClosedDayKey`
``d|<day>|<partition>|<agency>`` of ``<prefix>.days``) whose ``encode`` writes the bytes
and :func:`decode_key` reads them back into the typed key: writers and readers share
this one codec, and nothing else splits a key on ``|``.

Numbers are exact: counts are integers and duration sums are integer milliseconds, so
the same events give byte-identical totals however they were batched or replayed.
"""

from __future__ import annotations

import typing
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final, NamedTuple

import msgspec

from contract.metrics import BUCKETS

SEP: Final = "|"


class Hist(msgspec.Struct, omit_defaults=True, gc=False):
    """A histogram: per-bucket (non-cumulative) counts, the last one being +Inf.

    ``sum_ms`` is the sum of observations in integer milliseconds. Like :class:`Rollup`,
    not tracked by the cyclic garbage collector (``gc=False``): it holds only numbers,
    so it can be in no reference cycle, and a processor creates tens of thousands
    (each one otherwise brings a full collection nearer).
    """

    counts: list[int]
    sum_ms: int = 0

    @classmethod
    def empty(cls, name: str) -> Hist:
        """A zeroed histogram with the buckets of metric family ``name``."""
        return cls([0] * (len(BUCKETS[name]) + 1))

    @property
    def count(self) -> int:
        """Number of observations."""
        return sum(self.counts)

    def observe(self, name: str, seconds: float) -> None:
        """Add one observation (seconds) to this histogram of family ``name``."""
        # the first bucket whose upper bound is >= seconds (bounds are sorted)
        self.counts[bisect_left(BUCKETS[name], seconds)] += 1
        self.sum_ms += round(seconds * 1000)

    def add(self, other: Hist) -> None:
        """Add another histogram of the same family into this one."""
        if len(self.counts) < len(other.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.sum_ms += other.sum_ms


class Rollup(msgspec.Struct, omit_defaults=True, gc=False):
    """Counters of one day and one cell from one partition (all cumulative).

    Map keys: ``steps`` step code; ``errors`` catalog error code or ``other``;
    ``decisions`` ``"<outcome>:<timeliness>"`` with timeliness ``on_time``, ``late`` or
    ``unknown``; ``feedback`` score ``"1"``..``"5"``; ``visits`` ``"true"``/``"false"``
    (within the office wait standard); ``appeals_answered`` ``on_time``/``late``;
    ``interagency_responded`` ``within``/``over`` (PT48H); ``late`` the reason a
    lifecycle event was counted late (``after_abandoned``, ``after_decided``, ...).
    """

    events: int = 0
    started: int = 0
    started_digital: int = 0
    submitted: int = 0
    abandoned: int = 0
    abandoned_timeout: int = 0
    #: submitted applications cancelled (``journey.abandoned``) before their decision
    withdrawn: int = 0
    resolved: int = 0
    resolved_with_errors: int = 0
    skipped_steps: int = 0
    appeals_received: int = 0
    interagency_requested: int = 0
    cases_started: int = 0
    cases_completed: int = 0
    duplicates: int = 0
    #: deadlines set (applications, appeals) past the production calendar's last year
    beyond_calendar: int = 0
    steps: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    decisions: dict[str, int] = msgspec.field(default_factory=dict)
    feedback: dict[str, int] = msgspec.field(default_factory=dict)
    visits: dict[str, int] = msgspec.field(default_factory=dict)
    appeals_answered: dict[str, int] = msgspec.field(default_factory=dict)
    interagency_responded: dict[str, int] = msgspec.field(default_factory=dict)
    late: dict[str, int] = msgspec.field(default_factory=dict)
    #: office visits by ``"<office code>:<true|false>"`` (within the wait standard)
    office_visits: dict[str, int] = msgspec.field(default_factory=dict)
    form_seconds: Hist | None = None
    decision_seconds: Hist | None = None
    wait_seconds: Hist | None = None
    interagency_seconds: Hist | None = None
    case_seconds: Hist | None = None
    #: delivery delay (broker receive time - occurred_at); the name is historic
    skew_seconds: Hist | None = None
    #: |producer's ``sent_at`` header - broker receive time|: the sender's clock skew
    sender_skew_seconds: Hist | None = None

    def hist(self, name: str) -> Hist:
        """The histogram field ``name``, created empty on first use."""
        h: Hist | None = getattr(self, name)
        if h is None:
            h = Hist.empty(name)
            setattr(self, name, h)
        return h

    def add(self, other: Rollup) -> None:
        """Add every counter of ``other`` into this rollup."""
        for f in INT_FIELDS:
            v = getattr(other, f)
            if v:
                setattr(self, f, getattr(self, f) + v)
        for f in MAP_FIELDS:
            src: dict[str, int] = getattr(other, f)
            if src:
                dst: dict[str, int] = getattr(self, f)
                for k, v in src.items():
                    dst[k] = dst.get(k, 0) + v
        for f in HIST_FIELDS:
            h: Hist | None = getattr(other, f)
            if h is not None:
                self.hist(f).add(h)


def _fields_of(kind: type) -> tuple[str, ...]:
    """The fields of :class:`Rollup` whose type is ``kind`` (int, dict, Hist), in order."""
    return tuple(
        f.name
        for f in msgspec.structs.fields(Rollup)
        if (typing.get_origin(f.type) or f.type) is kind
        or (kind is Hist and Hist in typing.get_args(f.type))
    )


#: The counter fields of :class:`Rollup` that are plain integers (derived from the struct).
INT_FIELDS: Final = _fields_of(int)
#: The counter fields of :class:`Rollup` that map a bounded label value to a count.
MAP_FIELDS: Final = _fields_of(dict)
#: The histogram fields of :class:`Rollup`, each named after its metric family in BUCKETS.
HIST_FIELDS: Final = _fields_of(Hist)


class Gauges(msgspec.Struct, omit_defaults=True):
    """Live counts of one partition and cell, replaced whole on every change."""

    open_journeys: int = 0
    pending: int = 0
    overdue: int = 0
    appeals_open: int = 0
    appeals_overdue: int = 0
    interagency_open: int = 0


class RestatementEntry(msgspec.Struct, omit_defaults=True):
    """One late change to a closed day: which counters moved, when it was processed."""

    at: str
    event_type: str
    fields: list[str]


class Restatement(msgspec.Struct, omit_defaults=True):
    """The restatements of one (partition, day, agency): total count and recent entries."""

    count: int = 0
    first_at: str = ""
    last_at: str = ""
    recent: list[RestatementEntry] = msgspec.field(default_factory=list)


#: How many recent entries a :class:`Restatement` keeps.
RESTATEMENT_RECENT: Final = 20


class Watermark(msgspec.Struct):
    """Event-time progress of one input partition (epoch seconds)."""

    watermark: float
    max_event_time: float
    updated_at: float


class Dims(NamedTuple):
    """The dimensions of a rollup cell, ``""`` where one does not apply.

    A plain tuple on the wire (a MessagePack array in the processor's changelog, the last
    five parts of an ``r|`` key), so its field order is part of the format.
    """

    agency: str
    service: str
    municipality: str
    channel: str
    life_situation: str

    def gauge(self) -> GaugeDims:
        """The dimensions of the gauge cell these belong to (no life situation)."""
        return GaugeDims(self.agency, self.service, self.municipality, self.channel)


class GaugeDims(NamedTuple):
    """The dimensions of a gauge cell: a rollup cell's without the life situation."""

    agency: str
    service: str
    municipality: str
    channel: str


class RollupKey(msgspec.Struct, frozen=True):
    """``r|<partition>|<day>|<agency>|<service>|<municipality>|<channel>|<life_situation>``."""

    partition: int
    day: str
    dims: Dims

    def encode(self) -> bytes:
        """The record key."""
        return SEP.join(("r", str(self.partition), self.day, *self.dims)).encode()


class GaugeKey(msgspec.Struct, frozen=True):
    """``g|<partition>|<agency>|<service>|<municipality>|<channel>``."""

    partition: int
    dims: GaugeDims

    def encode(self) -> bytes:
        """The record key."""
        return SEP.join(("g", str(self.partition), *self.dims)).encode()


class RestatementKey(msgspec.Struct, frozen=True):
    """``s|<partition>|<day>|<agency>``."""

    partition: int
    day: str
    agency: str

    def encode(self) -> bytes:
        """The record key."""
        return SEP.join(("s", str(self.partition), self.day, self.agency)).encode()


class WatermarkKey(msgspec.Struct, frozen=True):
    """``w|<partition>``."""

    partition: int

    def encode(self) -> bytes:
        """The record key."""
        return f"w{SEP}{self.partition}".encode()


class ClosedDayKey(msgspec.Struct, frozen=True):
    """``d|<day>|<partition>|<agency>``: a :class:`ClosedDay` on ``<prefix>.days``."""

    day: str
    partition: int
    agency: str

    def encode(self) -> bytes:
        """The record key."""
        return SEP.join(("d", self.day, str(self.partition), self.agency)).encode()


#: Every key of ``<prefix>.aggregates.v2`` and ``<prefix>.days``, told apart by its first part.
Key = RollupKey | GaugeKey | RestatementKey | WatermarkKey | ClosedDayKey


def _partition(text: str, key: bytes) -> int:
    # only what str(int) writes, so that decoding then encoding gives the same bytes
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"aggregates key {key[:80]!r}: partition {text[:20]!r} is not a number")
    return int(text)


def decode_key(key: bytes) -> Key:
    """The typed key of an aggregates or days record (the inverse of ``encode``).

    Raises:
        ValueError: naming the key, when its kind or number of parts is unknown, or a
            partition is not a decimal number.
    """
    try:
        p = key.decode().split(SEP)
    except UnicodeDecodeError as exc:
        raise ValueError(f"aggregates key {key[:80]!r} is not UTF-8") from exc
    kind, n = p[0], len(p)
    if kind == "r" and n == 8:
        return RollupKey(_partition(p[1], key), p[2], Dims(p[3], p[4], p[5], p[6], p[7]))
    if kind == "g" and n == 6:
        return GaugeKey(_partition(p[1], key), GaugeDims(p[2], p[3], p[4], p[5]))
    if kind == "s" and n == 4:
        return RestatementKey(_partition(p[1], key), p[2], p[3])
    if kind == "w" and n == 2:
        return WatermarkKey(_partition(p[1], key))
    if kind == "d" and n == 4:
        return ClosedDayKey(p[1], _partition(p[2], key), p[3])
    raise ValueError(f"unknown aggregates key {key[:80]!r}")


def input_partition(key: bytes | None) -> int | None:
    """The input partition a key of the aggregates or days topic belongs to (its
    ``<partition>`` part); None for no key or a key of no known kind."""
    if key is None:
        return None
    parts = split_rollup_key(key)
    if parts is not None:
        return parts[0]
    try:
        return decode_key(key).partition
    except ValueError:
        return None


def split_rollup_key(key: bytes) -> tuple[int, str, str, str] | None:
    """``(partition, day, agency, tail)`` of an ``r|`` key, ``tail`` being its last four
    parts as they are (``service|municipality|channel|life_situation``); None for any
    other key. Accepts exactly the ``r|`` keys :func:`decode_key` accepts, without
    building the key's objects (a restore splits millions)."""
    if not key.startswith(b"r|"):
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    p = text.split(SEP, 4)
    if len(p) != 5 or p[4].count(SEP) != 3:
        return None
    part = p[1]
    if not (part.isascii() and part.isdigit()) or (len(part) > 1 and part[0] == "0"):
        return None
    return int(part), p[2], p[3], p[4]


def restatement_key(partition: int, day: str, agency: str) -> bytes:
    """Shorthand for ``RestatementKey(partition, day, agency).encode()``."""
    return RestatementKey(partition, day, agency).encode()


def watermark_key(partition: int) -> bytes:
    """Shorthand for ``WatermarkKey(partition).encode()``."""
    return WatermarkKey(partition).encode()


class ClosedCell(msgspec.Struct, array_like=True):
    """One cell of a closed day: the final rollup of (service, municipality, channel,
    life situation) for the day, agency and partition of its :class:`ClosedDay`."""

    service: str
    municipality: str
    channel: str
    life_situation: str
    rollup: Rollup


class ClosedDay(msgspec.Struct, omit_defaults=True):
    """The final rollups of one event-time day, one agency and one input partition.

    Written once to ``<prefix>.days`` under :class:`ClosedDayKey` in the transaction in
    which the day becomes final for the partition (its watermark passed the day's end plus
    the restatement horizon); the same transaction tombstones the ``r|`` and ``s|`` keys
    it replaces on ``<prefix>.aggregates.v2``. Per agency so that one record stays under the
    topic's record size limit: at the demo's rate 12 times under it, but a catalog's
    every cell of one agency can pass it (docs/PROCESSOR.md, "Limits").
    """

    day: str
    partition: int
    agency: str
    cells: list[ClosedCell] = msgspec.field(default_factory=list)
    #: the day's restatement log of this partition and agency (the ``s|`` value)
    restatement: Restatement | None = None
    #: the partition's watermark when the day became final (epoch seconds)
    closed_at: float = 0.0


def closed_day_key(day: str, partition: int, agency: str) -> bytes:
    """Shorthand for ``ClosedDayKey(day, partition, agency).encode()``."""
    return ClosedDayKey(day, partition, agency).encode()


_rollup_dec: Final = msgspec.json.Decoder(Rollup)
_gauges_dec: Final = msgspec.json.Decoder(Gauges)
_restate_dec: Final = msgspec.json.Decoder(Restatement)
_wm_dec: Final = msgspec.json.Decoder(Watermark)
_closed_dec: Final = msgspec.json.Decoder(ClosedDay)
encode: Final = msgspec.json.Encoder().encode


def decode_rollup(value: bytes) -> Rollup:
    """Decode the value of an ``r|`` record."""
    return _rollup_dec.decode(value)


def decode_gauges(value: bytes) -> Gauges:
    """Decode the value of a ``g|`` record."""
    return _gauges_dec.decode(value)


def decode_restatement(value: bytes) -> Restatement:
    """Decode the value of an ``s|`` record."""
    return _restate_dec.decode(value)


def decode_watermark(value: bytes) -> Watermark:
    """Decode the value of a ``w|`` record."""
    return _wm_dec.decode(value)


def sum_rollups(rollups: Iterable[Rollup]) -> Rollup:
    """The sum of rollups (a new object; the inputs are untouched)."""
    total = Rollup()
    for r in rollups:
        total.add(r)
    return total


def decode_closed_day(value: bytes) -> ClosedDay:
    """Decode the value of a ``d|`` record of ``<prefix>.days``."""
    return _closed_dec.decode(value)
