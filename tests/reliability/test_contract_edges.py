"""Hostile input at the one decoder every boundary shares (contract/events.py).

The API, the producer library and the processor all decode with
:func:`contract.events.decode_event`; what it does with hostile input is what each of
them does. No broker needed: these run in a second.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.events import Event, Problem, Reason, decode_event, split_batch
from tests.reliability.harness import scaled

pytestmark = pytest.mark.reliability

VALID: dict[str, Any] = {
    "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
    "type": "decision.made",
    "schema_version": 1,
    "occurred_at": "2026-11-26T10:15:00+05:00",
    "agency": "minsoc",
    "municipality": "75701000",
    "channel": "portal",
    "service": "large_family_status",
    "journey": "j-1",
    "case": "c-1",
    "life_situation": "large_family",
    "citizen": "a" * 64,
    "attrs": {"outcome": "approved", "reason": "incomplete_docs"},
}
STRING_FIELDS = [k for k, v in VALID.items() if isinstance(v, str)]
ATTR_FIELDS = ["outcome", "reason", "step", "code", "office", "appeal", "request"]


def test_the_valid_template_is_valid() -> None:
    assert isinstance(decode_event(json.dumps(VALID)), Event)


# Personal data looks like this: Cyrillic names, e-mail, phone, SNILS. Wrapped so that
# a match can only be an echo of the value, never a coincidence with a message template.
free_text = st.text(min_size=0, max_size=60).map(lambda t: f"Ж{t}@")


@given(
    text=free_text,
    where=st.sampled_from(
        [*STRING_FIELDS, *(f"attrs.{a}" for a in ATTR_FIELDS), "<name>", "<attrs-name>"]
    ),
)
@settings(max_examples=int(scaled(400, 4000)), deadline=None)
def test_problems_never_echo_free_text(text: str, where: str) -> None:
    ev = json.loads(json.dumps(VALID))
    if where == "<name>":
        ev[text] = 1
    elif where == "<attrs-name>":
        ev["attrs"][text] = "x"
    elif where.startswith("attrs."):
        ev["attrs"][where[6:]] = text
    else:
        ev[where] = text
    result = decode_event(json.dumps(ev, ensure_ascii=False).encode())
    assert isinstance(result, list) and result, f"{where}={text!r} was accepted"
    for p in result:
        assert isinstance(p, Problem) and p.message
        assert text not in p.message and text not in p.field, (where, p)


@given(depth=st.integers(100, 300_000), where=st.sampled_from(["top", "attrs", "unknown", "id"]))
@settings(max_examples=int(scaled(30, 200)), deadline=None)
def test_deep_nesting_is_a_problem_never_a_crash(depth: int, where: str) -> None:
    nested = b"[" * depth + b"]" * depth
    raw = {
        "top": nested,
        "attrs": b'{"attrs": ' + nested + b"}",
        "unknown": b'{"zz": ' + nested + b"}",
        "id": b'{"event_id": ' + nested + b"}",
    }[where]
    result = decode_event(raw)
    assert isinstance(result, list) and result
    # and as a batch: a JSON array of it is one malformed-array problem, not an exception
    items = list(split_batch(b"[" + raw + b"]"))
    assert all(isinstance(i, (bytes, Problem)) for i in items)


@given(cut=st.integers(1, len(json.dumps(VALID)) - 1))
@settings(max_examples=int(scaled(100, 600)), deadline=None)
def test_a_truncated_event_is_malformed_json(cut: int) -> None:
    result = decode_event(json.dumps(VALID).encode()[:cut])
    assert isinstance(result, list)
    assert result[0].reason is Reason.INVALID_JSON, result
