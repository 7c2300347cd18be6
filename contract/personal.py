"""Personal data shaped like a code: the detector behind the opaque-identifier rule.

Identifier fields (``journey``, ``case``, ``attrs.request``, ``attrs.appeal``) and code
fields (``attrs.code``, ``attrs.reason``, ``service``, ...) must be opaque: they are
written to Kafka, become changelog keys and land in dead letters, so a SNILS, a phone
number, an e-mail address or an INN must never be one. :func:`personal_data_rule` tells
which of those a value looks like; the contract refuses such a value and names only the
field and the rule, never the value.

What counts (digits may be grouped by ``-``, ``.``, space or parentheses; letters, ``_``
and ``:`` end a number; a UUID is opaque by construction and never matches):

- ``snils``: 11 digits grouped 3-3-3-2 (``123-456-789 01``, ``123-456-789-01``) or a
  whole value of 11 ungrouped digits (``98765432100``), whatever the control number; 11
  ungrouped digits inside a longer id only when their control number is valid;
- ``phone``: 11 digits starting with 7 or 8, ungrouped (``79123456789``), after a
  separate ``7``/``+7``/``8`` (``+7 912 345-67-89``, ``8(912)3456789``) or grouped
  4-3-2-2, 4-3-4 or 4-7 (``8912-345-67-89``);
- ``inn``: 12 ungrouped digits (a person's INN) with valid check digits anywhere in
  the value;
  10 digits (an organisation's INN) with a valid check digit when they are the whole
  value: one check digit passes about one 10-digit number in eleven, so inside a longer
  id (``tick-1773082740``, epoch seconds) they are taken for what they usually are;
- ``email``: ``local@domain.tld``.

Pure functions, no I/O; about a microsecond for a value with fewer than 10 digits, and
:func:`personal_data_rule` remembers its last 65,536 answers (a journey's id comes back
with each of its events; at most about 10 MB).
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

Rule = Literal["snils", "phone", "inn", "email"]

#: A number as written: digits, optionally grouped by separators (and a leading ``+``).
_NUMBER: Final = re.compile(r"\+?\d(?:[\d \t().-]*\d)?", re.ASCII)
_GROUP: Final = re.compile(r"\d+", re.ASCII)
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_DIGITS: Final = b"0123456789"
_INN10: Final = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN11: Final = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12: Final = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_SNILS_GROUPS: Final = (3, 3, 3, 2)
_PHONE_GROUPS: Final = frozenset({(4, 3, 2, 2), (4, 3, 4), (4, 7)})
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def snils_valid(digits: str) -> bool:
    """Whether 11 digits carry a valid SNILS control number (the last two digits).

    The control number is the sum of the first nine digits weighted 9..1, taken modulo
    101, with 100 written as 00. Numbers up to 001-001-998 are not issued.
    """
    if len(digits) != 11 or not (digits.isascii() and digits.isdigit()):
        return False
    if int(digits[:9]) <= 1_001_998:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(9, 0, -1), strict=True))
    return (total % 101) % 100 == int(digits[9:])


def inn_valid(digits: str) -> bool:
    """Whether 10 (organisation) or 12 (person) digits carry valid INN check digits.

    The first two digits are a region code (01..99), so ``00...`` is never an INN.
    """
    if not (digits.isascii() and digits.isdigit()) or digits.startswith("00"):
        return False
    if len(digits) == 10:
        return _inn_digit(digits, _INN10) == int(digits[9])
    if len(digits) == 12:
        return _inn_digit(digits, _INN11) == int(digits[10]) and _inn_digit(digits, _INN12) == int(
            digits[11]
        )
    return False


def _inn_digit(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def _number_rule(groups: list[str], whole: bool) -> Rule | None:
    """The rule a run of digit groups (one written number, or a part of one) matches;
    ``whole`` says the groups are all the value holds."""
    digits = "".join(groups)
    n = len(digits)
    single = len(groups) == 1
    if n == 11:
        shape = tuple(len(g) for g in groups)
        if digits[0] in "78" and (single or shape[0] == 1 or shape in _PHONE_GROUPS):
            return "phone"
        if shape == _SNILS_GROUPS:
            return "snils"
        # a whole value of 11 bare digits is SNILS-shaped whatever its control number (a
        # mistyped SNILS is still one); inside a longer id only a valid one is taken as such
        return "snils" if single and (whole or snils_valid(digits)) else None
    if single and (n == 12 or (n == 10 and whole)) and inn_valid(digits):
        return "inn"
    return None


@functools.lru_cache(maxsize=65_536)
def personal_data_rule(value: str) -> Rule | None:
    """Which kind of personal data ``value`` looks like, or ``None`` for an opaque value.

    Every contiguous run of digit groups within a written number is tried, so a phone
    number inside a longer id (``j-8-912-345-67-89``) is found too; a single group of
    digits is never split (``20261126123456789`` is one number of 17 digits).
    """
    if "@" in value and _EMAIL.search(value):
        return "email"
    raw = value.encode("utf-8", "replace")
    if len(raw) < 10 or len(raw) - len(raw.translate(None, _DIGITS)) < 10:
        return None
    if _UUID.fullmatch(value):
        return None
    bare = _NUMBER.fullmatch(value.strip()) is not None
    for m in _NUMBER.finditer(value):
        groups = _GROUP.findall(m.group())
        for i in range(len(groups)):
            size = 0
            for j in range(i, len(groups)):
                size += len(groups[j])
                if size > 12:
                    break
                if size >= 10:
                    rule = _number_rule(groups[i : j + 1], bare and i == 0 and j == len(groups) - 1)
                    if rule is not None:
                        return rule
    return None


def shown(value: str) -> str:
    """``repr(value)`` for a message, unless it looks like personal data (then a note)."""
    rule = personal_data_rule(value)
    if rule is None:
        return repr(value)
    return f"(value not shown: it looks like {RULE_NAMES[rule]})"


#: What each rule is called in messages.
RULE_NAMES: Final[dict[Rule, str]] = {
    "snils": "a SNILS",
    "phone": "a phone number",
    "inn": "an INN",
    "email": "an e-mail address",
}
