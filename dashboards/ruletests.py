"""``promtool test rules`` unit tests for every generated rule.

The recording-rule tests feed counters that grow linearly (so every ``increase`` over a
window is exact) and expect, for each recorded series, the value that
:func:`contract.methodology.score` - the code behind the scorecards and reports -
computes from the same counts. That is the check that the live index and the report
index share one definition. Alert tests play a scenario per alert with one agency (or
service, or target) that must fire and one that must not.

Expected values are compared after ``round(x, 0.0001)``: PromQL and Python add the
weighted terms in different orders, and promtool compares floats exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from contract.aggregates import Rollup
from contract.methodology import Methodology, score
from contract.metrics import PREFIX
from dashboards import pipeline
from dashboards import rules as R

PRECISION: Final = 0.0001
#: Sample spacing of the long-window test, in seconds (a divisor of a day).
LONG_STEP: Final = 7200
TEST_FILES: Final = ("recording-long.yml", "recording-short.yml", "alerts.yml")
_API: Final = {"job": pipeline.JOB_API, "instance": "api:8000"}


def rounded(value: float) -> float:
    """What PromQL's ``round(value, PRECISION)`` returns (same float operations)."""
    inverse = 1.0 / PRECISION
    return math.floor(value * inverse + 0.5) / inverse


def labels_text(labels: Mapping[str, str]) -> str:
    """``{a="x", b="y"}`` in a stable order."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


# -- the recording scenario --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counter:
    """One input counter that grows by ``rate`` per step."""

    family: str
    labels: Mapping[str, str]
    rate: int


def _dims(agency: str, service: str, muni: str, channel: str) -> dict[str, str]:
    return {"agency": agency, "service": service, "municipality": muni, "channel": channel}


def scenario() -> list[Counter]:
    """Two agencies: ``minsoc`` has every component, ``zags`` misses most of them.

    ``zags`` has no digital starts, no abandonments, no journeys with errors and only
    late decisions, so its numerators must come out as 0 (not missing), and no feedback,
    visits, appeals or interagency responses, so those components drop out of its index.
    """
    a = _dims("minsoc", "large_family_status", "75701310", "portal")
    b = _dims("minsoc", "housing_subsidy", "75701315", "mfc")
    z = _dims("zags", "zags_birth", "75701310", "office")
    office = {"agency": "mfc", "municipality": "75701310", "channel": "mfc"}
    appeals = {"agency": "minsoc", "municipality": "75701310", "channel": "portal"}
    return [
        Counter("journeys_started_total", a, 40),
        Counter("journeys_started_total", b, 20),
        Counter("journeys_started_digital_total", a, 40),
        Counter("journeys_submitted_total", a, 24),
        Counter("journeys_submitted_total", b, 10),
        Counter("journeys_abandoned_total", a, 6),
        Counter("journeys_abandoned_total", b, 4),
        Counter("journeys_resolved_total", a, 30),
        Counter("journeys_resolved_total", b, 14),
        Counter("journeys_resolved_with_errors_total", a, 4),
        Counter("decisions_total", {**a, "outcome": "approved", "timeliness": "on_time"}, 20),
        Counter("decisions_total", {**b, "outcome": "rejected", "timeliness": "late"}, 5),
        Counter("decisions_total", {**b, "outcome": "approved", "timeliness": "unknown"}, 3),
        Counter("feedback_total", {**a, "score": "5"}, 10),
        Counter("feedback_total", {**a, "score": "4"}, 6),
        Counter("feedback_total", {**b, "score": "3"}, 2),
        Counter("feedback_total", {**b, "score": "1"}, 2),
        Counter("office_visits_total", {**office, "within_standard": "true"}, 18),
        Counter("office_visits_total", {**office, "within_standard": "false"}, 2),
        Counter("appeals_answered_total", {**appeals, "timeliness": "on_time"}, 3),
        Counter("appeals_answered_total", {**appeals, "timeliness": "late"}, 1),
        Counter("interagency_responses_total", {**a, "within_48h": "true"}, 7),
        Counter("interagency_responses_total", {**a, "within_48h": "false"}, 1),
        Counter("journeys_started_total", z, 10),
        Counter("journeys_submitted_total", z, 8),
        Counter("journeys_resolved_total", z, 8),
        Counter("decisions_total", {**z, "outcome": "approved", "timeliness": "late"}, 2),
    ]


def _rollup(counters: list[Counter], steps: int, by: Mapping[str, str]) -> Rollup:
    """The counts of ``steps`` steps of the counters matching ``by``, as a report sees them."""
    r = Rollup()
    for c in counters:
        if any(c.labels.get(k) != v for k, v in by.items()):
            continue
        n = c.rate * steps
        lab = c.labels
        match c.family:
            case "journeys_started_total":
                r.started += n
            case "journeys_started_digital_total":
                r.started_digital += n
            case "journeys_submitted_total":
                r.submitted += n
            case "journeys_abandoned_total":
                r.abandoned += n
            case "journeys_resolved_total":
                r.resolved += n
            case "journeys_resolved_with_errors_total":
                r.resolved_with_errors += n
            case "decisions_total":
                key = f"{lab['outcome']}:{lab['timeliness']}"
                r.decisions[key] = r.decisions.get(key, 0) + n
            case "feedback_total":
                r.feedback[lab["score"]] = r.feedback.get(lab["score"], 0) + n
            case "office_visits_total":
                r.visits[lab["within_standard"]] = r.visits.get(lab["within_standard"], 0) + n
            case "appeals_answered_total":
                key = lab["timeliness"]
                r.appeals_answered[key] = r.appeals_answered.get(key, 0) + n
            case "interagency_responses_total":
                key = "within" if lab["within_48h"] == R.TRUE else "over"
                r.interagency_responded[key] = r.interagency_responded.get(key, 0) + n
            case _:
                raise ValueError(f"no rollup field for {c.family}")
    return r


def _agencies(counters: list[Counter]) -> list[str]:
    return sorted({c.labels["agency"] for c in counters})


def _ready(steps: int, value: int = 1) -> dict[str, str]:
    """The API's read-model readiness gauge, which gates the totals."""
    return {
        "series": pipeline.API_READMODEL_READY.name + labels_text(_API),
        "values": f"{value}x{steps}",
    }


def _input(counters: list[Counter], steps: int) -> list[dict[str, str]]:
    return [
        _ready(steps),
        *(
            {
                "series": PREFIX + c.family + labels_text({**c.labels, **_API}),
                "values": f"0+{c.rate}x{steps}",
            }
            for c in counters
        ),
    ]


def _expr_test(
    expr: str, eval_time: str, samples: list[tuple[dict[str, str], float]]
) -> dict[str, Any]:
    return {
        "expr": f"round({expr}, {PRECISION:g})",
        "eval_time": eval_time,
        "exp_samples": [
            {"labels": labels_text(lab), "value": rounded(v)}
            for lab, v in sorted(samples, key=lambda s: labels_text(s[0]))
        ],
    }


def _component_samples(
    m: Methodology,
    counters: list[Counter],
    steps: int,
    scope: R.RuleScope,
    what: str,
    codes: tuple[str, ...] | None = None,
) -> list[tuple[dict[str, str], float]]:
    """Expected (labels, value) of one component family for a scope over ``steps`` steps."""
    if scope is R.REGION:
        keys: list[dict[str, str]] = [{}]
    elif scope is R.AGENCY:
        keys = [{"agency": a} for a in _agencies(counters)]
    else:
        keys = sorted(
            (
                {"agency": c.labels["agency"], "service": c.labels["service"]}
                for c in counters
                if c.family == "journeys_submitted_total"
            ),
            key=labels_text,
        )
    out = []
    for key in keys:
        s = score(_rollup(counters, steps, key), m)
        for comp in s.components:
            if codes is not None and comp.code not in codes:
                continue
            lab = {**key, "component": comp.code}
            if what == "numerator" and comp.denominator:
                out.append((lab, float(comp.numerator)))
            elif what == "denominator" and comp.denominator:
                out.append((lab, float(comp.denominator)))
            elif what == "ratio" and comp.value is not None:
                out.append((lab, min(comp.value, 1.0)))
    return out


def _index_samples(
    m: Methodology, counters: list[Counter], steps: int, scope: R.RuleScope, what: str
) -> list[tuple[dict[str, str], float]]:
    keys: list[dict[str, str]] = (
        [{}] if scope is R.REGION else [{"agency": a} for a in _agencies(counters)]
    )
    names = R.level_names(m)
    out: list[tuple[dict[str, str], float]] = []
    for key in keys:
        s = score(_rollup(counters, steps, key), m)
        if s.index is None:
            continue
        value = {
            "index": s.index,
            "level": float(names.index(s.level or names[0])),
            "counted": float(len(s.counted)),
        }[what]
        out.append((key, value))
    return out


def recording_long(m: Methodology) -> dict[str, Any]:
    """Totals and the methodology windows (1d, 7d, 30d) at day 30, 2-hourly samples."""
    counters = scenario()
    # One sample every LONG_STEP seconds: enough for exact increases, and fast.
    last = R.seconds(m.windows[-1])
    at = f"{last // 3600}h"
    n = last // LONG_STEP
    tests = [
        _expr_test(
            R.weight_metric(), "0m", [({"component": c.code}, c.weight) for c in m.components]
        )
    ]
    for part in ("numerator", "denominator"):
        tests.append(
            _expr_test(
                R.total(R.AGENCY, part),
                at,
                _component_samples(m, counters, n, R.AGENCY, part),
            )
        )
        tests.append(
            _expr_test(
                R.total(R.SERVICE, part),
                at,
                _component_samples(m, counters, n, R.SERVICE, part, ("completion",)),
            )
        )
    for w in m.windows:
        steps = R.seconds(w) // LONG_STEP
        for scope in (R.AGENCY, R.REGION):
            for part in ("numerator", "denominator"):
                tests.append(
                    _expr_test(
                        R.increase(scope, part, w),
                        at,
                        _component_samples(m, counters, steps, scope, part),
                    )
                )
            tests.append(
                _expr_test(
                    R.ratio(scope, w),
                    at,
                    _component_samples(m, counters, steps, scope, "ratio"),
                )
            )
            for what, name in (
                ("index", R.index(scope, w)),
                ("level", R.level(scope, w)),
                ("counted", R.counted(scope, w)),
            ):
                tests.append(_expr_test(name, at, _index_samples(m, counters, steps, scope, what)))
        if w in R.SERVICE_WINDOWS:
            for part in ("numerator", "denominator", "ratio"):
                name = R.ratio(R.SERVICE, w) if part == "ratio" else R.increase(R.SERVICE, part, w)
                tests.append(
                    _expr_test(
                        name,
                        at,
                        _component_samples(m, counters, steps, R.SERVICE, part, ("completion",)),
                    )
                )
    return {
        "rule_files": [f"../rules/{R.RECORDING_FILE}"],
        "evaluation_interval": f"{LONG_STEP // 3600}h",
        "group_eval_order": [g["name"] for g in R.recording_groups(m)],
        "tests": [
            {
                "name": "components, index and level over the methodology windows",
                "interval": f"{LONG_STEP // 3600}h",
                "input_series": _input(counters, n),
                "promql_expr_test": tests,
            }
        ],
    }


def recording_short(m: Methodology) -> dict[str, Any]:
    """The short windows (5m .. 6h), data-quality ratios and pipeline sums, per minute."""
    counters = scenario()
    short, burn, rejection = R.short_windows(m), R.burn_windows(m), R.rejection_windows(m)
    minutes = max(R.seconds(w) for w in (*short, *rejection)) // 60
    at = f"{minutes}m"
    tests = []
    for w in short:
        steps = R.seconds(w) // 60
        scopes = [R.AGENCY, R.REGION] if w in burn else []
        scopes += [R.SERVICE] if w in R.SERVICE_WINDOWS else []
        for scope in scopes:
            codes = ("completion",) if scope is R.SERVICE else None
            for part in ("numerator", "denominator"):
                tests.append(
                    _expr_test(
                        R.increase(scope, part, w),
                        at,
                        _component_samples(m, counters, steps, scope, part, codes),
                    )
                )
            tests.append(
                _expr_test(
                    R.ratio(scope, w),
                    at,
                    _component_samples(m, counters, steps, scope, "ratio", codes),
                )
            )
    quality = {"minsoc": (30, 10), "zags": (40, 0)}  # processed, rejected per minute
    series = _input(counters, minutes)
    for agency, (ok, bad) in quality.items():
        series.append(
            {
                "series": f"{PREFIX}events_processed_total"
                + labels_text({"agency": agency, **_API}),
                "values": f"0+{ok}x{minutes}",
            }
        )
        if bad:
            series.append(
                {
                    "series": f"{PREFIX}events_rejected_total"
                    + labels_text({"agency": agency, "reason": "unknown_service", **_API}),
                    "values": f"0+{bad}x{minutes}",
                }
            )
    for w in rejection:
        tests.append(
            _expr_test(
                R.rejection_ratio(w),
                at,
                [({"agency": a}, b / (ok + b)) for a, (ok, b) in quality.items() if b],
            )
        )
    proc = {"job": pipeline.JOB_PROCESSOR}
    series += [
        {
            "series": f"{PREFIX}applications_overdue"
            + labels_text({**_dims("minsoc", svc, "75701310", "mfc"), **_API}),
            "values": f"{n}x{minutes}",
        }
        for svc, n in (("housing_subsidy", 3), ("social_contract", 4))
    ]
    # Partition 1 is reported by two instances during a rebalance: counted once.
    for inst, part, lag, delay in (
        ("processor-1:9400", "0", 100, 30),
        ("processor-1:9400", "1", 250, 60),
        ("processor-2:9400", "1", 240, 65),
    ):
        lab = {**proc, "instance": inst, "partition": part}
        series.append(
            {"series": pipeline.PROCESSOR_LAG.name + labels_text(lab), "values": f"{lag}x{minutes}"}
        )
        series.append(
            {
                "series": pipeline.PROCESSOR_WATERMARK_DELAY.name + labels_text(lab),
                "values": f"{delay}x{minutes}",
            }
        )
    tests.append(_expr_test(R.OVERDUE_SUM, at, [({"agency": "minsoc"}, 7.0)]))
    tests.append(_expr_test(R.LAG_SUM, at, [({}, 350.0)]))
    tests.append(_expr_test(R.WATERMARK_DELAY_MAX, at, [({}, 60.0)]))
    return {
        "rule_files": [f"../rules/{R.RECORDING_FILE}"],
        "evaluation_interval": "1m",
        "group_eval_order": [g["name"] for g in R.recording_groups(m)],
        "tests": [
            {
                "name": "short windows, rejection ratios, overdue and processor sums",
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": tests,
            },
            {
                "name": "nothing is totalled while the API's read model catches up",
                "interval": "1m",
                "input_series": [_ready(60, 0), *_input(counters, 60)[1:]],
                "promql_expr_test": [
                    {"expr": R.total(scope, part), "eval_time": "30m", "exp_samples": []}
                    for scope in (R.AGENCY, R.SERVICE)
                    for part in ("numerator", "denominator")
                ],
            },
        ],
    }


# -- alert scenarios ---------------------------------------------------------------------


@dataclass
class AlertCase:
    """One alert scenario: input series, when to look, which alerts are expected."""

    name: str
    alert: str
    series: list[dict[str, str]]
    eval_time: str
    #: (labels without alertname, text that replaces ``{{ $value ... }}``)
    expected: list[tuple[dict[str, str], str]]
    #: earlier times at which nothing may be firing yet (``for`` not elapsed)
    quiet_at: list[str] = field(default_factory=list)


_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.(\w+)|value[^}]*)\s*\}\}")


def _expand(template: str, labels: Mapping[str, str], value_text: str) -> str:
    def sub(mo: re.Match[str]) -> str:
        return labels[mo.group(2)] if mo.group(2) else value_text

    return _TEMPLATE.sub(sub, template)


def _alert_rules(m: Methodology) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for g in R.alert_groups(m):
        for rule in g["rules"]:
            out.setdefault(rule["alert"], []).append(rule)
    return out


def _counter(family: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    return {"series": PREFIX + family + labels_text({**labels, **_API}), "values": values}


def alert_cases(m: Methodology) -> list[AlertCase]:
    """A firing and a quiet subject for every alert rule.

    The objective alerts (names, burn windows) come from the methodology; an objective on
    a component without a scenario here gets no case, which ``tests/dashboards/test_rules.py``
    reports as an alert without a unit test.
    """
    bad = _dims("minsoc", "housing_subsidy", "75701310", "mfc")
    good = _dims("zags", "zags_birth", "75701310", "office")
    office_bad = {"agency": "mfc", "municipality": "75701310", "channel": "mfc"}
    office_good = {"agency": "mfc", "municipality": "75701315", "channel": "mfc"}
    n = 480  # minutes of input
    objectives = {o.component: o for o in m.alerts.objectives}
    cases: list[AlertCase] = []
    if sat := objectives.get("satisfaction"):
        cases.append(
            AlertCase(
                "satisfaction 1 in 3 at minsoc, 9 in 10 at zags",
                sat.alert,
                [
                    _counter("feedback_total", {**bad, "score": "5"}, f"0+1x{n}"),
                    _counter("feedback_total", {**bad, "score": "1"}, f"0+2x{n}"),
                    _counter("feedback_total", {**good, "score": "5"}, f"0+9x{n}"),
                    _counter("feedback_total", {**good, "score": "2"}, f"0+1x{n}"),
                ],
                "3h",
                [
                    ({"agency": "minsoc", "component": "satisfaction", "window": b.long}, "66.67%")
                    for b in sat.burn
                ],
                quiet_at=["1m"],
            )
        )
    if wait := objectives.get("wait"):
        cases.append(
            AlertCase(
                "office wait: half within the standard in one office, all in another",
                wait.alert,
                [
                    _counter(
                        "office_visits_total", {**office_bad, "within_standard": "true"}, f"0+1x{n}"
                    ),
                    _counter(
                        "office_visits_total",
                        {**office_bad, "within_standard": "false"},
                        f"0+1x{n}",
                    ),
                    _counter(
                        "office_visits_total",
                        {**office_good, "agency": "minsoc", "within_standard": "true"},
                        f"0+5x{n}",
                    ),
                ],
                "3h",
                [
                    ({"agency": "mfc", "component": "wait", "window": b.long}, "50%")
                    for b in wait.burn
                ],
                quiet_at=["1m"],
            )
        )
    cases += [
        AlertCase(
            "overdue rising at minsoc, flat at zags",
            "ServicePulseOverdueApplicationsRising",
            [
                _counter("applications_overdue", bad, f"0+1x{n}"),
                _counter("applications_overdue", good, f"5x{n}"),
            ],
            "2h",
            [({"agency": "minsoc"}, "120")],
            quiet_at=["20m"],
        ),
        AlertCase(
            "housing_subsidy completion falls from 90% to 30%, zags_birth steady",
            "ServicePulseCompletionRateDropping",
            [
                _counter("journeys_submitted_total", bad, f"0+9x120 1083+3x{n - 121}"),
                _counter("journeys_abandoned_total", bad, f"0+1x120 127+7x{n - 121}"),
                _counter("journeys_submitted_total", good, f"0+9x{n}"),
                _counter("journeys_abandoned_total", good, f"0+1x{n}"),
            ],
            "190m",
            [
                (
                    {"agency": "minsoc", "service": "housing_subsidy", "component": "completion"},
                    "30%",
                )
            ],
            quiet_at=["2h"],
        ),
        AlertCase(
            "minsoc sets 3 deadlines past the calendar at 70 min; zags's 2 are old",
            "ServicePulseDeadlinesBeyondCalendar",
            [
                _counter("deadlines_beyond_calendar_total", bad, f"_x70 3x{n - 71}"),
                _counter("deadlines_beyond_calendar_total", good, f"2x{n}"),
            ],
            "90m",
            [({"agency": "minsoc"}, "3")],
            quiet_at=["65m"],
        ),
        AlertCase(
            "minsoc stops sending after an hour, zags keeps sending",
            "ServicePulseSourceSilent",
            [
                _counter("events_processed_total", {"agency": "minsoc"}, f"0+10x60 600x{n - 61}"),
                _counter("events_processed_total", {"agency": "zags"}, f"0+10x{n}"),
            ],
            "2h",
            [({"agency": "minsoc"}, "0")],
            quiet_at=["80m"],
        ),
        AlertCase(
            "a fifth of minsoc's events rejected, none of zags'",
            "ServicePulseSourceRejectionRateHigh",
            [
                _counter("events_processed_total", {"agency": "minsoc"}, f"0+80x{n}"),
                _counter(
                    "events_rejected_total",
                    {"agency": "minsoc", "reason": "unknown_service"},
                    f"0+20x{n}",
                ),
                _counter("events_processed_total", {"agency": "zags"}, f"0+80x{n}"),
                _counter(
                    "events_rejected_total",
                    {"agency": "zags", "reason": "unknown_service"},
                    f"0x{n}",
                ),
            ],
            "7h",
            [({"agency": "minsoc", "window": w}, "20%") for w in ("1h", "6h")],
            quiet_at=["1m"],
        ),
        AlertCase(
            "consumer lag of 12000 records across partitions",
            "ServicePulseProcessorLag",
            [
                {
                    "series": pipeline.PROCESSOR_LAG.name
                    + labels_text(
                        {"job": pipeline.JOB_PROCESSOR, "instance": inst, "partition": p}
                    ),
                    "values": f"6000x{n}",
                }
                for inst, p in (("p1:9400", "0"), ("p1:9400", "1"), ("p2:9400", "1"))
            ],
            "30m",
            [({}, "12000")],
            quiet_at=["5m"],
        ),
        AlertCase(
            "watermark 20 minutes behind",
            "ServicePulseWatermarkDelayed",
            [
                {
                    "series": pipeline.PROCESSOR_WATERMARK_DELAY.name
                    + labels_text(
                        {"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400", "partition": "0"}
                    ),
                    "values": f"1200x{n}",
                }
            ],
            "30m",
            [({}, "1200")],
            quiet_at=["5m"],
        ),
        AlertCase(
            "retention deleted 5 unprocessed events",
            "ServicePulseInputLostToRetention",
            [
                {
                    "series": pipeline.PROCESSOR_RETENTION_LOST.name
                    + labels_text({"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400"}),
                    "values": f"0x30 5x{n - 31}",
                }
            ],
            "35m",
            [({}, "5")],
            quiet_at=["20m"],
        ),
        AlertCase(
            "two events of soc set aside by the processor",
            "ServicePulseProcessingErrors",
            [
                {
                    "series": pipeline.PROCESSOR_PROCESSING_ERRORS.name
                    + labels_text(
                        {"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400", "agency": "soc"}
                    ),
                    "values": f"0x30 2x{n - 31}",
                },
                {
                    "series": pipeline.PROCESSOR_PROCESSING_ERRORS.name
                    + labels_text(
                        {"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400", "agency": "reg"}
                    ),
                    "values": f"0x{n}",
                },
            ],
            "35m",
            [({"agency": "soc"}, "2")],
            quiet_at=["20m"],
        ),
        AlertCase(
            "a processor that started nine new sessions within a minute",
            "ServicePulseProcessorRestarting",
            [
                {
                    "series": pipeline.PROCESSOR_SESSIONS.name
                    + labels_text({"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400"}),
                    "values": f"1x60 10x{n - 61}",
                },
                {
                    "series": pipeline.PROCESSOR_SESSIONS.name
                    + labels_text({"job": pipeline.JOB_PROCESSOR, "instance": "p2:9400"}),
                    "values": f"1x{n}",
                },
            ],
            "65m",
            [({"instance": "p1:9400"}, "")],
            quiet_at=["30m"],
        ),
        AlertCase(
            "the API target is down, a processor is up",
            "ServicePulseComponentDown",
            [
                {"series": "up" + labels_text(_API), "values": f"0x{n}"},
                {
                    "series": "up"
                    + labels_text({"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400"}),
                    "values": f"1x{n}",
                },
            ],
            "10m",
            [(dict(_API), "0")],
            quiet_at=["1m"],
        ),
        *_exposition_cases(n),
    ]
    return cases


def _exposition_cases(n: int) -> list[AlertCase]:
    """The pipeline's own alerts on /metrics, the read model and restores."""
    other = {"job": pipeline.JOB_API, "instance": "api2:8000"}
    proc = {"job": pipeline.JOB_PROCESSOR, "instance": "p1:9400"}
    calm = {"job": pipeline.JOB_PROCESSOR, "instance": "p2:9400"}

    def api_pair(metric: str, bad: str, good: str) -> list[dict[str, str]]:
        return [
            {"series": metric + labels_text(_API), "values": f"{bad}x{n}"},
            {"series": metric + labels_text(other), "values": f"{good}x{n}"},
        ]

    restore = pipeline.PROCESSOR_RESTORE.name
    return [
        AlertCase(
            "a scrape of the API takes 2 s",
            "ServicePulseScrapeSlow",
            api_pair("scrape_duration_seconds", "2", "0.01"),
            "30m",
            [(dict(_API), "2")],
            quiet_at=["5m"],
        ),
        AlertCase(
            "the API exposes 50000 samples",
            "ServicePulseScrapeLarge",
            api_pair("scrape_samples_scraped", "50000", "20000"),
            "30m",
            [(dict(_API), "50000")],
            quiet_at=["10m"],
        ),
        AlertCase(
            "the read model stays 500 records behind",
            "ServicePulseReadModelBehind",
            api_pair(pipeline.API_READMODEL_LAG.name, "500", "0"),
            "30m",
            [(dict(_API), "500")],
            quiet_at=["10m"],
        ),
        AlertCase(
            "business families withheld for 10 minutes",
            "ServicePulseBusinessMetricsWithheld",
            api_pair(pipeline.API_BUSINESS_WITHHELD.name, "1", "0"),
            "10m",
            [(dict(_API), "1")],
            quiet_at=["2m"],
        ),
        AlertCase(
            "35000 business series for a budget of 30000",
            "ServicePulseCardinalityOverBudget",
            [
                {
                    "series": pipeline.API_BUSINESS_SERIES.name
                    + labels_text({**labels, "family": fam}),
                    "values": f"{v}x{n}",
                }
                for labels, fam, v in (
                    (_API, "a", 20000),
                    (_API, "b", 15000),
                    (other, "a", 100),
                    (other, "b", 100),
                )
            ]
            + [
                {
                    "series": pipeline.API_BUSINESS_SERIES_BUDGET.name
                    + labels_text({**labels, "family": fam}),
                    "values": f"{v}x{n}",
                }
                for labels in (_API, other)
                for fam, v in (("a", 20000), ("b", 10000))
            ],
            "30m",
            [(dict(_API), "35000")],
            quiet_at=["10m"],
        ),
        AlertCase(
            "restores take 60 s on average, another instance 5 s",
            "ServicePulseRestoreSlow",
            [
                {"series": f"{restore}_count" + labels_text(proc), "values": f"100+0.1x{n}"},
                {"series": f"{restore}_sum" + labels_text(proc), "values": f"6000+6x{n}"},
                {"series": f"{restore}_count" + labels_text(calm), "values": f"100+0.1x{n}"},
                {"series": f"{restore}_sum" + labels_text(calm), "values": f"500+0.5x{n}"},
            ],
            "60m",
            [(proc, "60")],
        ),
    ]


def _expected_alerts(
    rules: list[dict[str, Any]], labels: dict[str, str], value_text: str
) -> dict[str, Any]:
    window = labels.get("window")
    rule = next(r for r in rules if window is None or r["labels"].get("window") == window)
    exp_labels = {**labels, **rule["labels"]}
    return {
        "exp_labels": exp_labels,
        "exp_annotations": {
            k: _expand(v, exp_labels, value_text) for k, v in rule["annotations"].items()
        },
    }


def alerts(m: Methodology) -> dict[str, Any]:
    """One test per alert rule: it fires for the bad subject only, after its ``for``."""
    rules = _alert_rules(m)
    tests = []
    for case in alert_cases(m):
        checks: list[dict[str, Any]] = [
            {"eval_time": t, "alertname": case.alert, "exp_alerts": []} for t in case.quiet_at
        ]
        checks.append(
            {
                "eval_time": case.eval_time,
                "alertname": case.alert,
                "exp_alerts": [
                    _expected_alerts(rules[case.alert], lab, text) for lab, text in case.expected
                ],
            }
        )
        tests.append(
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [_ready(480), *case.series],
                "alert_rule_test": checks,
            }
        )
    return {
        "rule_files": [f"../rules/{R.RECORDING_FILE}", f"../rules/{R.ALERTS_FILE}"],
        "evaluation_interval": "1m",
        # Recording groups first, so an alert sees this evaluation's recorded values.
        "group_eval_order": [g["name"] for g in R.recording_groups(m) + R.alert_groups(m)],
        "tests": tests,
    }


_HEADER = (
    "# GENERATED by `servicepulse dashboards build` (dashboards/ruletests.py): promtool unit\n"
    "# tests for the generated rules. Run: promtool test rules deploy/prometheus/tests/*.yml\n"
)


def render(m: Methodology) -> dict[str, str]:
    """File name -> text of every promtool test file."""
    docs = (recording_long(m), recording_short(m), alerts(m))
    return {name: _HEADER + R.dump(doc) for name, doc in zip(TEST_FILES, docs, strict=True)}


def covered(files: Mapping[str, str]) -> Iterator[str]:
    """Every record name and ``alertname/severity`` the test files check."""
    import yaml

    for text in files.values():
        doc = yaml.safe_load(text)
        for test in doc["tests"]:
            for t in test.get("promql_expr_test", []):
                if t["exp_samples"]:
                    yield from re.findall(r"[a-z_]+(?::[a-z_0-9]+)+", t["expr"])
            for t in test.get("alert_rule_test", []):
                for a in t["exp_alerts"]:
                    yield f"{t['alertname']}/{a['exp_labels']['severity']}"
