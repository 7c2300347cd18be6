"""Each rejection reason of :func:`contract.events.decode_event`, from structure alone.

The reason codes come from our own walk over the contract's types
(``msgspec.inspect``), never from msgspec's English messages: the last test garbles
those messages and expects the very same problems.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from contract import events
from contract.events import MAX_EVENT_BYTES, Event, Problem, Reason, decode_event

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
    "type": "journey.step",
    "schema_version": 1,
    "occurred_at": "2026-11-26T14:55:00+05:00",
    "agency": "minsoc",
    "service": "childallowance",
    "municipality": "75701000",
    "channel": "portal",
    "journey": "journeyone",
    "attrs": {"step": "identity"},
}


def body(**changes: Any) -> bytes:
    """BASE with fields changed; the value ``...`` deletes a field."""
    ev = {k: v for k, v in {**BASE, **changes}.items() if v is not ...}
    return json.dumps(ev).encode()


#: (raw event, field, reason) for every reason decode_event gives
CASES: list[tuple[bytes, str, Reason]] = [
    (b'{"event_id": ', "", Reason.INVALID_JSON),
    (b"[" * 5000, "", Reason.INVALID_JSON),
    (b" " * (MAX_EVENT_BYTES + 1), "", Reason.TOO_LARGE),
    (b"[1, 2]", "", Reason.NOT_AN_OBJECT),
    (b"null", "", Reason.NOT_AN_OBJECT),
    (body(colour="red"), "colour", Reason.UNKNOWN_FIELD),
    (body(**{"free text": 1}), "", Reason.UNKNOWN_FIELD),
    (body(attrs={"step": "identity", "mood": 3}), "attrs.mood", Reason.UNKNOWN_FIELD),
    (body(attrs={"step": "identity", "score": 3}), "attrs.score", Reason.UNKNOWN_FIELD),
    (body(agency=...), "agency", Reason.MISSING_FIELD),
    (body(attrs={}), "attrs.step", Reason.MISSING_FIELD),
    (body(service=...), "service", Reason.MISSING_FIELD),
    (body(event_id=42), "event_id", Reason.WRONG_TYPE),
    (body(agency=None), "agency", Reason.WRONG_TYPE),
    (body(attrs={"step": 7}), "attrs.step", Reason.WRONG_TYPE),
    (body(attrs=["step"]), "attrs", Reason.WRONG_TYPE),
    (body(channel=3), "channel", Reason.WRONG_TYPE),
    (body(type="feedback.given", attrs={"score": True}), "attrs.score", Reason.WRONG_TYPE),
    (body(occurred_at=1764150000), "occurred_at", Reason.WRONG_TYPE),
    (body(event_id="not-a-uuid"), "event_id", Reason.BAD_FORMAT),
    (body(municipality="Chelyabinsk"), "municipality", Reason.BAD_FORMAT),
    (body(journey="x" * 129), "journey", Reason.BAD_FORMAT),
    (body(occurred_at="yesterday"), "occurred_at", Reason.BAD_FORMAT),
    (body(type="feedback.given", attrs={"score": 6}), "attrs.score", Reason.OUT_OF_RANGE),
    (
        body(type="visit.served", attrs={"office": "o", "wait_seconds": -1}),
        "attrs.wait_seconds",
        Reason.OUT_OF_RANGE,
    ),
    (body(type="journey.teleported"), "type", Reason.BAD_VALUE),
    (body(channel="pigeon"), "channel", Reason.BAD_VALUE),
    (body(type="decision.made", attrs={"outcome": "maybe"}), "attrs.outcome", Reason.BAD_VALUE),
    (body(occurred_at="2026-11-26T10:00:00"), "occurred_at", Reason.NO_OFFSET),
    (body(occurred_at="2026-11-26T10:06:00+00:00"), "occurred_at", Reason.FUTURE_TIMESTAMP),
    (body(occurred_at="1999-12-31T23:00:00+00:00"), "occurred_at", Reason.TOO_EARLY),
    (body(journey="79123456789"), "journey", Reason.PERSONAL_DATA),
    (body(citizen="ivan@example.org"), "citizen", Reason.NOT_PSEUDONYM),
    (body(citizen=12), "citizen", Reason.NOT_PSEUDONYM),
    (body(schema_version=2), "schema_version", Reason.UNSUPPORTED_VERSION),
    (body(schema_version="1"), "schema_version", Reason.UNSUPPORTED_VERSION),
    (body(schema_version=True), "schema_version", Reason.UNSUPPORTED_VERSION),
]


def problems(raw: bytes) -> list[Problem]:
    result = decode_event(raw, NOW)
    assert not isinstance(result, Event), "expected the event to be rejected"
    return result


@pytest.mark.parametrize(("raw", "field", "reason"), CASES)
def test_each_reason_names_its_field(raw: bytes, field: str, reason: Reason) -> None:
    found = problems(raw)
    assert (field, reason) in {(p.field, p.reason) for p in found}, found
    assert all(p.message for p in found)


def test_every_reason_of_the_decoder_has_a_case() -> None:
    # the catalog's reasons (unknown_*, service_not_owned, forbidden_agency) and the
    # processor's (wrong_key, processing_error) are given elsewhere
    not_the_decoders = {
        Reason.UNKNOWN_AGENCY,
        Reason.UNKNOWN_SERVICE,
        Reason.SERVICE_NOT_OWNED,
        Reason.UNKNOWN_MUNICIPALITY,
        Reason.UNKNOWN_STEP,
        Reason.UNKNOWN_OFFICE,
        Reason.UNKNOWN_LIFE_SITUATION,
        Reason.FORBIDDEN_AGENCY,
        Reason.WRONG_KEY,
        Reason.PROCESSING_ERROR,
    }
    assert {reason for _, _, reason in CASES} == set(Reason) - not_the_decoders


def test_the_first_problem_in_document_order_is_the_one_reported() -> None:
    raw = b'{"channel": "pigeon", "colour": "red"}'
    assert [(p.field, p.reason) for p in problems(raw)] == [("channel", Reason.BAD_VALUE)]
    raw = b'{"colour": "red", "channel": "pigeon"}'
    assert [(p.field, p.reason) for p in problems(raw)] == [("colour", Reason.UNKNOWN_FIELD)]


def test_no_value_sent_is_quoted_back() -> None:
    secret = "Ivanov Ivan Ivanovich"  # free text, not code-shaped
    for raw in (body(channel=secret), body(municipality=secret), body(**{secret: 1})):
        assert all(secret not in p.message for p in problems(raw))


class _GarbledDecoder:
    """msgspec's decoder, but every validation message is replaced by nonsense."""

    def __init__(self, real: msgspec.json.Decoder[Event]) -> None:
        self._real = real

    def decode(self, raw: bytes) -> Event:
        try:
            return self._real.decode(raw)
        except msgspec.ValidationError:
            raise msgspec.ValidationError("Ошибка - at `$.nowhere`") from None


def test_reasons_do_not_depend_on_msgspecs_message_text(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = [[(p.field, p.reason) for p in problems(raw)] for raw, _, _ in CASES]
    monkeypatch.setattr(events, "_decoder", _GarbledDecoder(events._decoder))
    assert [[(p.field, p.reason) for p in problems(raw)] for raw, _, _ in CASES] == expected
