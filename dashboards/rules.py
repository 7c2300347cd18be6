"""Prometheus recording and alert rules, generated from the methodology.

One methodology file (``contract/data/methodology.yaml``: weights, level bounds, windows,
standards, alert objectives) defines the client-centricity index for the reports *and* for
Prometheus, so the live index and the report index cannot drift apart. This module turns
it into rule files (``deploy/prometheus/rules/*.yml``, committed; ``servicepulse dashboards
build`` regenerates them and ``servicepulse dashboards check`` fails when they are stale).

How the numbers are computed
----------------------------
1. ``<scope>:servicepulse_component_{numerator,denominator}:total`` (group
   ``servicepulse_totals``): the business counters summed per agency (and per service
   for completion), one series per component, recorded only while every API's read model
   is caught up (``servicepulse_api_readmodel_ready == 1``). Summing first and taking ``increase``
   second is safe here and *more* exact than the other way round: the API exposes exact
   cumulative totals rebuilt from Kafka that never go backwards (DESIGN.md section 1),
   and a label combination that appears for the first time with value N adds N to the
   sum, where ``increase`` of the raw series would miss those N events. It also keeps the
   30-day windows cheap: they read a few dozen recorded series instead of every
   (service, municipality, channel) combination. With several API replicas the identical
   read models are collapsed with ``max without (instance)``.
2. ``<scope>:servicepulse_component_{numerator,denominator}:increase<w>`` and
   ``<scope>:servicepulse_component:ratio<w>`` for the methodology windows (1d, 7d, 30d)
   and the short windows the burn-rate alerts need (5m .. 6h). A ratio exists only where
   its denominator is positive, so a component without data simply has no series.
3. ``<scope>:servicepulse_index:<w>`` = 100 * sum(w_i * ratio_i) / sum(w_i) over the
   components that have a ratio (weights renormalised, as ``contract.methodology.score``
   does), ``..._index_level:<w>`` (0 basic, 1 satisfactory, 2 advanced: the number of
   level bounds reached) and ``..._index_components:<w>`` (how many components counted).

Scopes: ``agency`` (label ``agency``), ``region`` (no label) and ``agency_service``
(completion only, for the completion-drop alert).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from contract.methodology import ComponentCode, Methodology, Standards
from contract.metrics import FAMILY_BY_NAME, PREFIX
from dashboards import pipeline
from dashboards.russian import duration_ru

#: Windows of the per-service completion ratio (completion-drop alert).
SERVICE_WINDOWS: Final = ("1h", "1d")

#: Values of the boolean-like labels, as the API exposes them.
TRUE: Final = "true"
FALSE: Final = "false"
ON_TIME: Final = "on_time"
LATE: Final = "late"

RECORDING_FILE: Final = "servicepulse-recording.yml"
ALERTS_FILE: Final = "servicepulse-alerts.yml"

#: Thresholds of the pipeline's own alerts about /metrics, the read model and restores
#: (docs/OBSERVABILITY.md). A scrape costs a few ms of CPU by design (docs/BENCHMARKS.md):
#: a second means trouble well before the scrape timeout; the samples limit is the demo
#: goal of 30,000 business series plus the API's own metrics.
SCRAPE_SLOW_SECONDS: Final = 1
SCRAPE_SAMPLES_MAX: Final = 40_000
WITHHELD_FOR: Final = "5m"
READMODEL_LAG_FOR: Final = "15m"
RESTORE_SLOW_SECONDS: Final = 30

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(window: str) -> int:
    """Seconds in a Prometheus duration of one unit (``5m``, ``1d``, ...)."""
    m = _DURATION.match(window)
    if not m:
        raise ValueError(f"unsupported duration {window!r} (use e.g. 5m, 6h, 1d)")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def _by_length(windows: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(windows), key=seconds))


def burn_windows(methodology: Methodology) -> tuple[str, ...]:
    """Windows of the component ratios the objective alerts read, shortest first."""
    objectives = methodology.alerts.objectives
    return _by_length(w for o in objectives for b in o.burn for w in (b.long, b.short))


def short_windows(methodology: Methodology) -> tuple[str, ...]:
    """Windows recorded besides the methodology's: those the alerts read, shortest first.

    They follow the alert objectives, so a burn window changed in the methodology file is
    recorded (an alert on a ratio nobody records would never fire).
    """
    needed = (*burn_windows(methodology), *SERVICE_WINDOWS)
    return _by_length(w for w in needed if w not in methodology.windows)


def rejection_windows(methodology: Methodology) -> tuple[str, ...]:
    """Windows of the events rejection ratio (the valid-events burn rates), shortest first."""
    burn = methodology.alerts.valid_events.burn
    return _by_length(w for b in burn for w in (b.long, b.short))


# -- scopes and components -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleScope:
    """A level of aggregation: the rule-name prefix and the labels kept."""

    name: str
    by: tuple[str, ...]


AGENCY: Final = RuleScope("agency", ("agency",))
SERVICE: Final = RuleScope("agency_service", ("agency", "service"))
REGION: Final = RuleScope("region", ())


@dataclass(frozen=True, slots=True)
class Term:
    """One business counter (optionally filtered) summed in a component part."""

    family: str
    matchers: str = ""
    negative: bool = False

    def selector(self) -> str:
        """The PromQL selector of the counter."""
        if self.family not in FAMILY_BY_NAME:
            raise ValueError(f"unknown metric family {self.family!r}")
        return PREFIX + self.family + (f"{{{self.matchers}}}" if self.matchers else "")


@dataclass(frozen=True, slots=True)
class Parts:
    """Numerator and denominator of a component as sums of counters."""

    numerator: tuple[Term, ...]
    denominator: tuple[Term, ...]


def component_parts(code: ComponentCode, standards: Standards) -> Parts:
    """The counters behind one index component (mirrors ``contract.methodology.fractions``)."""
    good = "|".join(str(s) for s in range(standards.csat_good_min_score, 6))
    timely = f'timeliness=~"{ON_TIME}|{LATE}"'
    table: dict[str, Parts] = {
        "completion": Parts(
            (Term("journeys_submitted_total"),),
            (Term("journeys_submitted_total"), Term("journeys_abandoned_total")),
        ),
        "on_time": Parts(
            (Term("decisions_total", f'timeliness="{ON_TIME}"'),),
            (Term("decisions_total", timely),),
        ),
        "satisfaction": Parts(
            (Term("feedback_total", f'score=~"{good}"'),), (Term("feedback_total"),)
        ),
        "wait": Parts(
            (Term("office_visits_total", f'within_standard="{TRUE}"'),),
            (Term("office_visits_total", f'within_standard=~"{TRUE}|{FALSE}"'),),
        ),
        "digital": Parts(
            (Term("journeys_started_digital_total"),), (Term("journeys_started_total"),)
        ),
        "appeals": Parts(
            (Term("appeals_answered_total", f'timeliness="{ON_TIME}"'),),
            (Term("appeals_answered_total", timely),),
        ),
        "interagency": Parts(
            (Term("interagency_responses_total", f'within_48h="{TRUE}"'),),
            (Term("interagency_responses_total", f'within_48h=~"{TRUE}|{FALSE}"'),),
        ),
        "error_free": Parts(
            (
                Term("journeys_resolved_total"),
                Term("journeys_resolved_with_errors_total", negative=True),
            ),
            (Term("journeys_resolved_total"),),
        ),
    }
    return table[code]


def _sum(term: Term, scope: RuleScope) -> str:
    family = FAMILY_BY_NAME[term.family]
    missing = [label for label in scope.by if label not in family.labels]
    if missing:
        raise ValueError(f"{family.full} has no label {missing[0]!r} for scope {scope.name!r}")
    by = ", ".join(scope.by)
    return f"sum by ({by}) (max without (instance) ({term.selector()}))"


def _combine(terms: tuple[Term, ...], scope: RuleScope) -> str:
    """Sum or difference of per-scope sums that tolerates a missing series on one side."""
    pos = [_sum(t, scope) for t in terms if not t.negative]
    neg = [_sum(t, scope) for t in terms if t.negative]
    if len(pos) == 1 and not neg:
        return pos[0]
    if len(pos) == 2 and not neg:
        a, b = pos
        return f"({a} + {b})\nor\n{a}\nor\n{b}"
    if len(pos) == 1 and len(neg) == 1:
        a, b = pos[0], neg[0]
        return f"{a}\n-\n({b} or {a} * 0)"
    raise ValueError("a component part is one or two counters (or a difference of two)")


# -- rule generation ---------------------------------------------------------------------


def _rule(record: str, expr: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": record, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def _group(name: str, rules: list[dict[str, Any]], interval: str | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"name": name}
    if interval:
        group["interval"] = interval
    group["rules"] = rules
    return group


def weight_metric() -> str:
    """The recorded weight of each component (label ``component``)."""
    return "servicepulse:methodology_weight"


def total(scope: RuleScope, part: str) -> str:
    """``<scope>:servicepulse_component_<part>:total`` (part: numerator/denominator)."""
    return f"{scope.name}:servicepulse_component_{part}:total"


def increase(scope: RuleScope, part: str, window: str) -> str:
    """``<scope>:servicepulse_component_<part>:increase<window>``."""
    return f"{scope.name}:servicepulse_component_{part}:increase{window}"


def ratio(scope: RuleScope, window: str) -> str:
    """``<scope>:servicepulse_component:ratio<window>`` (value 0..1)."""
    return f"{scope.name}:servicepulse_component:ratio{window}"


def index(scope: RuleScope, window: str) -> str:
    """``<scope>:servicepulse_index:<window>`` (value 0..100)."""
    return f"{scope.name}:servicepulse_index:{window}"


def level(scope: RuleScope, window: str) -> str:
    """``<scope>:servicepulse_index_level:<window>`` (0 basic .. 2 advanced)."""
    return f"{scope.name}:servicepulse_index_level:{window}"


def counted(scope: RuleScope, window: str) -> str:
    """``<scope>:servicepulse_index_components:<window>`` (components with data)."""
    return f"{scope.name}:servicepulse_index_components:{window}"


def rejection_ratio(window: str) -> str:
    """``agency:servicepulse_events_rejected:ratio_rate<window>``."""
    return f"agency:servicepulse_events_rejected:ratio_rate{window}"


OVERDUE_SUM: Final = "agency:servicepulse_applications_overdue:sum"
#: Appended to the totals: nothing is recorded while an API's read model is catching up
#: (after a restart it rebuilds from Kafka or an older snapshot, so its totals pass through
#: lower values; recording those would look like a counter reset, and ``increase`` would
#: count the catch-up as new events). A gap is harmless: ``increase`` spans it.
READY_GATE: Final = f"\nand on ()\n(min({pipeline.API_READMODEL_READY.name}) == 1)"
LAG_SUM: Final = "servicepulse:processor_consumer_lag:sum"
#: A processor that starts this many new sessions within the window is restarting
#: repeatedly (the first session of a process is not an increase).
RESTARTS: Final = 3
RESTART_WINDOW: Final = "10m"
WATERMARK_DELAY_MAX: Final = "servicepulse:processor_watermark_delay_seconds:max"


def level_names(methodology: Methodology) -> list[str]:
    """Level names ordered by bound: index ``i`` is the value of the level rule."""
    return [name for name, _ in sorted(methodology.levels.items(), key=lambda kv: kv[1])]


def _window_rules(
    methodology: Methodology, window: str, scopes: Iterable[RuleScope], with_index: bool
) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for scope in scopes:
        for part in ("numerator", "denominator"):
            if scope is REGION:
                expr = f"sum without (agency) ({increase(AGENCY, part, window)})"
            else:
                expr = f"increase({total(scope, part)}[{window}])"
            rules.append(_rule(increase(scope, part, window), expr))
        rules.append(
            _rule(
                ratio(scope, window),
                f"clamp_max(\n  {increase(scope, 'numerator', window)}\n/\n"
                f"  ({increase(scope, 'denominator', window)} > 0),\n  1\n)",
            )
        )
        if not with_index:
            continue
        # The weights are literals rather than a join with the recorded weight series:
        # a join across rule groups would depend on their evaluation order.
        weighted = "\nor\n".join(
            f'  {ratio(scope, window)}{{component="{c.code}"}} * {c.weight:g}'
            for c in methodology.components
        )
        present = "\nor\n".join(
            f'  ({ratio(scope, window)}{{component="{c.code}"}} >= bool 0) * {c.weight:g}'
            for c in methodology.components
        )
        rules.append(
            _rule(
                index(scope, window),
                f"100 * sum without (component) (\n{weighted}\n)\n/\n"
                f"(sum without (component) (\n{present}\n) > 0)",
            )
        )
        bounds = sorted(v for v in methodology.levels.values())[1:]
        rules.append(
            _rule(
                level(scope, window),
                "\n+ ".join(f"({index(scope, window)} >= bool {b:g})" for b in bounds),
            )
        )
        weighted_codes = "|".join(c.code for c in methodology.components if c.weight > 0)
        rules.append(
            _rule(
                counted(scope, window),
                f"count without (component) (\n  "
                f'{ratio(scope, window)}{{component=~"{weighted_codes}"}}\n)',
            )
        )
    return rules


def recording_groups(
    methodology: Methodology, *, slow_interval: str | None = "5m"
) -> list[dict[str, Any]]:
    """Every recording-rule group, in evaluation order.

    ``slow_interval`` is the evaluation interval of the groups whose window is longer
    than a day (their 7-day and 30-day ranges are the expensive ones); ``None`` evaluates
    them at the global interval (tests do that to get values within seconds).
    """
    standards = methodology.standards
    weights = [
        _rule(weight_metric(), f"vector({c.weight:g})", {"component": c.code})
        for c in methodology.components
    ]
    totals: list[dict[str, Any]] = []
    for c in methodology.components:
        scopes = [AGENCY, SERVICE] if c.code == "completion" else [AGENCY]
        parts = component_parts(c.code, standards)
        for scope in scopes:
            den = _combine(parts.denominator, scope)
            num = _combine(parts.numerator, scope)
            totals.append(
                _rule(
                    total(scope, "numerator"),
                    f"(\n({num})\nor\n({den}) * 0\n){READY_GATE}",
                    {"component": c.code},
                )
            )
            totals.append(
                _rule(
                    total(scope, "denominator"), f"(\n{den}\n){READY_GATE}", {"component": c.code}
                )
            )
    totals.append(
        _rule(
            OVERDUE_SUM,
            f"sum by (agency) (max without (instance) ({PREFIX}applications_overdue))",
        )
    )
    totals.append(
        _rule(LAG_SUM, f"sum(max by (partition) ({pipeline.PROCESSOR_LAG.name}))"),
    )
    totals.append(
        _rule(
            WATERMARK_DELAY_MAX,
            f"max(min by (partition) ({pipeline.PROCESSOR_WATERMARK_DELAY.name}))",
        )
    )

    short: list[dict[str, Any]] = []
    burn = burn_windows(methodology)
    for w in short_windows(methodology):
        if w in burn:
            short += _window_rules(methodology, w, (AGENCY, REGION), with_index=False)
        if w in SERVICE_WINDOWS:
            short += _window_rules(methodology, w, (SERVICE,), with_index=False)

    groups = [
        _group("servicepulse_methodology", weights),
        _group("servicepulse_totals", totals),
        _group("servicepulse_short_windows", short),
    ]
    for w in methodology.windows:
        rules = _window_rules(methodology, w, (AGENCY, REGION), with_index=True)
        if w in SERVICE_WINDOWS:
            rules += _window_rules(methodology, w, (SERVICE,), with_index=False)
        slow = seconds(w) > 86400
        groups.append(_group(f"servicepulse_window_{w}", rules, slow_interval if slow else None))

    rejected = f"{PREFIX}events_rejected_total"
    processed = f"{PREFIX}events_processed_total"
    quality = []
    for w in rejection_windows(methodology):
        r = f"sum by (agency) (rate({rejected}[{w}]))"
        p = f"sum by (agency) (rate({processed}[{w}]))"
        quality.append(
            _rule(rejection_ratio(w), f"{r}\n/\n((({r} + {p}) or {r}) > 0)"),
        )
    groups.append(_group("servicepulse_data_quality", quality))
    return groups


def _alert(
    name: str,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    *,
    labels: Mapping[str, str] | None = None,
    dashboard: str = "",
) -> dict[str, Any]:
    annotations = {"summary": summary, "description": description}
    if dashboard:
        annotations["dashboard"] = dashboard
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **(labels or {})}
    rule["annotations"] = annotations
    return rule


def alert_groups(methodology: Methodology) -> list[dict[str, Any]]:
    """The alert-rule groups: service quality, data sources, pipeline.

    Objectives and thresholds come from the methodology's ``alerts`` section.
    """
    policy = methodology.alerts
    small = methodology.standards.small_cell
    agency_link = "/d/sp-agency?var-agency={{ $labels.agency }}"
    quality: list[dict[str, Any]] = []
    for obj in policy.objectives:
        budget = 1.0 - obj.target
        for b in obj.burn:
            threshold = b.factor * budget
            sel = f'{{component="{obj.component}"}}'
            expr = (
                f"(1 - {ratio(AGENCY, b.long)}{sel}) > {threshold:g}\n"
                f"and\n(1 - {ratio(AGENCY, b.short)}{sel}) > {threshold:g}\n"
                f"and\n{increase(AGENCY, 'denominator', b.long)}{sel} >= {small}"
            )
            quality.append(
                _alert(
                    obj.alert,
                    expr,
                    b.for_,
                    b.severity,
                    f"{{{{ $labels.agency }}}}: {obj.what} ниже норматива",
                    f"За {duration_ru(b.long)} и за {duration_ru(b.short)} доля нарушений "
                    f"{{{{ $value | humanizePercentage }}}} при цели {obj.target:.0%}; "
                    f"скорость расхода бюджета ошибок: ×{b.factor:g} от допустимой.",
                    labels={"window": b.long},
                    dashboard=agency_link,
                )
            )
    overdue = policy.overdue_rising
    quality.append(
        _alert(
            "ServicePulseOverdueApplicationsRising",
            f"{OVERDUE_SUM} > 0\nand\ndelta({OVERDUE_SUM}[{overdue.window}]) > 0",
            overdue.for_,
            "warning",
            "{{ $labels.agency }}: растёт число просроченных заявлений",
            "Просроченных заявлений сейчас: {{ $value }}; их число растёт дольше "
            f"{duration_ru(overdue.for_)}.",
            dashboard=agency_link,
        )
    )
    drop = policy.completion_drop
    svc_ratio = ratio(SERVICE, "1h")
    quality.append(
        _alert(
            "ServicePulseCompletionRateDropping",
            f'{svc_ratio}{{component="completion"}}\n<\n'
            f'{ratio(SERVICE, "1d")}{{component="completion"}} - {drop.points:g}\n'
            f'and\n{increase(SERVICE, "denominator", "1h")}{{component="completion"}}'
            f" >= {drop.min_resolved}",
            drop.for_,
            "warning",
            "{{ $labels.service }}: падает доля завершённых заявлений",
            f"Доля завершённых заявлений за час ({{{{ $value | humanizePercentage }}}}) "
            f"ниже дневной более чем на {drop.points * 100:g} п.п.",
            dashboard="/d/sp-service?var-agency={{ $labels.agency }}"
            "&var-service={{ $labels.service }}",
        )
    )

    series = f"{PREFIX}deadlines_beyond_calendar_total"
    beyond = f"sum by (agency) (max without (instance) ({series}))"
    before = f"sum by (agency) (max without (instance) ({series} offset 1h))"
    quality.append(
        _alert(
            "ServicePulseDeadlinesBeyondCalendar",
            # summed first, so a series that appears for the first time counts too
            f"({beyond} - {before}) > 0\nor\n({beyond} > 0 unless {before})",
            "",
            "warning",
            "{{ $labels.agency }}: сроки за пределами производственного календаря",
            "Сроков после последнего дня производственного календаря за 1\u00a0ч: "
            "{{ $value }}. Рабочие дни для них приняты как пн–пт; дополните календарь в "
            "каталоге (границу называет servicepulse catalog check).",
            dashboard=agency_link,
        )
    )

    processed = f"{PREFIX}events_processed_total"
    silent = policy.source_silent
    sources: list[dict[str, Any]] = [
        _alert(
            "ServicePulseSourceSilent",
            f"sum by (agency) (increase({processed}[{silent.after}])) == 0\n"
            f"and on (agency)\nsum by (agency) (increase({processed}[1d])) > 0",
            silent.for_,
            "warning",
            "{{ $labels.agency }}: источник замолчал",
            f"За последние {duration_ru(silent.after)} от ведомства не пришло ни одного события, "
            "хотя за сутки события были.",
            dashboard="/d/sp-quality?var-agency={{ $labels.agency }}",
        )
    ]
    valid = policy.valid_events
    budget = 1.0 - valid.target
    for b in valid.burn:
        threshold = b.factor * budget
        sources.append(
            _alert(
                "ServicePulseSourceRejectionRateHigh",
                f"{rejection_ratio(b.long)} > {threshold:g}\n"
                f"and\n{rejection_ratio(b.short)} > {threshold:g}",
                b.for_,
                b.severity,
                "{{ $labels.agency }}: растёт доля отклонённых событий",
                f"За {duration_ru(b.long)} и за {duration_ru(b.short)} отклонено "
                "{{ $value | humanizePercentage }} "
                f"событий при допустимых {budget:.0%}.",
                labels={"window": b.long},
                dashboard="/d/sp-quality?var-agency={{ $labels.agency }}",
            )
        )

    lag, delay, down = policy.processor_lag, policy.watermark_delay, policy.component_down
    pipeline_alerts = [
        _alert(
            "ServicePulseProcessorLag",
            f"{LAG_SUM} > {lag.records}",
            lag.for_,
            "warning",
            "Обработчик отстаёт от потока событий",
            "Необработанных событий в Kafka: {{ $value }}; отставание держится "
            f"дольше {duration_ru(lag.for_)}.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseWatermarkDelayed",
            f"{WATERMARK_DELAY_MAX} > {delay.seconds}",
            delay.for_,
            "warning",
            "Учёт по времени событий отстаёт",
            "Самый медленный раздел учёл события лишь до момента, отстающего на "
            '{{ $value | printf "%.0f" }} с: просрочки и брошенные заявления '
            "определяются с задержкой.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseInputLostToRetention",
            f"sum(increase({pipeline.PROCESSOR_RETENTION_LOST.name}[15m])) > 0",
            "",
            "critical",
            "Kafka удалил необработанные события",
            "За 15\u00a0мин удалено до обработки событий: {{ $value }}. В показатели они не "
            "попадут; увеличьте срок хранения топика событий (retention.ms) или устраните "
            "отставание "
            "обработчика (журнал обработчика называет разделы и смещения).",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseProcessingErrors",
            f"sum by (agency) (increase({pipeline.PROCESSOR_PROCESSING_ERRORS.name}[15m])) > 0",
            "",
            "warning",
            "{{ $labels.agency }}: обработчик отложил события, на которых упал",
            "За 15\u00a0мин отложено в топик отклонённых событий (processing_error): {{ $value }}. "
            "Остальные события посчитаны; класс исключения указан в записи и в журнале "
            "обработчика.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseProcessorRestarting",
            f"sum by (instance) (increase({pipeline.PROCESSOR_SESSIONS.name}"
            f"[{RESTART_WINDOW}])) >= {RESTARTS}",
            "",
            "critical",
            "Обработчик {{ $labels.instance }} перезапускает сессию Kafka",
            f"Не меньше {RESTARTS} новых сессий за {duration_ru(RESTART_WINDOW)}. Сессия "
            "перезапускается только при сбоях инфраструктуры (Kafka, транзакции); журнал "
            "обработчика называет причину.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseComponentDown",
            f'up{{job=~"{pipeline.JOB_API}|{pipeline.JOB_PROCESSOR}"}} == 0',
            down.for_,
            "critical",
            "{{ $labels.job }} ({{ $labels.instance }}) недоступен",
            f"Prometheus не может получить метрики компонента дольше {duration_ru(down.for_)}.",
            dashboard="/d/sp-pipeline",
        ),
        *_exposition_alerts(),
    ]
    return [
        _group("servicepulse_quality_alerts", quality),
        _group("servicepulse_source_alerts", sources),
        _group("servicepulse_pipeline_alerts", pipeline_alerts),
    ]


def _exposition_alerts() -> list[dict[str, Any]]:
    """Alerts on the pipeline's own numbers: scrape cost, catch-up, cardinality, restore."""
    api = f'{{job="{pipeline.JOB_API}"}}'
    series = pipeline.API_BUSINESS_SERIES.name
    budget = pipeline.API_BUSINESS_SERIES_BUDGET.name
    restore = pipeline.PROCESSOR_RESTORE.name
    return [
        _alert(
            "ServicePulseScrapeSlow",
            f"scrape_duration_seconds{api} > {SCRAPE_SLOW_SECONDS}",
            "10m",
            "warning",
            "{{ $labels.instance }}: /metrics отвечает медленно",
            "Сбор метрик API длится {{ $value }} с (норма — миллисекунды): проверьте "
            "загрузку процессора и число рядов.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseScrapeLarge",
            f"scrape_samples_scraped{api} > {SCRAPE_SAMPLES_MAX}",
            "15m",
            "warning",
            "{{ $labels.instance }}: /metrics слишком велик",
            f"API отдаёт {{{{ $value }}}} рядов при пределе {SCRAPE_SAMPLES_MAX}.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseReadModelBehind",
            f"{pipeline.API_READMODEL_LAG.name} > 0",
            READMODEL_LAG_FOR,
            "warning",
            "{{ $labels.instance }}: модель чтения API не догнала Kafka",
            "До концов топиков, увиденных при старте, осталось {{ $value }} записей "
            f"дольше {duration_ru(READMODEL_LAG_FOR)}.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseBusinessMetricsWithheld",
            f"{pipeline.API_BUSINESS_WITHHELD.name} == 1",
            WITHHELD_FOR,
            "critical",
            "{{ $labels.instance }}: бизнес-метрики не публикуются",
            "Модель чтения API ещё догоняет Kafka, поэтому /metrics не отдаёт бизнес-"
            "показатели (частичные суммы дали бы ложный скачок) дольше "
            f"{duration_ru(WITHHELD_FOR)}.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseCardinalityOverBudget",
            f"sum by (job, instance) ({series})\n>\nsum by (job, instance) ({budget})",
            "15m",
            "warning",
            "{{ $labels.instance }}: рядов больше бюджета",
            "API отдаёт {{ $value }} бизнес-рядов, больше бюджета каталога "
            "(docs/METRICS.md): метка получила значения вне каталога.",
            dashboard="/d/sp-pipeline",
        ),
        _alert(
            "ServicePulseRestoreSlow",
            f"max by (job, instance) (\n  increase({restore}_sum[30m])\n  /\n"
            f"  increase({restore}_count[30m])\n) > {RESTORE_SLOW_SECONDS}",
            "",
            "warning",
            "{{ $labels.instance }}: восстановление состояния медленное",
            "Восстановление разделов после назначения длилось в среднем {{ $value | humanize }} с "
            f"за 30\u00a0мин (цель — не больше {RESTORE_SLOW_SECONDS} с).",
            dashboard="/d/sp-pipeline",
        ),
    ]


# -- files -------------------------------------------------------------------------------

_HEADER = (
    "# GENERATED by `servicepulse dashboards build` from the methodology file\n"
    "# (contract/data/methodology.yaml) by dashboards/rules.py. Do not edit by hand.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line PromQL, so the files read like hand-written ones."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump(doc: object) -> str:
    """YAML text of a rules document (stable: same input, same bytes)."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def render(methodology: Methodology, *, slow_interval: str | None = "5m") -> dict[str, str]:
    """File name -> text of every rule file."""
    return {
        RECORDING_FILE: _HEADER
        + dump({"groups": recording_groups(methodology, slow_interval=slow_interval)}),
        ALERTS_FILE: _HEADER + dump({"groups": alert_groups(methodology)}),
    }
