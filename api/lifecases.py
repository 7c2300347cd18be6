"""Life-situation cases in the scorecard and the report: counted once, across agencies.

A case bundles the services of several agencies; the processor keys it by the case id
alone and counts it once, in the cell of its first journey (docs/METRICS.md, "Life
situations"). Here its counts come out per life situation: cases started, completed,
the completion share, and the end-to-end time of the completed ones (the mean is exact,
from the histogram's sum; the report adds an estimated median).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from contract.aggregates import Rollup

DAY_MS = 86_400_000


class CasesOut(BaseModel):
    """Cases of one scope and period (suppressed below the small-cell threshold)."""

    started: int | None = Field(description="cases whose first journey started in the period")
    completed: int | None = Field(description="cases with every journey resolved, one decided")
    completion: float | None = Field(description="completed / started")
    mean_days: float | None = Field(description="mean end-to-end time of completed cases, days")
    suppressed: bool = Field(description="fewer cases than the small-cell threshold")


def cases_of(r: Rollup, small: int) -> CasesOut:
    """The case figures of one summed rollup."""
    if 0 < r.cases_started < small or 0 < r.cases_completed < small:
        return CasesOut(
            started=None, completed=None, completion=None, mean_days=None, suppressed=True
        )
    h = r.case_seconds
    mean = h.sum_ms / h.count / DAY_MS if h is not None and h.count else None
    return CasesOut(
        started=r.cases_started,
        completed=r.cases_completed,
        completion=r.cases_completed / r.cases_started if r.cases_started else None,
        mean_days=mean,
        suppressed=False,
    )
