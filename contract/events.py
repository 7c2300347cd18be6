"""Event contract, version 1 (DESIGN.md section 3).

One decoder serves every boundary: the API, the producer library, ``events validate``
and the stream processor. It decodes with msgspec (under a microsecond per event),
checks the forms of the string fields (:data:`FORMS`), then applies the rules a JSON
decoder cannot express (required fields per type, which ``attrs`` keys a type allows,
the future-timestamp limit). The result of decoding is
either an :class:`Event` or a list of :class:`Problem`: a bad event is a result, not an
exception, so the good events beside it are never affected.

Problems never echo the value of ``citizen``, nor any other free text (an enum value, an
unknown field's name): it may be personal data sent by mistake, and problems travel on
to the dead-letter topic. Only code-shaped values (``[A-Za-z0-9._-]``, at most 64
characters) that do not look like personal data are quoted, so the sender can see which
code the catalog did not know.

Identifiers are opaque: an identifier or code field whose value looks like a SNILS, a
phone number, an e-mail address or an INN (:mod:`contract.personal`) is refused with
reason ``personal_data``, naming the field and the rule only. ``event_id`` is
canonicalised to lower case, so keys, partitions and deduplication see one form, and
:func:`dedup_identity` is the identity every deduplicating component uses.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Annotated, Any, Final, Literal, Optional, cast, get_args, get_type_hints

import msgspec
import msgspec.inspect as mi
from msgspec.structs import astuple

from contract.personal import RULE_NAMES, personal_data_rule

MAX_EVENT_BYTES: Final = 64 * 1024
MAX_FUTURE: Final = timedelta(minutes=5)
#: The default earliest ``occurred_at`` accepted (``SERVICEPULSE_EARLIEST_OCCURRED_AT``).
EARLIEST_OCCURRED_AT: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: No setting may go below this: every instant after it has a local date in any zone.
EARLIEST_POSSIBLE: Final = datetime(1, 1, 2, tzinfo=UTC)

_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_PSEUDONYM_PATTERN = r"^[0-9a-fA-F]{64}$"
_CODE_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_OKTMO_PATTERN = r"^[0-9]{8,11}$"

#: An opaque identifier, and a code: plain strings to the decoder; their forms are in
#: :data:`FORMS`.
Id = str
Code = str

#: The required form of every string field of the contract (a regular expression that
#: must be found in the value, as ``re.search`` finds it). The structs below declare
#: their string fields without it: as ``msgspec.Meta(pattern=...)`` the forms cost about
#: 2.6 of the 3.2 microseconds of decoding an event, once per field and event, while
#: most values (codes, a journey's ids, a citizen's pseudonym) come back with event after
#: event. :func:`decode_event` checks them after msgspec, remembering the values that
#: passed (:class:`_Form`); strict twins of the structs carry them as msgspec
#: constraints for the published schema and for the search of the first problem of a
#: rejected event. Every string field must have an entry (checked on import).
FORMS: Final[dict[str, str]] = {
    "event_id": _UUID_PATTERN,
    "agency": _CODE_PATTERN,
    "municipality": _OKTMO_PATTERN,
    "service": _CODE_PATTERN,
    "journey": _ID_PATTERN,
    "life_situation": _CODE_PATTERN,
    "case": _ID_PATTERN,
    "citizen": _PSEUDONYM_PATTERN,
    "attrs.step": _CODE_PATTERN,
    "attrs.code": _CODE_PATTERN,
    "attrs.reason": _CODE_PATTERN,
    "attrs.request": _ID_PATTERN,
    "attrs.counterpart": _CODE_PATTERN,
    "attrs.office": _CODE_PATTERN,
    "attrs.appeal": _ID_PATTERN,
}


class EventType(enum.StrEnum):
    """The closed set of event types of contract v1."""

    JOURNEY_STARTED = "journey.started"
    JOURNEY_STEP = "journey.step"
    JOURNEY_SUBMITTED = "journey.submitted"
    JOURNEY_ABANDONED = "journey.abandoned"
    JOURNEY_ERROR = "journey.error"
    DECISION_MADE = "decision.made"
    INTERAGENCY_REQUESTED = "interagency.requested"
    INTERAGENCY_RESPONDED = "interagency.responded"
    VISIT_SERVED = "visit.served"
    FEEDBACK_GIVEN = "feedback.given"
    APPEAL_RECEIVED = "appeal.received"
    APPEAL_ANSWERED = "appeal.answered"


class Channel(enum.StrEnum):
    """Where the citizen interacted with the service."""

    PORTAL = "portal"
    MOBILE = "mobile"
    MFC = "mfc"
    OFFICE = "office"
    PHONE = "phone"
    PROACTIVE = "proactive"


#: Russian names of the channels: reports, web pages and dashboards
#: (``servicepulse_catalog_channel_info``) all read them from here.
CHANNEL_NAMES: Final[dict[str, str]] = {
    Channel.PORTAL: "портал госуслуг",
    Channel.MOBILE: "мобильное приложение",
    Channel.MFC: "МФЦ",
    Channel.OFFICE: "приёмная ведомства",
    Channel.PHONE: "телефон",
    Channel.PROACTIVE: "проактивно",
}

SELF_SERVICE_CHANNELS: Final = frozenset({Channel.PORTAL, Channel.MOBILE})
DIGITAL_CHANNELS: Final = frozenset({Channel.PORTAL, Channel.MOBILE, Channel.PROACTIVE})


class Outcome(enum.StrEnum):
    """Outcome of ``decision.made``."""

    APPROVED = "approved"
    REJECTED = "rejected"


class AppealKind(enum.StrEnum):
    """``attrs.kind`` of ``appeal.received``: which law sets the term (default ``appeal``).

    ``complaint``: a complaint about a public service under 210-FZ art. 11.2, considered
    within 15 working days of registration; ``appeal``: a citizen's appeal under 59-FZ,
    within 30 days. The terms come from the methodology's standards.
    """

    COMPLAINT = "complaint"
    APPEAL = "appeal"


class Reason(enum.StrEnum):
    """Why an event was rejected; the ``reason`` label of ``events_rejected_total``."""

    INVALID_JSON = "invalid_json"
    TOO_LARGE = "too_large"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_FORMAT = "bad_format"
    OUT_OF_RANGE = "out_of_range"
    BAD_VALUE = "bad_value"
    NO_OFFSET = "no_offset"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_EARLY = "too_early"
    PERSONAL_DATA = "personal_data"
    NOT_PSEUDONYM = "not_pseudonym"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_AGENCY = "unknown_agency"
    UNKNOWN_SERVICE = "unknown_service"
    SERVICE_NOT_OWNED = "service_not_owned"
    UNKNOWN_MUNICIPALITY = "unknown_municipality"
    UNKNOWN_STEP = "unknown_step"
    UNKNOWN_OFFICE = "unknown_office"
    UNKNOWN_LIFE_SITUATION = "unknown_life_situation"
    FORBIDDEN_AGENCY = "forbidden_agency"
    #: the Kafka record key is not :func:`event_key` of its event (processor only)
    WRONG_KEY = "wrong_key"
    #: the processor raised while applying the event (dead-lettered by the processor)
    PROCESSING_ERROR = "processing_error"


#: Russian names of the rejection reasons: reports and dashboards
#: (``servicepulse_catalog_reason_info``) read them from here; every reason has one.
REASON_NAMES: Final[dict[str, str]] = {
    Reason.INVALID_JSON: "некорректный JSON",
    Reason.TOO_LARGE: "слишком большое событие",
    Reason.NOT_AN_OBJECT: "не JSON-объект",
    Reason.UNKNOWN_FIELD: "неизвестное поле",
    Reason.MISSING_FIELD: "нет обязательного поля",
    Reason.WRONG_TYPE: "неверный тип",
    Reason.BAD_FORMAT: "неверный формат",
    Reason.OUT_OF_RANGE: "вне диапазона",
    Reason.BAD_VALUE: "недопустимое значение",
    Reason.NO_OFFSET: "время без часового пояса",
    Reason.FUTURE_TIMESTAMP: "время в будущем",
    Reason.TOO_EARLY: "время раньше допустимого",
    Reason.PERSONAL_DATA: "персональные данные в событии",
    Reason.NOT_PSEUDONYM: "персональные данные вместо псевдонима",
    Reason.UNSUPPORTED_VERSION: "неподдерживаемая версия",
    Reason.UNKNOWN_AGENCY: "неизвестное ведомство",
    Reason.UNKNOWN_SERVICE: "неизвестная услуга",
    Reason.SERVICE_NOT_OWNED: "услуга другого ведомства",
    Reason.UNKNOWN_MUNICIPALITY: "неизвестный ОКТМО",
    Reason.UNKNOWN_STEP: "неизвестный шаг",
    Reason.UNKNOWN_OFFICE: "неизвестный офис",
    Reason.UNKNOWN_LIFE_SITUATION: "неизвестная жизненная ситуация",
    Reason.FORBIDDEN_AGENCY: "событие чужого ведомства",
    Reason.WRONG_KEY: "неверный ключ записи в Kafka",
    Reason.PROCESSING_ERROR: "сбой при обработке",
}


class Attrs(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """Type-specific fields, flattened: each type allows only its own keys.

    Which keys a type allows and requires is in :data:`ATTRS_RULES`.
    """

    step: Code | None = None
    code: Code | None = None
    outcome: Outcome | None = None
    reason: Code | None = None
    request: Id | None = None
    counterpart: Code | None = None
    office: Code | None = None
    wait_seconds: Annotated[int, msgspec.Meta(ge=0, le=86_400)] | None = None
    score: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    appeal: Id | None = None
    kind: AppealKind | None = None


_NO_ATTRS = Attrs()


# gc=False: frozen, and their fields are strings, numbers, a datetime and an Attrs, so
# no cycle can pass through them; untracked, a decoded event does not count towards
# the cyclic collector's next run
class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One usage event (contract v1). Construct through :func:`decode_event`."""

    event_id: str
    type: EventType
    schema_version: Literal[1]
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    agency: Code
    municipality: str
    channel: Channel
    attrs: Attrs = _NO_ATTRS
    service: Code | None = None
    journey: Id | None = None
    life_situation: Code | None = None
    case: Id | None = None
    citizen: str | None = None


@dataclass(frozen=True, slots=True)
class AttrsRule:
    """The ``attrs`` keys one event type requires and allows."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()


def _rule(required: Iterable[str] = (), optional: Iterable[str] = ()) -> AttrsRule:
    return AttrsRule(frozenset(required), frozenset(optional))


ATTRS_RULES: Final[dict[EventType, AttrsRule]] = {
    EventType.JOURNEY_STARTED: _rule(),
    EventType.JOURNEY_STEP: _rule(["step"]),
    EventType.JOURNEY_SUBMITTED: _rule(),
    EventType.JOURNEY_ABANDONED: _rule(),
    EventType.JOURNEY_ERROR: _rule(["code"], ["step"]),
    EventType.DECISION_MADE: _rule(["outcome"], ["reason"]),
    EventType.INTERAGENCY_REQUESTED: _rule(["request", "counterpart"]),
    EventType.INTERAGENCY_RESPONDED: _rule(["request", "counterpart"]),
    EventType.VISIT_SERVED: _rule(["office", "wait_seconds"]),
    EventType.FEEDBACK_GIVEN: _rule(["score"]),
    EventType.APPEAL_RECEIVED: _rule(["appeal"], ["kind"]),
    EventType.APPEAL_ANSWERED: _rule(["appeal"]),
}

#: Types for which ``service`` and ``journey`` may be absent.
SERVICE_OPTIONAL: Final = frozenset(
    {EventType.VISIT_SERVED, EventType.APPEAL_RECEIVED, EventType.APPEAL_ANSWERED}
)
JOURNEY_OPTIONAL: Final = SERVICE_OPTIONAL
_ATTR_NAMES: Final = tuple(Attrs.__struct_fields__)


def _shape(rule: AttrsRule) -> tuple[Callable[[tuple[Any, ...]], Any], tuple[None, ...], Any]:
    """Getters of the ``attrs`` values a type must not have (compared with Nones) and
    of those it requires (``None``: none), by position in ``msgspec.structs.astuple``."""
    allowed = rule.required | rule.optional
    forbidden = [i for i, name in enumerate(_ATTR_NAMES) if name not in allowed]
    required = [i for i, name in enumerate(_ATTR_NAMES) if name in rule.required]
    # itemgetter of one index returns the item itself: repeated, it returns a tuple
    return (
        itemgetter(*forbidden, *forbidden),
        (None,) * (2 * len(forbidden)),
        itemgetter(*required, *required) if required else None,
    )


_SHAPES: Final = {etype: _shape(rule) for etype, rule in ATTRS_RULES.items()}


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one event was rejected.

    Attributes:
        field: dotted path of the offending field (``attrs.score``), or ``""`` for the
            event as a whole (malformed JSON, too large).
        reason: a :class:`Reason` code; bounded, safe as a metric label.
        message: a human sentence naming the field and what was expected.
    """

    field: str
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that failed validation, with its position in the batch (0-based)."""

    index: int
    problems: tuple[Problem, ...]
    event_id: str | None = None
    agency: str | None = None

    @property
    def reason(self) -> Reason:
        """The first problem's reason: the one the event is counted under."""
        return self.problems[0].reason


_decoder: Final = msgspec.json.Decoder(Event)
_encoder: Final = msgspec.json.Encoder()


def _strict_twin(cls: type[msgspec.Struct], prefix: str, nested: dict[type, Any]) -> Any:
    """``cls`` as a struct of the same name whose string fields carry their
    :data:`FORMS` as msgspec patterns (``nested``: the twins of its struct fields, and
    an instance of each for its default)."""
    hints = get_type_hints(cls, include_extras=True)
    fields: list[tuple[str, Any, Any]] = []
    for f in cast(mi.StructType, mi.type_info(cls)).fields:
        hint = hints[f.name]
        optional = type(None) in get_args(hint)
        base = next((a for a in get_args(hint) if a is not type(None)), hint) if optional else hint
        if base is str:
            pattern = FORMS.get(prefix + f.name)
            if pattern is None:
                raise TypeError(f"{cls.__name__}.{f.name}: a string field with no form in FORMS")
            base = Annotated[str, msgspec.Meta(pattern=pattern)]
        elif base in nested:
            base = nested[base][0]
        default = f.default
        if type(default) in nested:
            default = nested[type(default)][1]
        # typing.Optional: `|` of an Annotated alias built at run time
        fields.append((f.name, Optional[base] if optional else base, default))  # noqa: UP045
    return msgspec.defstruct(
        cls.__name__,
        [(n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in fields],
        namespace={"__doc__": cls.__doc__},
        module=__name__,
        frozen=True,
        forbid_unknown_fields=True,
        omit_defaults=True,
    )


_StrictAttrs: Final = _strict_twin(Attrs, "attrs.", {})
_StrictEvent: Final = _strict_twin(Event, "", {Attrs: (_StrictAttrs, _StrictAttrs())})

#: The most values a :class:`_Seen` remembers before it starts again (at most 128
#: characters each: a few MB).
_FORM_MEMORY: Final = 16_384


class _Seen:
    """Values seen to pass one test, at most :data:`_FORM_MEMORY` of them (then it
    starts again), and ``None`` (an absent optional field passes every test)."""

    __slots__ = ("known",)

    def __init__(self) -> None:
        #: read directly on the hot path; cleared in place when full
        self.known: set[str | None] = {None}

    def add(self, values: tuple[str | None, ...]) -> None:
        known = self.known
        if len(known) + len(values) > _FORM_MEMORY:
            known.clear()
            known.add(None)
        known.update(values)


class _Form(_Seen):
    """One required form of string fields, and the values seen to have it."""

    __slots__ = ("_search",)

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self._search = re.compile(pattern).search

    def holds(self, values: tuple[str | None, ...]) -> bool:
        """Whether every value that is not ``None`` has the form."""
        known = self.known
        for v in values:
            if v not in known and self._search(v) is None:  # type: ignore[arg-type]
                return False
        self.add(values)
        return True


_EVENT_ID: Final = re.compile(_UUID_PATTERN).search
_CODE: Final = _Form(_CODE_PATTERN)
_ID: Final = _Form(_ID_PATTERN)
_OKTMO: Final = _Form(_OKTMO_PATTERN)
_PSEUDONYM: Final = _Form(_PSEUDONYM_PATTERN)


def _forms_hold(e: Event) -> bool:
    """Whether every string field of a decoded event has its form (:data:`FORMS`).

    Written out field by field: a set lookup per field where the value was seen before,
    the form's search only for a new value (about 0.4 µs for the usual event, against
    2.6 µs as msgspec patterns).
    """
    if _EVENT_ID(e.event_id) is None:
        return False
    codes, ids = _CODE.known, _ID.known
    if not (
        e.agency in codes and e.service in codes and e.life_situation in codes
    ) and not _CODE.holds((e.agency, e.service, e.life_situation)):
        return False
    if not (e.journey in ids and e.case in ids) and not _ID.holds((e.journey, e.case)):
        return False
    if e.municipality not in _OKTMO.known and not _OKTMO.holds((e.municipality,)):
        return False
    if e.citizen not in _PSEUDONYM.known and not _PSEUDONYM.holds((e.citizen,)):
        return False
    a = e.attrs
    if a is _NO_ATTRS:
        return True
    if not (
        a.step in codes
        and a.code in codes
        and a.reason in codes
        and a.counterpart in codes
        and a.office in codes
    ) and not _CODE.holds((a.step, a.code, a.reason, a.counterpart, a.office)):
        return False
    return (a.request in ids and a.appeal in ids) or _ID.holds((a.request, a.appeal))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


#: JSON type names for messages (a value's type, never the value itself).
_JSON_TYPES: Final = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _wrong_type(path: str, expected: str, value: object) -> Problem:
    got = _JSON_TYPES.get(type(value), "another type")
    return Problem(path, Reason.WRONG_TYPE, f"{path}: expected {expected}, got {got}")


def _first_problem(doc: object) -> Problem:
    """The first problem msgspec found, found again by our own checks of the JSON value.

    msgspec says only in English why a document does not match :class:`Event`; the
    reason codes are a bounded, stable set, so they come from walking the decoded value
    along :func:`msgspec.inspect.type_info` of the contract: in document order, as
    msgspec checks (a field's problem where it stands, required fields at the end of
    their object). Runs only for rejected events.
    """
    if not isinstance(doc, dict):
        return Problem("", Reason.NOT_AN_OBJECT, "an event must be a JSON object")
    found = _check_struct(doc, _EVENT_INFO, "")
    # msgspec refused what our walk accepts (e.g. an integer beyond 64 bits): still a
    # bounded reason, and still no value quoted
    return found or Problem("", Reason.BAD_VALUE, "the event does not match contract v1")


def _check_struct(doc: dict[str, Any], info: mi.StructType, path: str) -> Problem | None:
    fields = _STRUCT_FIELDS[info.cls]
    for name, value in doc.items():
        field = fields.get(name)
        if field is None:
            if not _SAFE_NAME.match(name):
                # free text as a field name: say so without repeating it
                return Problem(
                    path,
                    Reason.UNKNOWN_FIELD,
                    f"unknown field in {path or 'the event'} (its name is not shown: not a "
                    "plain identifier)",
                )
            return Problem(
                _join(path, name), Reason.UNKNOWN_FIELD, f"unknown field {_join(path, name)!r}"
            )
        problem = _check_field(value, field.type, _join(path, name))
        if problem is not None:
            return problem
    for field in info.fields:
        if field.required and field.encode_name not in doc:
            where = _join(path, field.encode_name)
            return Problem(where, Reason.MISSING_FIELD, f"required field {where!r} is missing")
    return None


def _check_field(value: object, t: mi.Type, path: str) -> Problem | None:
    problem = _check_value(value, t, path)
    if problem is None:
        return None
    # the fields whose every problem has one meaning for the sender
    if path == "schema_version":
        return Problem(path, Reason.UNSUPPORTED_VERSION, "schema_version must be 1")
    if path == "citizen":
        return Problem(
            path,
            Reason.NOT_PSEUDONYM,
            "citizen must be a 64-hex-character HMAC-SHA256 pseudonym made by the producer "
            "library; raw identifiers (SNILS, phone, e-mail, name) are not accepted",
        )
    return problem


def _check_value(value: object, t: mi.Type, path: str) -> Problem | None:
    if isinstance(t, mi.UnionType):
        if value is None and any(isinstance(u, mi.NoneType) for u in t.types):
            return None
        (t,) = (u for u in t.types if not isinstance(u, mi.NoneType))
    if isinstance(t, mi.StrType):
        if not isinstance(value, str):
            return _wrong_type(path, "a string", value)
        if t.pattern is not None and not re.search(t.pattern, value):
            form = _FORMS.get(path.rsplit(".", 1)[-1], "a code")
            return Problem(path, Reason.BAD_FORMAT, f"{path}: not of the required form ({form})")
        return None
    if isinstance(t, mi.IntType):
        if not isinstance(value, int) or isinstance(value, bool):
            return _wrong_type(path, "an integer", value)
        if (t.ge is not None and value < t.ge) or (t.le is not None and value > t.le):
            return Problem(
                path, Reason.OUT_OF_RANGE, f"{path}: must be an integer from {t.ge} to {t.le}"
            )
        return None
    if isinstance(t, mi.EnumType):
        if not isinstance(value, str):
            return _wrong_type(path, "a string", value)
        if value not in t.cls._value2member_map_:
            allowed = ", ".join(m.value for m in t.cls)
            return Problem(path, Reason.BAD_VALUE, f"{path}: must be one of {allowed}")
        return None
    if isinstance(t, mi.LiteralType):
        if value in t.values and type(value) in {type(v) for v in t.values}:
            return None
        return Problem(path, Reason.BAD_VALUE, f"{path}: must be one of {t.values}")
    if isinstance(t, mi.DateTimeType):
        if not isinstance(value, str):
            return _wrong_type(path, "an RFC 3339 date-time string", value)
        try:
            parsed = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            return Problem(path, Reason.BAD_FORMAT, f"{path}: not an RFC 3339 date-time")
        if t.tz and parsed.tzinfo is None:
            return Problem(
                path,
                Reason.NO_OFFSET,
                f"{path} must be RFC 3339 with a UTC offset, e.g. 2026-11-26T10:15:00+05:00",
            )
        return None
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            return _wrong_type(path, "an object", value)
        return _check_struct(value, t, path)
    return None  # no other types in the contract


_EVENT_INFO: Final = cast(mi.StructType, mi.type_info(_StrictEvent))
_STRUCT_FIELDS: Final = {
    info.cls: {f.encode_name: f for f in info.fields}
    for info in (_EVENT_INFO, cast(mi.StructType, mi.type_info(_StrictAttrs)))
}


_FORMS: Final = {
    "event_id": "a UUID such as 0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
    "municipality": "an OKTMO code of 8 or 11 digits",
    "journey": "1..128 characters of A-Z a-z 0-9 . _ : -",
    "case": "1..128 characters of A-Z a-z 0-9 . _ : -",
    "request": "1..128 characters of A-Z a-z 0-9 . _ : -",
    "appeal": "1..128 characters of A-Z a-z 0-9 . _ : -",
}


#: Free identifier and code fields: opaque, never personal data. (The other code fields,
#: ``agency``, ``service``, ``life_situation``, ``attrs.step``, ``attrs.office`` and
#: ``attrs.counterpart``, must be catalog codes, so nothing else passes them; their
#: problems never quote a value that looks like personal data either.)
OPAQUE_FIELDS: Final = ("journey", "case")
OPAQUE_ATTRS: Final = ("request", "appeal", "code", "reason")


#: Values of the free identifier and code fields seen to be opaque (a journey's ids come
#: back with each of its events).
_OPAQUE: Final = _Seen()


def _personal_data(event: Event) -> list[Problem]:
    """A free identifier or code field that looks like personal data; never quotes it."""
    a = event.attrs
    seen = _OPAQUE.known
    if a is _NO_ATTRS:
        if event.journey in seen and event.case in seen:
            return []
        values: tuple[str | None, ...] = (event.journey, event.case)
    else:
        if (
            event.journey in seen
            and event.case in seen
            and a.request in seen
            and a.appeal in seen
            and a.code in seen
            and a.reason in seen
        ):
            return []
        values = (event.journey, event.case, a.request, a.appeal, a.code, a.reason)
    problems = _personal_values(values)
    if not problems:
        _OPAQUE.add(values)
    return problems


def _personal_data_of_doc(doc: object) -> list[Problem]:
    """:func:`_personal_data` of a document that does not match :class:`Event`.

    A rejected event is still checked for personal data in its identifiers, so the
    agency learns of it at once (not after fixing another field) and the counts of
    personal-data rejections are complete; only string values are looked at.
    """
    if not isinstance(doc, dict):
        return []
    attrs = doc.get("attrs")
    if not isinstance(attrs, dict):
        attrs = {}
    values = tuple(
        v if isinstance(v, str) else None
        for v in (
            doc.get("journey"),
            doc.get("case"),
            *(attrs.get(name) for name in OPAQUE_ATTRS),
        )
    )
    return _personal_values(values)


def _personal_values(values: tuple[str | None, ...]) -> list[Problem]:
    """The personal-data problems of the values of ``_PD_PATHS`` (in that order)."""
    # one pass in C over all of them: most events have fewer than 10 digits and no "@"
    joined = "\x00".join(filter(None, values)).encode()
    if len(joined) < 10 or (
        b"@" not in joined and len(joined) - len(joined.translate(None, _DIGITS)) < 10
    ):
        return []
    # then each on its own (a journey and a request id of 5 digits each pass together):
    # a value with neither 10 digits nor an "@" is opaque (contract.personal's own test)
    for value in values:
        if value is not None and len(value) >= 10:
            raw = value.encode()
            if b"@" in raw or len(raw) - len(raw.translate(None, _DIGITS)) >= 10:
                break
    else:
        return []
    problems: list[Problem] = []
    for path, value in zip(_PD_PATHS, values, strict=False):  # no attrs: journey, case only
        rule = None if value is None else personal_data_rule(value)
        if rule is not None:
            problems.append(
                Problem(
                    path,
                    Reason.PERSONAL_DATA,
                    f"{path} looks like {RULE_NAMES[rule]} (rule {rule}); identifiers and "
                    "codes must be opaque and never personal data (the value is not shown)",
                )
            )
    return problems


_DIGITS: Final = b"0123456789"
#: the fields :func:`_personal_values` checks, in its order
_PD_PATHS: Final = (*OPAQUE_FIELDS, *(f"attrs.{name}" for name in OPAQUE_ATTRS))


def _attrs_problems(
    problems: list[Problem], etype: EventType, rule: AttrsRule, attrs: Attrs
) -> None:
    """Append the problems of ``attrs`` keys that ``etype`` does not allow or requires."""
    for name in _ATTR_NAMES:
        present = getattr(attrs, name) is not None
        if present and name not in rule.required and name not in rule.optional:
            problems.append(
                Problem(
                    f"attrs.{name}",
                    Reason.UNKNOWN_FIELD,
                    f"attrs.{name} is not allowed for type {etype.value}",
                )
            )
        elif not present and name in rule.required:
            problems.append(
                Problem(
                    f"attrs.{name}",
                    Reason.MISSING_FIELD,
                    f"attrs.{name} is required for type {etype.value}",
                )
            )


def _semantic_problems(event: Event, now: datetime | None, earliest: datetime) -> list[Problem]:
    """Rules msgspec cannot express: per-type fields, the time limits, opaque ids."""
    problems: list[Problem] = _personal_data(event)
    etype = event.type
    rule = ATTRS_RULES[etype]
    attrs = event.attrs
    if attrs is not _NO_ATTRS or rule.required:
        # checked in C first; the loop over the names only finds what is wrong
        forbidden, nones, required = _SHAPES[etype]
        values = astuple(attrs)
        if forbidden(values) != nones or (required is not None and None in required(values)):
            _attrs_problems(problems, etype, rule, attrs)
    if event.service is None and etype not in SERVICE_OPTIONAL:
        problems.append(
            Problem("service", Reason.MISSING_FIELD, f"service is required for type {etype.value}")
        )
    if event.journey is None and etype not in JOURNEY_OPTIONAL:
        problems.append(
            Problem("journey", Reason.MISSING_FIELD, f"journey is required for type {etype.value}")
        )
    if now is not None and event.occurred_at > now + MAX_FUTURE:
        problems.append(
            Problem(
                "occurred_at",
                Reason.FUTURE_TIMESTAMP,
                "occurred_at is more than 5 minutes ahead of the receiver's clock "
                f"({event.occurred_at.isoformat()} > {now.isoformat()}); check the sender's clock",
            )
        )
    occurred = event.occurred_at
    # the year first: a datetime comparison across UTC offsets costs more than a decode
    if occurred.year <= earliest.year + 1 and occurred < earliest:
        problems.append(too_early(earliest))
    return problems


def too_early(earliest: datetime) -> Problem:
    """The problem of an ``occurred_at`` before the earliest accepted instant."""
    return Problem(
        "occurred_at",
        Reason.TOO_EARLY,
        f"occurred_at is before the earliest accepted instant {earliest.isoformat()} "
        "(SERVICEPULSE_EARLIEST_OCCURRED_AT); a default date such as 0001-01-01 is not an "
        "event time",
    )


def decode_event(
    raw: bytes | memoryview | str,
    now: datetime | None = None,
    earliest: datetime = EARLIEST_OCCURRED_AT,
) -> Event | list[Problem]:
    """Decode and validate one JSON event.

    Args:
        raw: the JSON text of one event (UTF-8).
        now: the receiver's clock (timezone-aware); events more than 5 minutes after it
            are rejected. ``None`` skips that check (replaying stored events).
        earliest: events whose ``occurred_at`` is before this instant are rejected
            (reason ``too_early``); the setting ``SERVICEPULSE_EARLIEST_OCCURRED_AT``.

    Returns:
        The event (``event_id`` in canonical lower case), or the problems found (at
        least one). Never raises for bad input.
    """
    if len(raw) > MAX_EVENT_BYTES:
        return [
            Problem(
                "",
                Reason.TOO_LARGE,
                f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES} bytes (64 KiB)",
            )
        ]
    try:
        event = _decoder.decode(raw)
    except msgspec.ValidationError:
        return _mismatch(raw)
    except msgspec.DecodeError as exc:
        return [Problem("", Reason.INVALID_JSON, f"malformed JSON: {exc}")]
    except RecursionError:
        return [_TOO_DEEP]
    if not _forms_hold(event):
        return _mismatch(raw)
    problems = _semantic_problems(event, now, earliest)
    if problems:
        return problems
    eid = event.event_id
    canonical = eid.lower()
    if canonical != eid:
        event = msgspec.structs.replace(event, event_id=canonical)
    return event


def _mismatch(raw: bytes | memoryview | str) -> list[Problem]:
    """The problems of a document that does not match the contract (the first only,
    with those of personal data in its identifiers)."""
    # msgspec validates while it parses: a truncated or broken document can fail on a
    # field before the syntax error is reached, so check the syntax first
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return [Problem("", Reason.INVALID_JSON, f"malformed JSON: {exc}")]
    except RecursionError:
        return [_TOO_DEEP]
    return [*_personal_data_of_doc(doc), _first_problem(doc)]


def dedup_identity(event: Event) -> tuple[str, int]:
    """What makes two events the same event: the agency and the 128-bit UUID.

    Event ids are scoped per agency (two agencies may use the same id for two events)
    and compared as numbers, so case and hyphen-free spellings of one UUID are one id.
    The processor's deduplication and the API's recent-ids cache both key by this.
    """
    return event.agency, int(event.event_id.replace("-", ""), 16)


_TOO_DEEP: Final = Problem("", Reason.INVALID_JSON, "malformed JSON: nested too deeply")


def encode_event(event: Event) -> bytes:
    """The canonical JSON of a valid event, as written to Kafka."""
    return _encoder.encode(event)


#: Kafka record header with the producer's send time, epoch milliseconds as ASCII digits
#: (stamped by the producer library; the processor measures clock skew from it).
SENT_AT_HEADER: Final = "sent_at"


def event_key(event: Event) -> bytes:
    """The canonical Kafka key (the one rule, README "Kafka keys"), UTF-8:

    - ``c:<case>`` when the event belongs to a case (a case spans agencies, so the
      agency is not part of it);
    - else ``j:<agency>:<journey>``;
    - else ``a:<agency>:<appeal>`` (appeals without a journey);
    - else ``e:<event_id>``.

    Keying by case keeps every journey of one life-situation instance on one partition,
    so the processor can see a case complete; every event of a journey in a case must
    carry the case. The processor dead-letters a record whose key is not this one
    (reason ``wrong_key``), so a journey is never silently split across partitions.
    """
    if event.case is not None:
        return f"c:{event.case}".encode()
    if event.journey is not None:
        return f"j:{event.agency}:{event.journey}".encode()
    if event.attrs.appeal is not None:
        return f"a:{event.agency}:{event.attrs.appeal}".encode()
    return f"e:{event.event_id.lower()}".encode()


def split_batch(body: bytes, *, ndjson: bool = False) -> Iterator[bytes | Problem]:
    """Split a request body (a JSON array or NDJSON) into the raw text of each event.

    A JSON array that is itself malformed yields one :class:`Problem`; NDJSON is split on
    newlines, so one malformed line does not affect the others. Blank lines are skipped.
    A body that starts with ``[`` is taken for a JSON array unless ``ndjson`` says the
    sender declared NDJSON (then a first line that is an array is one bad event, and
    the lines after it still count).
    """
    stripped = body.lstrip()
    if stripped.startswith(b"[") and not ndjson:
        try:
            items = msgspec.json.decode(stripped, type=list[msgspec.Raw])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            yield Problem("", Reason.INVALID_JSON, f"malformed JSON array: {exc}")
            return
        except RecursionError:
            # msgspec recurses to skip nested values; thousands of `[` must be a 400, not a crash
            yield Problem("", Reason.INVALID_JSON, "malformed JSON array: nested too deeply")
            return
        for item in items:
            yield bytes(item)
        return
    for line in body.splitlines():
        if line.strip():
            yield line


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of contract v1, generated from :class:`Event`.

    msgspec renders the envelope; the per-type ``attrs`` rules are added as
    ``if``/``then`` clauses so the schema says as much as the decoder checks.
    """
    schema: dict[str, Any] = msgspec.json.schema(_StrictEvent)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ServicePulse event, contract v1"
    schema["description"] = (
        "One usage event of a public service. UTF-8 JSON, at most 64 KiB. "
        "occurred_at must not be more than 5 minutes in the future of the receiver's clock, "
        "nor before the earliest accepted instant (default 2000-01-01T00:00:00Z, setting "
        "SERVICEPULSE_EARLIEST_OCCURRED_AT; reason too_early). event_id is compared in lower "
        "case and per agency. Identifier and code fields (agency, service, journey, "
        "life_situation, case and every attrs code or id) must be opaque: a value that looks "
        "like a SNILS, a Russian phone number, an e-mail address or an INN is refused "
        "(reason personal_data) and never quoted back."
    )
    clauses: list[dict[str, Any]] = []
    for etype, rule in ATTRS_RULES.items():
        allowed = sorted(rule.required | rule.optional)
        then: dict[str, Any] = {
            "properties": {
                "attrs": {
                    "required": sorted(rule.required),
                    "propertyNames": {"enum": allowed} if allowed else {"not": {}},
                }
            }
        }
        top_required = []
        if etype not in SERVICE_OPTIONAL:
            top_required.append("service")
        if etype not in JOURNEY_OPTIONAL:
            top_required.append("journey")
        if top_required:
            then["required"] = top_required
        if rule.required:
            then["required"] = [*then.get("required", []), "attrs"]
        clauses.append({"if": {"properties": {"type": {"const": etype.value}}}, "then": then})
    schema["allOf"] = clauses
    return schema
