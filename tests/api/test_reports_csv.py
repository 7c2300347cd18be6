"""The report's CSV layout, row by row, for every kind of row (no read model needed).

The report is a stand-in with the attributes the CSV reads, so the rare rows
(suppressed services and components, restated days) are covered too.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from types import SimpleNamespace as N
from typing import Any, cast

from api.report_render import CSV_COLUMNS, render_csv


def _report() -> Any:
    comps = [
        N(code="completion", suppressed=True, numerator=None, denominator=None, value=None),
        N(code="wait", suppressed=False, numerator=3, denominator=4, value=0.75),
    ]
    third = N(numerator=1, denominator=3, value=1 / 3)
    return N(
        summary=N(index=55.5, level="satisfactory", journeys_started=7, components=comps),
        agencies=[N(code="a", rank=1, index=None, level=None, journeys_started=3, components=[])],
        services=[
            N(agency="a", code="s1", suppressed=True),
            N(
                agency="a",
                code="s2",
                suppressed=False,
                started=5,
                submitted=4,
                abandoned=1,
                decisions=2,
                completion=third,
                on_time=third,
                satisfaction=N(numerator=0, denominator=0, value=None),
                digital=third,
                decision_days_median=None,
                index=12.25,
            ),
        ],
        funnels=[
            N(
                agency="a",
                service="s2",
                channel="portal",
                started=10,
                steps=[N(code="x", reached=5, drop_off=0.5)],
            )
        ],
        overdue=[N(agency="a", service="s2", municipality="75701310", pending=2, overdue=0)],
        quality=[
            N(
                agency="a",
                events=10,
                rejected=2,
                rejected_share=0.2,
                rejected_by_reason={"bad_format": 2},
                late=0,
                duplicates=1,
                delay_over_limit_share=0.5,
                skew_over_limit_share=None,
                skipped_steps=3,
                skipped_share=0.3,
            )
        ],
        restated_days=[N(agency="a", day=date(2026, 1, 2), count=4)],
    )


def test_every_kind_of_row() -> None:
    text = render_csv(cast(Any, _report())).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [",".join(r) for r in rows[1:]]
    assert body == [
        "summary,,,,,index,,,55.5",
        "summary,,,,,level,,,satisfactory",
        "summary,,,,,journeys_started,,,7",
        "summary,,,,completion,suppressed,,,",
        "summary,,,,wait,component,3,4,0.75",
        "ranking,a,,,,rank,,,1",
        "ranking,a,,,,index,,,",
        "ranking,a,,,,level,,,",
        "ranking,a,,,,journeys_started,,,3",
        "services,a,s1,,,suppressed,,,",
        "services,a,s2,,,started,,,5",
        "services,a,s2,,,submitted,,,4",
        "services,a,s2,,,abandoned,,,1",
        "services,a,s2,,,decisions,,,2",
        "services,a,s2,,,completion,1,3,0.333333",
        "services,a,s2,,,on_time,1,3,0.333333",
        "services,a,s2,,,satisfaction,0,0,",
        "services,a,s2,,,digital,1,3,0.333333",
        "services,a,s2,,,decision_days_median,,,",
        "services,a,s2,,,index,,,12.25",
        "funnel,a,s2,,portal,started,,,10",
        "funnel,a,s2,,portal:x,reached,,,5",
        "funnel,a,s2,,portal:x,drop_off,,,0.5",
        "overdue,a,s2,75701310,,pending,,,2",
        "overdue,a,s2,75701310,,overdue,,,0",
        "quality,a,,,,events,,,10",
        "quality,a,,,,rejected,2,12,0.2",
        "quality,a,,,bad_format,rejected_by_reason,,,2",
        "quality,a,,,,late,,,0",
        "quality,a,,,,duplicates,,,1",
        "quality,a,,,,delay_over_5min_share,,,0.5",
        "quality,a,,,,clock_skew_over_1min_share,,,",
        "quality,a,,,,skipped_steps,3,,0.3",
        "restated,a,,,2026-01-02,restatements,,,4",
    ]
