"""Event contract v1: valid events, every kind of invalid event, batches, the schema."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.events import (
    MAX_EVENT_BYTES,
    Event,
    EventType,
    Problem,
    Reason,
    decode_event,
    encode_event,
    event_key,
    json_schema,
    split_batch,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def make(**overrides: Any) -> dict[str, Any]:
    """A valid journey.step event, with fields overridden (None deletes a field)."""
    ev: dict[str, Any] = {
        "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
        "type": "journey.step",
        "schema_version": 1,
        "occurred_at": "2026-11-26T14:55:00+05:00",
        "agency": "minsoc",
        "service": "child-allowance",
        "municipality": "75701000",
        "channel": "portal",
        "journey": "j-1",
        "attrs": {"step": "identity"},
    }
    for k, v in overrides.items():
        if v is None:
            ev.pop(k, None)
        else:
            ev[k] = v
    return ev


def problems_of(ev: dict[str, Any] | bytes, now: datetime | None = NOW) -> list[Problem]:
    raw = ev if isinstance(ev, bytes) else json.dumps(ev).encode()
    result = decode_event(raw, now)
    assert not isinstance(result, Event), "expected the event to be rejected"
    return result


def test_valid_event_decodes_and_round_trips() -> None:
    result = decode_event(json.dumps(make()).encode(), NOW)
    assert isinstance(result, Event)
    assert result.type is EventType.JOURNEY_STEP
    assert result.attrs.step == "identity"
    assert result.occurred_at == datetime(2026, 11, 26, 9, 55, tzinfo=UTC)
    again = decode_event(encode_event(result), NOW)
    assert again == result


@pytest.mark.parametrize(
    ("etype", "attrs", "extra"),
    [
        ("journey.started", {}, {}),
        ("journey.submitted", {}, {}),
        ("journey.abandoned", {}, {}),
        ("journey.error", {"code": "esia_timeout", "step": "identity"}, {}),
        ("decision.made", {"outcome": "rejected", "reason": "incomplete_docs"}, {}),
        ("interagency.requested", {"request": "r-1", "counterpart": "fns"}, {}),
        ("interagency.responded", {"request": "r-1", "counterpart": "fns"}, {}),
        (
            "visit.served",
            {"office": "mfc-1", "wait_seconds": 0},
            {"service": None, "journey": None},
        ),
        ("feedback.given", {"score": 5}, {}),
        ("appeal.received", {"appeal": "a-1"}, {"service": None, "journey": None}),
        ("appeal.answered", {"appeal": "a-1"}, {"service": None, "journey": None}),
    ],
)
def test_every_type_with_its_attrs_is_valid(
    etype: str, attrs: dict[str, Any], extra: dict[str, Any]
) -> None:
    ev = make(type=etype, attrs=attrs, **extra)
    if not attrs:
        ev.pop("attrs")
    result = decode_event(json.dumps(ev).encode(), NOW)
    assert isinstance(result, Event), result


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"colour": "red"}, "colour", Reason.UNKNOWN_FIELD),
        ({"attrs": {"step": "identity", "mood": 3}}, "attrs.mood", Reason.UNKNOWN_FIELD),
        ({"attrs": {"step": "identity", "score": 3}}, "attrs.score", Reason.UNKNOWN_FIELD),
        ({"attrs": {}}, "attrs.step", Reason.MISSING_FIELD),
        ({"agency": None}, "agency", Reason.MISSING_FIELD),
        ({"service": None}, "service", Reason.MISSING_FIELD),
        ({"journey": None}, "journey", Reason.MISSING_FIELD),
        ({"schema_version": 2}, "schema_version", Reason.UNSUPPORTED_VERSION),
        ({"schema_version": "1"}, "schema_version", Reason.UNSUPPORTED_VERSION),
        ({"type": "journey.teleported"}, "type", Reason.BAD_VALUE),
        ({"channel": "pigeon"}, "channel", Reason.BAD_VALUE),
        ({"event_id": "not-a-uuid"}, "event_id", Reason.BAD_FORMAT),
        ({"event_id": 42}, "event_id", Reason.WRONG_TYPE),
        ({"municipality": "Chelyabinsk"}, "municipality", Reason.BAD_FORMAT),
        ({"journey": "has space"}, "journey", Reason.BAD_FORMAT),
        ({"journey": "x" * 129}, "journey", Reason.BAD_FORMAT),
        ({"occurred_at": "2026-11-26T10:00:00"}, "occurred_at", Reason.NO_OFFSET),
        ({"occurred_at": "yesterday"}, "occurred_at", Reason.BAD_FORMAT),
        ({"occurred_at": "2026-11-26T10:06:00+00:00"}, "occurred_at", Reason.FUTURE_TIMESTAMP),
        ({"citizen": "123-456-789 01"}, "citizen", Reason.NOT_PSEUDONYM),
        ({"citizen": "ivan@example.org"}, "citizen", Reason.NOT_PSEUDONYM),
        ({"citizen": "+79001234567"}, "citizen", Reason.NOT_PSEUDONYM),
        (
            {"type": "feedback.given", "attrs": {"score": 6}},
            "attrs.score",
            Reason.OUT_OF_RANGE,
        ),
        (
            {"type": "visit.served", "attrs": {"office": "o", "wait_seconds": -1}},
            "attrs.wait_seconds",
            Reason.OUT_OF_RANGE,
        ),
        (
            {"type": "decision.made", "attrs": {"outcome": "maybe"}},
            "attrs.outcome",
            Reason.BAD_VALUE,
        ),
        ({"attrs": {"step": 7}}, "attrs.step", Reason.WRONG_TYPE),
    ],
)
def test_each_kind_of_invalid_event_names_field_and_reason(
    overrides: dict[str, Any], field: str, reason: Reason
) -> None:
    probs = problems_of(make(**overrides))
    assert (field, reason) in {(p.field, p.reason) for p in probs}, probs
    assert all(p.message for p in probs)


def test_future_limit_is_five_minutes_of_the_receivers_clock() -> None:
    at_limit = make(occurred_at=(NOW + timedelta(minutes=5)).isoformat())
    assert isinstance(decode_event(json.dumps(at_limit).encode(), NOW), Event)
    # replaying stored events skips the check
    far = make(occurred_at=(NOW + timedelta(days=1)).isoformat())
    assert isinstance(decode_event(json.dumps(far).encode(), None), Event)


def test_personal_data_is_never_echoed_in_problems() -> None:
    snils = "112-233-445 95"
    probs = problems_of(make(citizen=snils))
    assert probs[0].reason is Reason.NOT_PSEUDONYM
    assert snils not in probs[0].message
    assert "11223344595" not in probs[0].message


def test_pseudonym_is_accepted() -> None:
    result = decode_event(json.dumps(make(citizen="ab" * 32)).encode(), NOW)
    assert isinstance(result, Event)
    assert result.citizen == "ab" * 32


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_id": ', Reason.INVALID_JSON),
        (b"\xff\xfe", Reason.INVALID_JSON),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b'"a string"', Reason.NOT_AN_OBJECT),
        (b"null", Reason.NOT_AN_OBJECT),
    ],
)
def test_malformed_input(raw: bytes, reason: Reason) -> None:
    probs = problems_of(raw)
    assert probs[0].reason is reason
    assert probs[0].field == ""


def test_oversized_event_is_rejected_before_parsing() -> None:
    ev = make()
    ev["journey"] = "j"
    body = json.dumps(ev).encode()
    padded = body[:-1] + b"," + b" " * (MAX_EVENT_BYTES - len(body)) + b"}"
    assert len(padded) > MAX_EVENT_BYTES
    probs = problems_of(padded)
    assert probs[0].reason is Reason.TOO_LARGE
    assert str(MAX_EVENT_BYTES) in probs[0].message


def test_event_of_exactly_the_limit_is_accepted() -> None:
    body = json.dumps(make()).encode()
    padded = body[:-1] + b" " * (MAX_EVENT_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_EVENT_BYTES
    assert isinstance(decode_event(padded, NOW), Event)


def test_batch_split_keeps_good_events_beside_bad_ones() -> None:
    good = json.dumps(make()).encode()
    ndjson = b"\n".join([good, b"{broken", b"", good])
    parts = list(split_batch(ndjson))
    assert len(parts) == 3
    results = [decode_event(p, NOW) if isinstance(p, bytes) else p for p in parts]
    assert isinstance(results[0], Event)
    assert isinstance(results[1], list)
    assert results[1][0].reason is Reason.INVALID_JSON
    assert isinstance(results[2], Event)
    array = b"[" + good + b", 17, " + good + b"]"
    parts = list(split_batch(array))
    assert len(parts) == 3
    assert isinstance(decode_event(parts[0], NOW), Event)  # type: ignore[arg-type]
    assert isinstance(decode_event(parts[1], NOW), list)  # type: ignore[arg-type]


def test_malformed_array_is_one_problem() -> None:
    parts = list(split_batch(b"[{}, "))
    assert len(parts) == 1
    assert isinstance(parts[0], Problem)
    assert parts[0].reason is Reason.INVALID_JSON


def test_event_key_prefers_case_then_journey_then_appeal() -> None:
    with_case = decode_event(json.dumps(make(case="c-9")).encode(), NOW)
    without = decode_event(json.dumps(make()).encode(), NOW)
    appeal = decode_event(
        json.dumps(
            make(type="appeal.received", attrs={"appeal": "a-5"}, service=None, journey=None)
        ).encode(),
        NOW,
    )
    assert isinstance(with_case, Event)
    assert isinstance(without, Event)
    assert isinstance(appeal, Event)
    assert event_key(with_case) == b"c:c-9"
    assert event_key(without) == b"j:minsoc:j-1"
    assert event_key(appeal) == b"a:minsoc:a-5"


def test_json_schema_agrees_with_the_decoder() -> None:
    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    assert not list(validator.iter_errors(make()))
    # per-type attrs rules are in the schema too
    assert list(validator.iter_errors(make(attrs={"score": 3})))
    assert list(validator.iter_errors(make(colour="red")))
    assert list(validator.iter_errors(make(channel="pigeon")))


_printable = st.text(min_size=0, max_size=40)


@pytest.mark.slow  # 300 hypothesis examples: ~2 s of CPU
@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*make().keys(), "x", "attrs"]),
        st.one_of(
            st.none(),
            st.integers(),
            _printable,
            st.booleans(),
            st.floats(),
            st.dictionaries(_printable, st.integers(), max_size=3),
        ),
        max_size=12,
    )
)
def test_decoder_never_raises_and_rejections_always_explain(data: dict[str, Any]) -> None:
    raw = json.dumps({**make(), **data}).encode()
    result = decode_event(raw, NOW)
    if isinstance(result, list):
        assert result
        assert all(isinstance(p.reason, Reason) and p.message for p in result)
    else:
        assert isinstance(result, Event)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_cleanly(raw: bytes) -> None:
    result = decode_event(raw, NOW)
    assert isinstance(result, list)
    assert result[0].reason in set(Reason)


def test_uuid_case_and_format() -> None:
    upper = str(uuid.uuid4()).upper()
    assert isinstance(decode_event(json.dumps(make(event_id=upper)).encode(), NOW), Event)
