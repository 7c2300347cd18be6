"""Russian wording for alert texts and dashboards: durations, and names instead of codes.

Prometheus templates cannot agree a noun with a number, so texts are phrased to need no
agreement ("заявлений: 5", "×2"); durations from the methodology (Prometheus syntax such
as ``1h5m``) are written out in Russian abbreviations, which do not decline.
"""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {"ms": "мс", "s": "с", "m": "мин", "h": "ч", "d": "сут", "w": "нед", "y": "г"}
_PART: Final = re.compile(r"(\d+)(ms|[smhdwy])")


def duration_ru(text: str) -> str:
    """A Prometheus duration in Russian: ``1h5m`` -> ``1 ч 5 мин``, ``1d`` -> ``1 сут``.

    Raises:
        ValueError: not a Prometheus duration.
    """
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return " ".join(f"{n}\u00a0{_UNITS[u]}" for n, u in parts)
