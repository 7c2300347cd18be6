"""Citizen pseudonyms: HMAC-SHA256 of a normalised identifier under the agency's secret.

No personal data enters Kafka (DESIGN.md section 9): the producer turns a raw identifier
(SNILS, phone number, e-mail, or any other stable id) into 64 hex characters. The same
person must map to one pseudonym however the source system formats the identifier, so
the identifier is normalised first:

- SNILS: the 11 digits, with spaces and dashes removed (``123-456-789 01`` ->
  ``12345678901``); the check number is verified, because a typo would otherwise make
  a second "person".
- Phone: E.164 digits; Russian numbers written with a leading ``8`` or without the
  country code become ``7XXXXXXXXXX``.
- E-mail: trimmed and lower-cased.
- Anything else: trimmed, inner whitespace removed, case-folded.

Each kind is hashed under its own prefix, so a SNILS and a phone number that happen to
share digits never collide. Error messages never contain the identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import re
from typing import Final, Literal

from pydantic import SecretStr

from producers.errors import PseudonymError

IdKind = Literal["snils", "phone", "email", "other"]

_SNILS_GROUPED: Final = re.compile(r"^\d{3}[- ]?\d{3}[- ]?\d{3}[- ]?\d{2}$")
_SEPARATORS: Final = re.compile(r"[\s\-().]")
_SNILS_WEIGHTS: Final = (9, 8, 7, 6, 5, 4, 3, 2, 1)


def snils_checksum(first9: str) -> int:
    """The SNILS check number (two digits) of the first nine digits."""
    total: int = sum(map(operator.mul, map(int, first9), _SNILS_WEIGHTS))
    if total < 100:
        return total
    if total in (100, 101):
        return 0
    rest = total % 101
    return 0 if rest == 100 else rest


def valid_snils(digits: str) -> bool:
    """Whether 11 digits form a SNILS with a correct check number.

    Numbers up to 001-001-998 predate the check number and are accepted as they are.
    """
    if len(digits) != 11 or not digits.isdigit():
        return False
    if int(digits[:9]) <= 1_001_998:
        return True
    return snils_checksum(digits[:9]) == int(digits[9:])


def detect_kind(raw_id: str) -> IdKind:
    """Guess the kind of a raw identifier.

    Bare 11-digit strings are read as a SNILS when the check number matches, else as a
    Russian phone number when they start with 7 or 8. Pass ``kind`` explicitly to
    :meth:`Pseudonymizer.pseudonym` when the source system knows better.
    """
    text = raw_id.strip()
    if "@" in text:
        return "email"
    if text.startswith("+") or "(" in text:
        return "phone"
    digits = _SEPARATORS.sub("", text)
    if not digits.isdigit():
        return "other"
    if digits != text and _SNILS_GROUPED.match(text):
        return "snils"  # written in the SNILS grouping 3-3-3-2
    if digits == text and len(digits) == 11 and valid_snils(digits):
        return "snils"
    if (len(digits) == 11 and digits[0] in "78") or len(digits) == 10:
        return "phone"
    return "other"


def normalize_id(raw_id: str, kind: IdKind | None = None) -> tuple[IdKind, str]:
    """The kind and the canonical form of a raw identifier.

    Raises:
        PseudonymError: the identifier is empty or not a valid value of its kind
            (e.g. a SNILS with a wrong check number). The message names the kind only.
    """
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise PseudonymError("citizen id is empty or not a string")
    kind = kind or detect_kind(raw_id)
    text = raw_id.strip()
    if kind == "snils":
        digits = _SEPARATORS.sub("", text)
        if not valid_snils(digits):
            raise PseudonymError(
                "citizen id given as SNILS is not 11 digits with a correct check number"
            )
        return kind, digits
    if kind == "phone":
        digits = _SEPARATORS.sub("", text).removeprefix("+")
        if not digits.isdigit() or not 10 <= len(digits) <= 15:
            raise PseudonymError("citizen id given as a phone number is not 10..15 digits")
        if len(digits) == 10:
            digits = "7" + digits
        elif len(digits) == 11 and digits[0] == "8" and not text.startswith("+"):
            digits = "7" + digits[1:]
        return kind, digits
    if kind == "email":
        if text.count("@") != 1 or text.startswith("@") or text.endswith("@"):
            raise PseudonymError("citizen id given as an e-mail address is malformed")
        return kind, text.lower()
    return "other", re.sub(r"\s+", "", text).casefold()


class Pseudonymizer:
    """Makes citizen pseudonyms with HMAC-SHA256 under one secret.

    Keep the secret stable: changing it makes every citizen a new pseudonym. Agencies
    that must link their pseudonyms (one person across agencies) share the secret.
    """

    def __init__(self, secret: str | bytes | SecretStr) -> None:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise PseudonymError("the pseudonym secret is empty")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(secret=**********)"

    def pseudonym(self, raw_id: str, kind: IdKind | None = None) -> str:
        """The 64-hex-character pseudonym of a raw identifier.

        Args:
            raw_id: SNILS, phone, e-mail or another stable identifier of the person.
            kind: what ``raw_id`` is; guessed with :func:`detect_kind` when ``None``.

        Raises:
            PseudonymError: see :func:`normalize_id`.
        """
        kind_, canonical = normalize_id(raw_id, kind)
        message = f"{kind_}:{canonical}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
