"""Issue 14, item 12: Russian alert texts need no plural agreement and carry no English
durations; durations read "1 ч 5 мин"."""

from __future__ import annotations

import re

import pytest

from contract.methodology import load_methodology
from dashboards import rules
from dashboards.russian import duration_ru


def test_durations_in_russian() -> None:
    assert duration_ru("1h5m") == "1\u00a0ч 5\u00a0мин"
    assert duration_ru("1d") == "1\u00a0сут"
    assert duration_ru("30s") == "30\u00a0с"
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_ru("PT1H")


def _texts() -> list[str]:
    out = []
    for g in rules.alert_groups(load_methodology()):
        for r in g["rules"]:
            out += [r["annotations"]["summary"], r["annotations"]["description"]]
    return out


def test_alert_texts_need_no_plural_agreement_and_have_no_english_units() -> None:
    texts = _texts()
    assert texts
    for t in texts:
        # a count before a noun would need agreement ("1 раза", "1 заявлений"); a
        # percentage before a genitive plural does not ("12 % событий")
        assert not re.search(r"(\d|\$value\s*\}\})\s+(раза|заявлений|событий)\b", t), t
        assert not re.search(r"\b\d+[smhd]\b", t), t  # "За 1h и 5m"
        assert "humanizeDuration" not in t, t  # renders "20m 0s"
        assert "водян" not in t.lower(), t


def test_russian_pages_carry_no_english_jargon() -> None:
    import json

    from dashboards import build

    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("title", "description", "legendFormat") and isinstance(v, str):
                    texts.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for text in build.render(load_methodology()).values():
        walk(json.loads(text))
    assert texts
    for t in texts:
        for word in ("dead-letter", "retention", "firing", "watermark", "водяной знак"):
            assert word not in t.lower(), t
