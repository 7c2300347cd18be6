"""Opaque identifiers: the personal-data detector and the contract's use of it (issue 12,
item 6). A refused value is never quoted: responses, logs and dead letters name the field
and the rule only."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.catalog import load_catalog
from contract.events import Event, Reason, decode_event
from contract.personal import inn_valid, personal_data_rule, shown, snils_valid
from tests.contract.test_events import NOW, make

#: the values of the issue, as clients sent them
REPORTED = {
    "987-654-321-00": "snils",  # SNILS grouping: refused whatever the control number
    "79123456789": "phone",
    "8-912-345-67-89": "phone",
}


def snils_with_control(first9: str) -> str:
    total = sum(int(d) * w for d, w in zip(first9, range(9, 0, -1), strict=True))
    return f"{first9}{total % 101 % 100:02d}"


def inn12(first10: str) -> str:
    w11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
    w12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
    d11 = sum(int(d) * w for d, w in zip(first10, w11, strict=True)) % 11 % 10
    d12 = sum(int(d) * w for d, w in zip(first10 + str(d11), w12, strict=True)) % 11 % 10
    return f"{first10}{d11}{d12}"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        *REPORTED.items(),
        ("98765432183", "snils"),  # bare, valid control number
        ("98765432100", "snils"),  # a whole value of 11 digits, wrong control number
        ("00123456789", "snils"),
        ("123-456-789 64", "snils"),
        ("+7 (912) 345-67-89", "phone"),
        ("8(912)3456789", "phone"),
        ("j-8-912-345-67-89", "phone"),
        ("ivan.petrov@example.org", "email"),
        ("7707083893", "inn"),  # an organisation's INN, as the whole value
        ("500100732259", "inn"),
        ("case-500100732259", "inn"),
    ],
)
def test_personal_data_is_recognised(value: str, rule: str) -> None:
    assert personal_data_rule(value) == rule


@pytest.mark.parametrize(
    "value",
    [
        "bfa8f557-cdd9-4e10-967b-9e676750f0f2",
        "journey-00000001-000000000000",
        "tick-1773082740.0",  # epoch seconds inside an id
        "20261126123456789",  # one group of 17 digits is not split
        "case-2026-000123",
        "j-1",
        "identity",
        "j-98765432100",  # 11 digits with a wrong control number inside a longer id
    ],
)
def test_opaque_values_pass(value: str) -> None:
    assert personal_data_rule(value) is None


@settings(max_examples=300)
@given(st.integers(1_001_999, 999_999_999), st.sampled_from(["", "-", " "]))
def test_every_valid_snils_is_found_in_any_common_form(n: int, sep: str) -> None:
    s = snils_with_control(f"{n:09d}")
    assert snils_valid(s)
    forms = [s, f"{s[:3]}-{s[3:6]}-{s[6:9]}{sep or ' '}{s[9:]}", f"x-{s}"]
    for form in forms:
        assert personal_data_rule(form) in ("snils", "phone"), form


@settings(max_examples=300)
@given(st.integers(0, 10**10 - 1), st.sampled_from(["7", "8", "+7"]))
def test_every_russian_phone_is_found(n: int, prefix: str) -> None:
    d = f"{n:010d}"
    for form in (
        f"{prefix}{d}",
        f"{prefix}-{d[:3]}-{d[3:6]}-{d[6:8]}-{d[8:]}",
        f"{prefix} ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}",
    ):
        assert personal_data_rule(form) == "phone", form


@settings(max_examples=300)
@given(st.integers(10**9, 10**10 - 1))
def test_every_valid_person_inn_is_found(n: int) -> None:
    inn = inn12(f"{n:010d}")
    assert inn_valid(inn)
    assert personal_data_rule(f"c-{inn}") == "inn"


@settings(max_examples=500)
@given(st.uuids())
def test_uuids_are_opaque(u: Any) -> None:
    assert personal_data_rule(str(u)) is None


def test_false_positive_rate_of_random_ids_is_small() -> None:
    rnd = random.Random(5)
    ids = [f"j-{rnd.randrange(10**12):012d}-{rnd.randrange(10**4)}" for _ in range(20_000)]
    hits = sum(personal_data_rule(v) is not None for v in ids)
    # 12-digit groups: two INN check digits pass about 1 in 100; none other applies
    assert hits / len(ids) < 0.02


def test_shown_never_quotes_personal_data() -> None:
    assert shown("mfc-1") == "'mfc-1'"
    assert "79123456789" not in shown("79123456789")


FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("journey", {}),
    ("case", {}),
    ("attrs.request", {"type": "interagency.requested", "attrs": {"counterpart": "fns"}}),
    ("attrs.appeal", {"type": "appeal.received", "attrs": {}}),
    ("attrs.code", {"type": "journey.error", "attrs": {}}),
    ("attrs.reason", {"type": "decision.made", "attrs": {"outcome": "rejected"}}),
]


@pytest.mark.parametrize(("path", "base"), FIELDS)
@pytest.mark.parametrize("value", sorted(REPORTED))
def test_identifier_fields_refuse_personal_data_and_never_quote_it(
    path: str, base: dict[str, Any], value: str
) -> None:
    ev = make(**{k: v for k, v in base.items() if k != "attrs"})
    if "attrs" in base:
        ev["attrs"] = dict(base["attrs"])
    if path.startswith("attrs."):
        ev["attrs"][path.removeprefix("attrs.")] = value
    else:
        ev[path] = value
    result = decode_event(json.dumps(ev).encode(), NOW)
    assert isinstance(result, list), result
    assert [(p.field, p.reason) for p in result] == [(path, Reason.PERSONAL_DATA)]
    assert REPORTED[value] in result[0].message
    assert value not in result[0].message and value.replace("-", "") not in result[0].message


def test_catalog_problems_do_not_quote_a_phone_shaped_municipality() -> None:
    catalog = load_catalog()
    ev = decode_event(json.dumps(make(municipality="79123456789")).encode(), NOW)
    assert isinstance(ev, Event)
    problems = catalog.check(ev)
    assert [p.reason for p in problems][:1] == [Reason.UNKNOWN_MUNICIPALITY]
    assert all("79123456789" not in p.message for p in problems)


def test_the_earliest_bound_has_its_own_reason() -> None:
    for at in ("0001-01-01T00:00:00+05:00", "1999-12-31T23:59:59Z"):
        result = decode_event(json.dumps(make(occurred_at=at)).encode(), NOW)
        assert isinstance(result, list) and [p.reason for p in result] == [Reason.TOO_EARLY]
    ok = decode_event(json.dumps(make(occurred_at="2000-01-01T00:00:00Z")).encode(), NOW)
    assert isinstance(ok, Event)
    later = datetime(2010, 1, 1, tzinfo=UTC)
    old = json.dumps(make(occurred_at="2005-01-01T00:00:00Z")).encode()
    assert isinstance(decode_event(old, NOW, later), list)


def test_event_ids_are_canonical_lower_case() -> None:
    upper = "0B1E4C2A-5F9D-4C51-9A8E-2F6C8D7E1A3B"
    ev = decode_event(
        json.dumps(
            make(
                event_id=upper,
                journey=None,
                type="visit.served",
                service=None,
                attrs={"office": "o", "wait_seconds": 1},
            )
        ).encode(),
        NOW,
    )
    assert isinstance(ev, Event)
    assert ev.event_id == upper.lower()


_ID_TEXT = st.text(alphabet="0123456789-.:_ab", min_size=1, max_size=40)


@settings(max_examples=400)
@given(
    st.sampled_from([f for f, _ in FIELDS]), _ID_TEXT, st.booleans(), st.one_of(st.none(), _ID_TEXT)
)
def test_decoding_never_raises_and_refuses_exactly_what_the_detector_finds(
    path: str, value: str, journey_event: bool, case: str | None
) -> None:
    ev = make(case=case) if journey_event else _attrless(case)
    if path.startswith("attrs.") and journey_event:
        base = dict(FIELDS)[path]
        ev = make(case=case, **{k: v for k, v in base.items() if k != "attrs"})
        ev["attrs"] = {**base.get("attrs", {}), path.removeprefix("attrs."): value}
    elif not path.startswith("attrs."):
        ev[path] = value
    result = decode_event(json.dumps(ev).encode(), NOW)
    present = {
        "journey": ev.get("journey"),
        "case": ev.get("case"),
        **{f"attrs.{k}": v for k, v in ev.get("attrs", {}).items()},
    }
    expected = {
        f
        for f, v in present.items()
        if isinstance(v, str) and f in dict(FIELDS) and personal_data_rule(v) is not None
    }
    if isinstance(result, Event):
        assert not expected
    else:
        got = {p.field for p in result if p.reason == Reason.PERSONAL_DATA}
        assert got == expected


def _attrless(case: str | None) -> dict[str, Any]:
    ev = make(type="journey.started", attrs=None)
    if case is not None:
        ev["case"] = case
    return ev
