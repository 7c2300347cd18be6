"""The forms of the contract's string fields, checked after msgspec (``FORMS``).

The decoder of the hot path declares its string fields without patterns and checks
their forms itself, remembering values that passed; these tests hold that check to
msgspec's own patterns on the strict twins of the structs.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import events
from contract.events import FORMS, Attrs, Event, Reason, decode_event
from tests.contract.test_events import make

_strict = msgspec.json.Decoder(events._StrictEvent)


def _string_fields(cls: type, prefix: str) -> set[str]:
    out = set()
    for f in mi.type_info(cls).fields:  # type: ignore[attr-defined]
        t = f.type
        types = t.types if isinstance(t, mi.UnionType) else (t,)
        if any(isinstance(u, mi.StrType) for u in types):
            out.add(prefix + f.name)
    return out


def _strict_patterns(info: mi.StructType, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in info.fields:
        types = f.type.types if isinstance(f.type, mi.UnionType) else (f.type,)
        for u in types:
            if isinstance(u, mi.StrType):
                assert u.pattern is not None, f"{prefix}{f.name} has no pattern"
                out[prefix + f.name] = u.pattern
            elif isinstance(u, mi.StructType):
                out.update(_strict_patterns(u, prefix + f.name + "."))
    return out


def test_forms_name_every_string_field_and_the_strict_twin_carries_them() -> None:
    fields = _string_fields(Event, "") | _string_fields(Attrs, "attrs.")
    assert fields == set(FORMS)
    strict = _strict_patterns(mi.type_info(events._StrictEvent), "")  # type: ignore[arg-type]
    assert strict == FORMS


def _with(path: str, value: Any) -> bytes:
    ev = make()
    if path.startswith("attrs."):
        ev["attrs"] = {**ev["attrs"], path.removeprefix("attrs."): value}
    else:
        ev[path] = value
    return json.dumps(ev).encode()


def _form_problem(raw: bytes, path: str) -> bool:
    result = decode_event(raw, None)
    if isinstance(result, Event):
        return False
    want = Reason.NOT_PSEUDONYM if path == "citizen" else Reason.BAD_FORMAT
    return (path, want) in {(p.field, p.reason) for p in result}


@pytest.mark.parametrize("path", sorted(FORMS))
def test_a_value_out_of_form_is_refused_every_time(path: str) -> None:
    for value in ("has space", "trailing\tTab", ""):
        raw = _with(path, value)
        # the second time too: a refused value is never remembered as good
        assert _form_problem(raw, path) and _form_problem(raw, path), (path, value)


@pytest.mark.parametrize("path", sorted(f for f, p in FORMS.items() if "0-9a-fA-F" not in p))
def test_a_value_in_form_is_accepted_every_time(path: str) -> None:
    value = "31415926" if path == "municipality" else "ok-code.1"
    raw = _with(path, value)
    assert not _form_problem(raw, path) and not _form_problem(raw, path)


_text = st.text(
    alphabet=st.sampled_from("aZ09._:-@ \n\tйé+/" + "f" * 4 + "1" * 4), min_size=0, max_size=130
)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(sorted(FORMS)), _text)
def test_the_check_agrees_with_msgspecs_patterns(path: str, value: str) -> None:
    raw = _with(path, value)
    try:
        _strict.decode(raw)
        strict_ok = True
    except msgspec.ValidationError:
        strict_ok = False
    assert _form_problem(raw, path) is not strict_ok, (path, value)
    assert _form_problem(raw, path) is not strict_ok  # and again, once remembered


def test_the_values_remembered_are_bounded() -> None:
    ids = events._ID
    for i in range(events._FORM_MEMORY + 500):
        assert isinstance(decode_event(_with("journey", f"j-bound-{i}"), None), Event)
        assert len(ids.known) <= events._FORM_MEMORY
    assert _form_problem(_with("journey", "still bad"), "journey")
    assert None in ids.known  # an absent optional field still passes at once
