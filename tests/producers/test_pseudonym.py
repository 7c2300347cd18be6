"""Citizen pseudonyms: normalisation of SNILS, phone and e-mail, HMAC output."""

from __future__ import annotations

import pytest

from contract.events import Reason, decode_event
from producers.errors import PseudonymError
from producers.pseudonym import Pseudonymizer, detect_kind, normalize_id, valid_snils

SNILS = "112-233-445 95"  # check number 95 is correct for 112233445


def test_snils_check_number() -> None:
    assert valid_snils("11223344595")
    assert not valid_snils("11223344596")


@pytest.mark.parametrize(
    "written",
    ["112-233-445 95", "112-233-445-95", "112 233 445 95", "11223344595", " 11223344595 "],
)
def test_snils_formats_map_to_one_pseudonym(written: str) -> None:
    p = Pseudonymizer("test-secret")
    expected = p.pseudonym("11223344595", kind="snils")
    assert p.pseudonym(written) == expected
    assert len(expected) == 64
    assert all(c in "0123456789abcdef" for c in expected)


@pytest.mark.parametrize(
    "written",
    ["+7 (912) 345-67-89", "8 912 345 67 89", "89123456789", "+79123456789", "9123456789"],
)
def test_phone_formats_map_to_one_pseudonym(written: str) -> None:
    p = Pseudonymizer("test-secret")
    assert detect_kind(written) == "phone"
    assert p.pseudonym(written) == p.pseudonym("79123456789", kind="phone")


def test_kinds_and_secrets_are_separated() -> None:
    a, b = Pseudonymizer("secret-a"), Pseudonymizer("secret-b")
    assert a.pseudonym(SNILS) != b.pseudonym(SNILS)
    assert a.pseudonym("79123456789", kind="phone") != a.pseudonym("79123456789", kind="other")
    assert a.pseudonym("Ivan@Example.RU ") == a.pseudonym("ivan@example.ru")


def test_bad_snils_is_refused_without_echoing_it() -> None:
    with pytest.raises(PseudonymError) as info:
        normalize_id("112-233-445 96")
    assert "112" not in str(info.value)
    assert "SNILS" in str(info.value)
    with pytest.raises(PseudonymError):
        Pseudonymizer("")


def test_raw_snils_in_citizen_is_rejected_by_the_contract() -> None:
    raw = (
        b'{"event_id":"0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b","type":"journey.started",'
        b'"schema_version":1,"occurred_at":"2025-03-03T10:00:00+05:00","agency":"minsoc",'
        b'"service":"large_family_status","municipality":"75701310","channel":"portal",'
        b'"journey":"j1","citizen":"112-233-445 95"}'
    )
    result = decode_event(raw)
    assert isinstance(result, list)
    assert result[0].field == "citizen"
    assert result[0].reason is Reason.NOT_PSEUDONYM
