"""Grafana dashboards as code (grafana-foundation-sdk), in Russian, for inspectors.

Eight dashboards, all tagged ``servicepulse`` and linked to each other (the dashboard
links keep the time range and the variables, and tables link from a region to an agency
to a service):

``sp-overview``   regional overview: index, level, trend, components, best and worst
                  agencies, live event rate, active alerts
``sp-agency``     agency scorecard
``sp-service``    service funnel and timing
``sp-life``       life situations
``sp-offices``    MFC offices and queues
``sp-feedback``   feedback and appeals
``sp-quality``    data quality per source
``sp-pipeline``   pipeline health

Queries use the recording rules of :mod:`dashboards.rules` for the index and its
components (one definition with the reports), and the raw business families of
``contract.metrics`` for everything else. Only labels a family has are filtered on, so
no query silently matches nothing. The generated JSON is committed in
``dashboards/generated/`` and provisioned into Grafana from there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from contract.methodology import Methodology
from contract.metrics import FAMILY_BY_NAME, NAMED_LABELS, PREFIX, info_keys
from dashboards import pipeline
from dashboards import rules as R

TAG: Final = "servicepulse"
DATASOURCE_UID: Final = "servicepulse-prometheus"
DS: Final = DataSourceRef(type_val="prometheus", uid="${datasource}")

#: Variables of the business dashboards and the label each one filters. Municipality is
#: not among them: only office visits carry it in Prometheus (the MFC dashboard has it);
#: per-municipality journeys are in the API's scorecards and reports (docs/METRICS.md).
VARIABLES: Final = ("agency", "service", "channel")

LEVEL_RU: Final = {
    "basic": "базовый",
    "satisfactory": "удовлетворительный",
    "advanced": "продвинутый",
}

UIDS: Final = {
    "overview": "sp-overview",
    "agency": "sp-agency",
    "service": "sp-service",
    "life": "sp-life",
    "offices": "sp-offices",
    "feedback": "sp-feedback",
    "quality": "sp-quality",
    "pipeline": "sp-pipeline",
}


@dataclass(frozen=True, slots=True)
class Filters:
    """Query helpers that filter by the variables a dashboard has.

    A selector is filtered only by the variables whose label its family carries, so no
    query references a variable the dashboard lacks or a label the family lacks.
    """

    variables: tuple[str, ...] = VARIABLES

    def sel(self, family: str, extra: str = "") -> str:
        """Selector of ``servicepulse_<family>`` (histogram suffixes allowed)."""
        base = family
        for suffix in ("_bucket", "_count", "_sum"):
            if family.endswith(suffix) and family.removesuffix(suffix) in FAMILY_BY_NAME:
                base = family.removesuffix(suffix)
        labels = FAMILY_BY_NAME[base].labels
        matchers = [f'{v}=~"${v}"' for v in self.variables if v in labels]
        if extra:
            matchers.append(extra)
        return f"{PREFIX}{family}{{{', '.join(matchers)}}}"

    def inc(self, family: str, extra: str = "", by: str = "", window: str = "$__range") -> str:
        """``sum [by (...)] (increase(<family>{filters}[window]))``."""
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping} (increase({self.sel(family, extra)}[{window}]))"

    def rate(self, family: str, extra: str = "", by: str = "") -> str:
        """``sum [by (...)] (rate(<family>{filters}[$__rate_interval]))``."""
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping} (rate({self.sel(family, extra)}[$__rate_interval]))"

    def quantile(
        self, q: float, family: str, by: str = "", window: str = "$__rate_interval"
    ) -> str:
        """``histogram_quantile`` over a business histogram."""
        grouping = f"le, {by}" if by else "le"
        return (
            f"histogram_quantile({q:g}, sum by ({grouping}) "
            f"(rate({self.sel(family + '_bucket')}[{window}])))"
        )


#: Labels holding codes, each with an info series of its Russian names
#: (``servicepulse_catalog_<label>_info{<keys>, <label>_name}``, contract.names; the
#: pseudo-values such as ``unknown`` included): dashboards show ``<label>_name``, never
#: the code. The catalog's codes, the channels and the reasons of rejected and late events.
CODE_LABELS: Final = NAMED_LABELS


def _named(*labels: str) -> str:
    """Join the Russian name of each of ``labels`` (``<label>_name``) onto a vector:
    ``expr + _named("agency")``. The join is on the label's keys (a step's name on its
    service and step, so the vector must carry the service too). Every code the series
    can carry has a name (the exposition names its pseudo-values too), so the join drops
    no series."""
    out = []
    for label in labels:
        info = f"{PREFIX}catalog_{label}_info"
        keys = ", ".join(info_keys(label))
        out.append(
            f"\n* on ({keys}) group_left ({label}_name) max by ({keys}, {label}_name) ({info})"
        )
    return "".join(out)


def named(expr: str, *labels: str) -> str:
    """``expr`` with the Russian names of ``labels`` joined (see :func:`_named`)."""
    return f"{expr}{_named(*labels)}"


def share(num: str, den: str) -> str:
    """``num / (den > 0)``: a share that is absent, not NaN, without data."""
    return f"{num}\n/\n({den} > 0)"


# -- panels ------------------------------------------------------------------------------


@dataclass
class Query:
    """One panel query."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _target(q: Query, ref: str) -> prom.Dataquery:
    t = prom.Dataquery().expr(q.expr).ref_id(ref).datasource(DS)
    if q.legend:
        t = t.legend_format(q.legend)
    if q.table:
        t = t.format(PromQueryFormat.TABLE).instant()
    elif q.instant:
        t = t.instant()
    return t


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def _link(title: str, uid: str, params: str = "") -> dash.DashboardLink:
    url = f"/d/{uid}?${{__url_time_range}}" + (f"&{params}" if params else "")
    return dash.DashboardLink(title).url(url)


@dataclass
class Spec:
    """What every panel has: a title, a description, a unit, queries, a size."""

    title: str
    description: str
    unit: str
    queries: list[Query]
    width: int = 12
    height: int = 8
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    thresholds: Sequence[tuple[float | None, str]] = ()
    mappings: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    links: list[dash.DashboardLink] = field(default_factory=list)


def _common(builder: Any, spec: Spec) -> Any:
    b = (
        builder.title(spec.title)
        .description(spec.description)
        .datasource(DS)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
        .targets([_target(q, chr(ord("A") + i)) for i, q in enumerate(spec.queries)])
    )
    if spec.decimals is not None:
        b = b.decimals(spec.decimals)
    if spec.min is not None:
        b = b.min(spec.min)
    if spec.max is not None:
        b = b.max(spec.max)
    if spec.thresholds:
        b = b.thresholds(_thresholds(spec.thresholds))
    if spec.mappings:
        b = b.mappings(
            [ValueMap(options={k: ValueMappingResult(text=v) for k, v in spec.mappings.items()})]
        )
    for name, display in spec.names.items():
        b = b.override_by_name(name, [DynamicConfigValue(id_val="displayName", value=display)])
    if spec.links:
        b = b.data_links(spec.links)
    return b


def _reduce() -> common_b.ReduceDataOptions:
    return common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def stat_panel(spec: Spec) -> stat.Panel:
    """A big number (last value)."""
    panel: stat.Panel = _common(stat.Panel(), spec)
    return (
        panel.reduce_options(_reduce())
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
    )


def series_panel(spec: Spec) -> timeseries.Panel:
    """A time series with a table legend."""
    panel: timeseries.Panel = _common(timeseries.Panel(), spec)
    return (
        panel.line_width(1)
        .fill_opacity(10)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )


def bars_panel(spec: Spec) -> bargauge.Panel:
    """Horizontal bars, one per series (last value)."""
    panel: bargauge.Panel = _common(bargauge.Panel(), spec)
    return (
        panel.reduce_options(_reduce())
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
    )


def count_bars(
    title: str, description: str, expr: str, *labels: str, width: int = 8
) -> bargauge.Panel:
    """Bars of whole counts over the period, one per value of ``labels``, each named.

    ``expr`` sums by ``labels``; the legend joins their Russian names with ": ".
    """
    legend = ": ".join(f"{{{{{label}_name}}}}" for label in labels)
    query = Query(named(expr, *labels), legend, instant=True)
    return bars_panel(Spec(title, description, "short", [query], width=width, decimals=0))


#: Column titles of the name labels a table shows.
_NAME_COLUMNS: Final = {
    "agency_name": "Ведомство",
    "service_name": "Услуга",
    "municipality_name": "Муниципалитет",
    "office_name": "Офис",
    "life_situation_name": "Жизненная ситуация",
    "step_name": "Шаг формы",
    "code_name": "Ошибка",
    "channel_name": "Канал",
    "reason_name": "Причина",
}


def table_panel(spec: Spec) -> table.Panel:
    """A table of instant results: the queries merged into one table, the code columns
    hidden (kept for links) and the catalog's names shown under Russian titles."""
    panel: table.Panel = _common(table.Panel(), spec)
    if len(spec.queries) > 1:
        panel = panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    hidden = [DynamicConfigValue(id_val="custom.hidden", value=True)]
    for label in ("Time", *CODE_LABELS):
        panel = panel.override_by_name(label, hidden)
    for label, title in _NAME_COLUMNS.items():
        panel = panel.override_by_name(
            label, [DynamicConfigValue(id_val="displayName", value=title)]
        )
    return panel


def count_stat(title: str, description: str, expr: str, *, width: int, height: int) -> stat.Panel:
    """A whole number now or over the period: one instant query, no decimals."""
    spec = Spec(title, description, "short", [Query(expr, instant=True)], width, height, decimals=0)
    return stat_panel(spec)


def share_stat(
    title: str,
    description: str,
    expr: str,
    *,
    width: int,
    height: int,
    thresholds: Sequence[tuple[float | None, str]] = (),
) -> stat.Panel:
    """A share (0..1, shown in percent with one decimal): one instant query."""
    spec = Spec(
        title,
        description,
        "percentunit",
        [Query(expr, instant=True)],
        width,
        height,
        decimals=1,
        thresholds=thresholds,
    )
    return stat_panel(spec)


# -- variables and the dashboard frame ---------------------------------------------------

_VAR_RU: Final = {
    "agency": "Ведомство",
    "service": "Услуга",
    "municipality": "Муниципалитет",
    "channel": "Канал",
    "life_situation": "Жизненная ситуация",
}


def variable_query(name: str, source: str = "journeys_started_total") -> str:
    """The query behind a variable, chained on the agency.

    ``source`` is the family whose label values are offered: the one the dashboard is
    about (office visits for the MFC dashboard, cases for life situations, ...). A
    catalog code (:data:`CODE_LABELS`) is offered with its Russian name: the catalog's
    info series of the codes the source carried over the dashboard's time range, each
    read by :func:`variable_regex` into the name as text and the code as value.
    """
    selector = f"{PREFIX}{source}"
    if name != "agency":
        selector += '{agency=~"$agency"}'
    if name not in CODE_LABELS:
        return f"label_values({selector}, {name})"
    if info_keys(name) != (name,):
        # a step or an error code is a code of its service: no dropdown of its own
        raise ValueError(f"no variable over {name!r}: its names are per {info_keys(name)[0]}")
    info = f"{PREFIX}catalog_{name}_info"
    return (
        f"query_result(max by ({name}, {name}_name) ({info})"
        f" and on ({name}) group by ({name}) (last_over_time({selector}[$__range])))"
    )


def variable_regex(name: str) -> str:
    """The regex Grafana applies to each ``query_result`` line of a catalog variable.

    Grafana writes a line as ``{<label>="<code>",<label>_name="<name>"} <value> <ms>``
    (labels in Prometheus' order, values unescaped); the named groups make the code the
    value and the name the text. A line without the code (a pseudo-value such as the
    empty service) does not match and is left out, as ``label_values`` leaves it out.
    """
    if name not in CODE_LABELS:
        return ""
    return f'/^\\{{{name}="(?<value>[^"]+)",{name}_name="(?<text>.*)"\\}} /'


def _variables(names: Sequence[str], source: str) -> list[Any]:
    out: list[Any] = [
        dash.DatasourceVariable("datasource")
        .label("Источник данных")
        .type("prometheus")
        .current(VariableOption(selected=True, text="Prometheus", value=DATASOURCE_UID))
        .hide(VariableHide.HIDE_VARIABLE)
    ]
    for name in names:
        out.append(
            dash.QueryVariable(name)
            .label(_VAR_RU[name])
            .datasource(DS)
            .query(variable_query(name, source))
            .regex(variable_regex(name))
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
    return out


@dataclass
class Board:
    """A dashboard under construction: rows of panels, then the JSON model."""

    uid: str
    title: str
    description: str
    variables: Sequence[str] = VARIABLES
    time_from: str = "now-24h"
    #: the family whose label values the variables offer
    source: str = "journeys_started_total"
    rows: list[tuple[str, list[Any]]] = field(default_factory=list)

    def row(self, title: str, *panels: Any) -> Board:
        """Add a row of panels."""
        self.rows.append((title, list(panels)))
        return self

    def build(self) -> dict[str, Any]:
        """The dashboard JSON model (a dict), panels numbered in order."""
        b = (
            dash.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags([TAG])
            .timezone("browser")
            .time(self.time_from, "now")
            .refresh("30s")
            .tooltip(DashboardCursorSync.CROSSHAIR)
            .readonly()
            .variables(_variables(self.variables, self.source))
            .link(
                dash.DashboardLink("Панели ServicePulse")
                .type(DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )
        for title, panels in self.rows:
            b = b.with_row(dash.Row(title))
            for p in panels:
                b = b.with_panel(p)
        model: dict[str, Any] = json.loads(json.dumps(b.build(), cls=JSONEncoder))
        for i, panel in enumerate(model["panels"], start=1):
            panel["id"] = i
        return model


# -- the dashboards ----------------------------------------------------------------------


def ru_window(window: str) -> str:
    """A window in Russian: ``30d`` -> ``30 дн.``, ``1h`` -> ``1 ч``."""
    secs = R.seconds(window)
    if secs % 86400 == 0:
        return f"{secs // 86400} дн."
    if secs % 3600 == 0:
        return f"{secs // 3600} ч"
    return f"{secs // 60} мин"


def _component_names(m: Methodology) -> dict[str, str]:
    return {c.code: c.name for c in m.components}


def _level_mappings(m: Methodology) -> dict[str, str]:
    return {str(i): LEVEL_RU.get(n, n) for i, n in enumerate(R.level_names(m))}


def _objective_colours(m: Methodology, component: str) -> list[tuple[float | None, str]]:
    """Colours of a compliance share with an alert objective: green from the objective's
    target (where its alert stops burning budget), orange within 10 points below, red
    further down. No colours when the methodology sets no objective on the component."""
    target = next((o.target for o in m.alerts.objectives if o.component == component), None)
    if target is None:
        return []
    return [(None, "red"), (round(target - 0.1, 4), "orange"), (target, "green")]


def _rejection_colours(m: Methodology) -> list[tuple[float | None, str]]:
    """Colours of a source's rejected share: orange from its error budget (1 - the valid
    events objective), red from five times the budget."""
    budget = round(1 - m.alerts.valid_events.target, 4)
    return [(None, "green"), (budget, "orange"), (round(5 * budget, 4), "red")]


def _index_thresholds(m: Methodology) -> list[tuple[float | None, str]]:
    bounds = sorted(v for v in m.levels.values())[1:]
    colors = ["red", "orange", "green", "blue"]
    return [(None, colors[0])] + [(b, colors[i + 1]) for i, b in enumerate(bounds)]


ALERT_LABELS: Final = "alertname, alertstate, severity, agency, service, job"
#: Russian names of the alert states and severities the alerts table shows.
ALERT_VALUES_RU: Final = {
    "firing": "сработало",
    "pending": "ожидает",
    "critical": "критическое",
    "warning": "предупреждение",
}


def overview(m: Methodology) -> Board:
    """Regional overview."""
    w = m.windows[-1]
    alerts = f'sum by ({ALERT_LABELS}) (ALERTS{{alertstate=~"firing|pending"}})'
    names = _component_names(m)
    agency_link = [
        _link("Карточка ведомства", UIDS["agency"], "var-agency=${__field.labels.agency}")
    ]
    return (
        Board(
            UIDS["overview"],
            "ServicePulse — обзор региона",
            "Индекс клиентоцентричности региона, его составляющие, лучшие и отстающие "
            "ведомства, поток событий и активные оповещения.",
            variables=(),
        )
        .row(
            "Индекс клиентоцентричности",
            stat_panel(
                Spec(
                    f"Индекс региона ({ru_window(w)})",
                    "Взвешенное среднее составляющих с данными за окно (0-100); веса "
                    "перенормируются по составляющим, у которых есть данные.",
                    "none",
                    [Query(R.index(R.REGION, w), instant=True)],
                    width=6,
                    height=5,
                    decimals=1,
                    min=0,
                    max=100,
                    thresholds=_index_thresholds(m),
                )
            ),
            stat_panel(
                Spec(
                    "Уровень",
                    "Уровень клиентоцентричности по методике: "
                    + ", ".join(f"{LEVEL_RU.get(k, k)} от {v:g}" for k, v in m.levels.items()),
                    "none",
                    [Query(R.level(R.REGION, w), instant=True)],
                    width=6,
                    height=5,
                    mappings=_level_mappings(m),
                )
            ),
            stat_panel(
                Spec(
                    "Индекс за сутки и неделю",
                    "Тот же индекс за короткие окна: показывает направление изменений.",
                    "none",
                    [
                        Query(R.index(R.REGION, "1d"), "сутки", instant=True),
                        Query(R.index(R.REGION, "7d"), "неделя", instant=True),
                    ],
                    width=6,
                    height=5,
                    decimals=1,
                    thresholds=_index_thresholds(m),
                )
            ),
            stat_panel(
                Spec(
                    "Составляющих с данными",
                    "Сколько составляющих индекса имеют данные за окно и учтены в индексе.",
                    "none",
                    [Query(R.counted(R.REGION, w), instant=True)],
                    width=6,
                    height=5,
                )
            ),
            series_panel(
                Spec(
                    "Динамика индекса",
                    "Индекс региона за скользящие окна сутки, неделя и месяц.",
                    "none",
                    [Query(R.index(R.REGION, x), ru_window(x)) for x in m.windows],
                    width=12,
                    min=0,
                    max=100,
                )
            ),
            bars_panel(
                Spec(
                    f"Составляющие индекса ({ru_window(w)})",
                    "Значение каждой составляющей за окно (доля от 0 до 100%).",
                    "percentunit",
                    [Query(R.ratio(R.REGION, w), "{{component}}", instant=True)],
                    width=12,
                    min=0,
                    max=1,
                    names=names,
                )
            ),
        )
        .row(
            "Ведомства",
            bars_panel(
                Spec(
                    "Лучшие ведомства",
                    "Пять ведомств с наибольшим индексом за окно. Щелчок открывает карточку.",
                    "none",
                    [
                        Query(
                            named(f"topk(5, {R.index(R.AGENCY, w)})", "agency"),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    width=8,
                    min=0,
                    max=100,
                    thresholds=_index_thresholds(m),
                    links=agency_link,
                )
            ),
            bars_panel(
                Spec(
                    "Отстающие ведомства",
                    "Пять ведомств с наименьшим индексом за окно. Щелчок открывает карточку.",
                    "none",
                    [
                        Query(
                            named(f"bottomk(5, {R.index(R.AGENCY, w)})", "agency"),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    width=8,
                    min=0,
                    max=100,
                    thresholds=_index_thresholds(m),
                    links=agency_link,
                )
            ),
            table_panel(
                Spec(
                    "Индекс и уровень по ведомствам",
                    "Все ведомства: индекс за окно и уровень (0 базовый, 1 удовлетворительный, "
                    "2 продвинутый).",
                    "none",
                    [
                        Query(named(R.index(R.AGENCY, w), "agency"), table=True),
                        Query(named(R.level(R.AGENCY, w), "agency"), table=True),
                    ],
                    width=8,
                    decimals=1,
                    links=agency_link,
                )
            ),
        )
        .row(
            "Поток и оповещения",
            series_panel(
                Spec(
                    "Поток событий",
                    "Обработанные и отклонённые события в секунду по региону.",
                    "cps",
                    [
                        Query(
                            f"sum(rate({PREFIX}events_processed_total[$__rate_interval]))",
                            "обработано",
                        ),
                        Query(
                            f"sum(rate({PREFIX}events_rejected_total[$__rate_interval]))",
                            "отклонено",
                        ),
                    ],
                )
            ),
            table_panel(
                Spec(
                    "Активные оповещения",
                    "Оповещения Prometheus: сработавшие и ожидающие подтверждения "
                    "(условие держится, но ещё не дольше заданного срока).",
                    "none",
                    [
                        Query(
                            # an alert without an agency (the pipeline's) keeps no name
                            f"({named(alerts, 'agency', 'service')})\nor on ({ALERT_LABELS}) "
                            f"{alerts}",
                            table=True,
                        )
                    ],
                    mappings=ALERT_VALUES_RU,
                )
            ),
        )
    )


def agency(m: Methodology) -> Board:
    """Agency scorecard."""
    q = Filters(("agency",))
    w = m.windows[-1]
    names = _component_names(m)
    f = 'agency=~"$agency"'
    service_link = [
        _link(
            "Услуга: воронка и сроки",
            UIDS["service"],
            "var-agency=${__field.labels.agency}&var-service=${__field.labels.service}",
        )
    ]
    return (
        Board(
            UIDS["agency"],
            "ServicePulse — карточка ведомства",
            "Индекс ведомства и его составляющие с числителями и знаменателями, "
            "заявления в работе и просроченные, завершаемость по услугам.",
            variables=("agency",),
            time_from="now-7d",
        )
        .row(
            "Индекс",
            stat_panel(
                Spec(
                    f"Индекс ({ru_window(w)})",
                    "Индекс клиентоцентричности ведомства за окно (0-100).",
                    "none",
                    [
                        Query(
                            named(f"{R.index(R.AGENCY, w)}{{{f}}}", "agency"),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    width=8,
                    height=5,
                    decimals=1,
                    thresholds=_index_thresholds(m),
                )
            ),
            stat_panel(
                Spec(
                    "Уровень",
                    "Уровень по методике.",
                    "none",
                    [
                        Query(
                            named(f"{R.level(R.AGENCY, w)}{{{f}}}", "agency"),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    width=8,
                    height=5,
                    mappings=_level_mappings(m),
                )
            ),
            stat_panel(
                Spec(
                    "Составляющих с данными",
                    "Сколько составляющих учтено в индексе.",
                    "none",
                    [
                        Query(
                            named(f"{R.counted(R.AGENCY, w)}{{{f}}}", "agency"),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    width=8,
                    height=5,
                )
            ),
            bars_panel(
                Spec(
                    f"Составляющие ({ru_window(w)})",
                    "Значение каждой составляющей ведомства за окно.",
                    "percentunit",
                    [Query(f"{R.ratio(R.AGENCY, w)}{{{f}}}", "{{component}}", instant=True)],
                    min=0,
                    max=1,
                    names=names,
                )
            ),
            table_panel(
                Spec(
                    f"Числители и знаменатели ({ru_window(w)})",
                    "Точные счётчики, из которых посчитаны составляющие: можно проверить.",
                    "short",
                    [
                        Query(
                            named(f"{R.increase(R.AGENCY, part, w)}{{{f}}}", "agency"),
                            table=True,
                        )
                        for part in ("numerator", "denominator")
                    ],
                    decimals=0,
                    mappings=names,
                )
            ),
            series_panel(
                Spec(
                    "Динамика индекса",
                    "Индекс ведомства за скользящие сутки и неделю.",
                    "none",
                    [
                        Query(
                            named(f"{R.index(R.AGENCY, x)}{{{f}}}", "agency"),
                            f"{{{{agency_name}}}}, {ru_window(x)}",
                        )
                        for x in m.windows[:2]
                    ],
                    width=24,
                    min=0,
                    max=100,
                )
            ),
        )
        .row(
            "Заявления",
            stat_panel(
                Spec(
                    "В работе сейчас",
                    "Поданные (или зарегистрированные офлайн) и ещё не решённые заявления.",
                    "short",
                    [Query(f"sum({q.sel('applications_pending')})", instant=True)],
                    width=6,
                    height=5,
                )
            ),
            stat_panel(
                Spec(
                    "Просрочено сейчас",
                    "Заявления в работе, у которых истёк нормативный срок.",
                    "short",
                    [Query(f"sum({q.sel('applications_overdue')})", instant=True)],
                    width=6,
                    height=5,
                    thresholds=[(None, "green"), (1, "red")],
                )
            ),
            bars_panel(
                Spec(
                    "Завершаемость по услугам",
                    "Доля поданных среди завершённых (поданные + брошенные) за выбранный "
                    "период. Щелчок открывает воронку услуги.",
                    "percentunit",
                    [
                        Query(
                            named(
                                share(
                                    q.inc("journeys_submitted_total", by="agency, service"),
                                    q.inc("journeys_resolved_total", by="agency, service"),
                                ),
                                "service",
                            ),
                            "{{service_name}}",
                            instant=True,
                        )
                    ],
                    width=12,
                    min=0,
                    max=1,
                    links=service_link,
                )
            ),
        )
    )


def service(m: Methodology) -> Board:
    """Service funnel and timing."""
    q = Filters()
    return (
        Board(
            UIDS["service"],
            "ServicePulse — услуга: воронка и сроки",
            "Воронка шагов формы, отказы, ошибки, время заполнения и время до решения, "
            "соблюдение сроков.",
        )
        .row(
            "Воронка",
            count_stat(
                "Начато",
                "Начатые заявления за период.",
                q.inc("journeys_started_total"),
                width=6,
                height=5,
            ),
            count_stat(
                "Подано",
                "Поданные заявления за период.",
                q.inc("journeys_submitted_total"),
                width=6,
                height=5,
            ),
            count_stat(
                "Брошено",
                "Отменённые или брошенные (на портале и в приложении по тайм-ауту).",
                q.inc("journeys_abandoned_total"),
                width=6,
                height=5,
            ),
            share_stat(
                "Завершаемость",
                "Поданные / (поданные + брошенные) за период.",
                share(q.inc("journeys_submitted_total"), q.inc("journeys_resolved_total")),
                width=6,
                height=5,
            ),
            count_bars(
                "Шаги формы",
                "Сколько заявлений дошло до каждого шага (один раз на заявление и шаг).",
                q.inc("journey_steps_total", by="service, step"),
                "service",
                "step",
            ),
            count_bars(
                "Ошибки по видам",
                "Ошибки при заполнении формы за период, по видам ошибок услуги в каталоге; "
                "ошибки, которых в каталоге нет, — в «прочих».",
                q.inc("journey_errors_total", by="service, code"),
                "service",
                "code",
            ),
            count_bars(
                "Начато по каналам",
                "Начатые заявления за период по каналу обращения.",
                q.inc("journeys_started_total", by="channel"),
                "channel",
            ),
            series_panel(
                Spec(
                    "Завершаемость за час",
                    "Скользящая доля поданных среди завершённых за последний час.",
                    "percentunit",
                    [
                        Query(
                            share(
                                q.inc("journeys_submitted_total", window="1h"),
                                q.inc("journeys_resolved_total", window="1h"),
                            ),
                            "завершаемость",
                        )
                    ],
                    width=24,
                    min=0,
                    max=1,
                )
            ),
        )
        .row(
            "Сроки",
            series_panel(
                Spec(
                    "Время заполнения формы",
                    "От начала до подачи: медиана и 90-й перцентиль.",
                    "s",
                    [
                        Query(q.quantile(0.5, "form_duration_seconds"), "медиана"),
                        Query(q.quantile(0.9, "form_duration_seconds"), "90%"),
                    ],
                )
            ),
            series_panel(
                Spec(
                    "Время до решения",
                    "От подачи (или начала, если подачи не было) до решения.",
                    "s",
                    [
                        Query(q.quantile(0.5, "decision_duration_seconds"), "медиана"),
                        Query(q.quantile(0.9, "decision_duration_seconds"), "90%"),
                    ],
                )
            ),
            share_stat(
                "Решения в срок",
                "Решения в пределах нормативного срока / решения с известной своевременностью.",
                share(
                    q.inc("decisions_total", f'timeliness="{R.ON_TIME}"'),
                    q.inc("decisions_total", f'timeliness=~"{R.ON_TIME}|{R.LATE}"'),
                ),
                width=8,
                height=6,
                thresholds=[(None, "red"), (0.9, "orange"), (0.98, "green")],
            ),
            bars_panel(
                Spec(
                    "Решения по исходу",
                    "Одобрено и отказано за период.",
                    "short",
                    [Query(q.inc("decisions_total", by="outcome"), "{{outcome}}", instant=True)],
                    width=8,
                    height=6,
                    decimals=0,
                    names={"approved": "одобрено", "rejected": "отказано"},
                )
            ),
            stat_panel(
                Spec(
                    "В работе и просрочено",
                    "Заявления в работе сейчас и просроченные из них.",
                    "short",
                    [
                        Query(f"sum({q.sel('applications_pending')})", "в работе", instant=True),
                        Query(f"sum({q.sel('applications_overdue')})", "просрочено", instant=True),
                    ],
                    width=8,
                    height=6,
                )
            ),
        )
    )


def life(m: Methodology) -> Board:
    """Life situations."""
    f = 'agency=~"$agency", life_situation=~"$life_situation"'
    started = f"sum(increase({PREFIX}cases_started_total{{{f}}}[$__range]))"
    completed = f"sum(increase({PREFIX}cases_completed_total{{{f}}}[$__range]))"
    return Board(
        UIDS["life"],
        "ServicePulse — жизненные ситуации",
        "Случаи жизненных ситуаций (многодетная семья, выход на пенсию, замена "
        "документов, переезд...): начатые и завершённые, доля завершённых.",
        variables=("agency", "life_situation"),
        source="cases_started_total",
        time_from="now-7d",
    ).row(
        "Случаи",
        count_stat(
            "Начато случаев",
            "Все случаи выбранных жизненных ситуаций, начатые за период.",
            started,
            width=8,
            height=5,
        ),
        count_stat(
            "Завершено случаев",
            "Случаи, по всем заявлениям которых за период приняты решения.",
            completed,
            width=8,
            height=5,
        ),
        share_stat(
            "Доля завершённых",
            "Завершённые / начатые случаи за период.",
            share(completed, started),
            width=8,
            height=5,
        ),
        count_bars(
            "Начато случаев по ситуациям",
            "Случаи жизненных ситуаций, начатые за период.",
            f"sum by (life_situation) (increase({PREFIX}cases_started_total{{{f}}}[$__range]))",
            "life_situation",
            width=12,
        ),
        bars_panel(
            Spec(
                "Доля завершённых случаев",
                "Случаи, по всем заявлениям которых приняты решения / начатые случаи за период.",
                "percentunit",
                [
                    Query(
                        named(
                            share(
                                f"sum by (life_situation) (increase("
                                f"{PREFIX}cases_completed_total{{{f}}}[$__range]))",
                                f"sum by (life_situation) (increase("
                                f"{PREFIX}cases_started_total{{{f}}}[$__range]))",
                            ),
                            "life_situation",
                        ),
                        "{{life_situation_name}}",
                        instant=True,
                    )
                ],
                min=0,
                max=1,
            )
        ),
        series_panel(
            Spec(
                "Поток случаев",
                "Начатые и завершённые случаи в секунду.",
                "cps",
                [
                    Query(
                        f"sum(rate({PREFIX}cases_started_total{{{f}}}[$__rate_interval]))",
                        "начато",
                    ),
                    Query(
                        f"sum(rate({PREFIX}cases_completed_total{{{f}}}[$__rate_interval]))",
                        "завершено",
                    ),
                ],
                width=24,
            )
        ),
    )


def offices(m: Methodology) -> Board:
    """MFC offices and queues."""
    q = Filters(("agency", "municipality"))
    standard = m.standards.office_wait_seconds
    return Board(
        UIDS["offices"],
        "ServicePulse — МФЦ: офисы и очереди",
        f"Ожидание в очереди и соблюдение норматива {standard // 60} минут по офисам "
        "(коды каталога) и муниципалитетам; названия — из каталога.",
        variables=("agency", "municipality"),
        source="office_visits_total",
    ).row(
        "Очереди",
        share_stat(
            "Приняты в пределах норматива",
            f"Посещения с ожиданием не дольше {standard // 60} минут / все посещения.",
            share(
                q.inc("office_visits_total", f'within_standard="{R.TRUE}"'),
                q.inc("office_visits_total"),
            ),
            width=8,
            height=6,
            thresholds=_objective_colours(m, "wait"),
        ),
        count_stat(
            "Посещений за период",
            "Обслуженные посетители офисов.",
            q.inc("office_visits_total"),
            width=8,
            height=6,
        ),
        stat_panel(
            Spec(
                "Медиана ожидания",
                "Медиана времени ожидания за период.",
                "s",
                [Query(q.quantile(0.5, "office_wait_seconds", window="$__range"), instant=True)],
                width=8,
                height=6,
                thresholds=[(None, "green"), (standard, "red")],
            )
        ),
        bars_panel(
            Spec(
                "Норматив по муниципалитетам",
                "Доля посещений в пределах норматива по муниципалитетам (ОКТМО).",
                "percentunit",
                [
                    Query(
                        share(
                            q.inc(
                                "office_visits_total",
                                f'within_standard="{R.TRUE}"',
                                "municipality",
                            ),
                            q.inc("office_visits_total", by="municipality"),
                        )
                        + _named("municipality"),
                        "{{municipality_name}}",
                        instant=True,
                    )
                ],
                min=0,
                max=1,
                thresholds=_objective_colours(m, "wait"),
            )
        ),
        bars_panel(
            Spec(
                "Норматив по офисам",
                f"Доля посещений с ожиданием не дольше {standard // 60} минут в каждом офисе.",
                "percentunit",
                [
                    Query(
                        share(
                            q.inc(
                                "office_visits_by_office_total",
                                f'within_standard="{R.TRUE}"',
                                "office",
                            ),
                            q.inc("office_visits_by_office_total", by="office"),
                        )
                        + _named("office"),
                        "{{office_name}}",
                        instant=True,
                    )
                ],
                min=0,
                max=1,
                thresholds=_objective_colours(m, "wait"),
            )
        ),
        series_panel(
            Spec(
                "Время ожидания",
                "Медиана и 90-й перцентиль ожидания в очереди.",
                "s",
                [
                    Query(q.quantile(0.5, "office_wait_seconds"), "медиана"),
                    Query(q.quantile(0.9, "office_wait_seconds"), "90%"),
                ],
                thresholds=[(None, "green"), (standard, "red")],
            )
        ),
    )


def feedback(m: Methodology) -> Board:
    """Feedback and appeals."""
    q = Filters()
    good = "|".join(str(s) for s in range(m.standards.csat_good_min_score, 6))
    # A score nobody gave has no series: it counts as zero, not as a missing mean.
    terms = [(s, q.inc("feedback_total", f'score="{s}"')) for s in range(1, 6)]
    scores = "\n+ ".join(f"{s} * ({expr} or vector(0))" for s, expr in terms)
    return (
        Board(
            UIDS["feedback"],
            "ServicePulse — оценки и жалобы",
            "Удовлетворённость (оценки 4-5), средняя оценка, жалобы и их рассмотрение в "
            "срок, межведомственные ответы.",
            time_from="now-7d",
        )
        .row(
            "Оценки",
            share_stat(
                "Удовлетворённость",
                f"Оценки {m.standards.csat_good_min_score}-5 / все оценки за период.",
                share(q.inc("feedback_total", f'score=~"{good}"'), q.inc("feedback_total")),
                width=8,
                height=6,
                thresholds=_objective_colours(m, "satisfaction"),
            ),
            stat_panel(
                Spec(
                    "Средняя оценка",
                    "Средняя оценка от 1 до 5 за период.",
                    "none",
                    [Query(share(f"(\n{scores}\n)", q.inc("feedback_total")), instant=True)],
                    width=8,
                    height=6,
                    decimals=2,
                    min=1,
                    max=5,
                )
            ),
            bars_panel(
                Spec(
                    "Распределение оценок",
                    "Сколько раз поставлена каждая оценка за период.",
                    "short",
                    [Query(q.inc("feedback_total", by="score"), "{{score}}", instant=True)],
                    width=8,
                    height=6,
                    decimals=0,
                )
            ),
        )
        .row(
            "Жалобы",
            share_stat(
                "Жалобы в срок",
                f"Отвеченные в течение {m.standards.appeal_term_days} календарных дней "
                "/ все отвеченные за период.",
                share(
                    q.inc("appeals_answered_total", f'timeliness="{R.ON_TIME}"'),
                    q.inc("appeals_answered_total"),
                ),
                width=6,
                height=6,
            ),
            count_stat(
                "Поступило жалоб",
                "Жалобы, поступившие за период.",
                q.inc("appeals_received_total"),
                width=6,
                height=6,
            ),
            stat_panel(
                Spec(
                    "Открыто и просрочено",
                    "Жалобы без ответа сейчас и просроченные из них.",
                    "short",
                    [
                        Query(f"sum({q.sel('appeals_open')})", "открыто", instant=True),
                        Query(f"sum({q.sel('appeals_overdue')})", "просрочено", instant=True),
                    ],
                    width=6,
                    height=6,
                )
            ),
            series_panel(
                Spec(
                    "Поток жалоб",
                    "Поступившие и отвеченные жалобы в секунду.",
                    "cps",
                    [
                        Query(q.rate("appeals_received_total"), "поступило"),
                        Query(q.rate("appeals_answered_total"), "отвечено"),
                    ],
                    width=6,
                    height=6,
                )
            ),
        )
        .row(
            "Межведомственное взаимодействие",
            share_stat(
                "Ответы за 48 часов",
                "Межведомственные ответы, пришедшие в течение 48 часов / все ответы.",
                share(
                    q.inc("interagency_responses_total", f'within_48h="{R.TRUE}"'),
                    q.inc("interagency_responses_total"),
                ),
                width=8,
                height=6,
            ),
            series_panel(
                Spec(
                    "Время межведомственного ответа",
                    "Медиана и 90-й перцентиль времени ответа.",
                    "s",
                    [
                        Query(q.quantile(0.5, "interagency_response_seconds"), "медиана"),
                        Query(q.quantile(0.9, "interagency_response_seconds"), "90%"),
                    ],
                    width=16,
                    height=6,
                )
            ),
        )
    )


def quality(m: Methodology) -> Board:
    """Data quality per source."""
    f = 'agency=~"$agency"'
    rej = f"{PREFIX}events_rejected_total{{{f}}}"
    ok = f"{PREFIX}events_processed_total{{{f}}}"
    quality_link = [
        _link("Карточка ведомства", UIDS["agency"], "var-agency=${__field.labels.agency}")
    ]
    return (
        Board(
            UIDS["quality"],
            "ServicePulse — качество данных по источникам",
            "Чьим цифрам можно доверять: доля отклонённых событий по причинам, опоздавшие "
            "и повторные события, расхождение часов, пропуски шагов формы.",
            variables=("agency",),
            source="events_processed_total",
        )
        .row(
            "Отклонённые события",
            bars_panel(
                Spec(
                    "Доля отклонённых по ведомствам",
                    "Отклонённые / (обработанные + отклонённые) за период.",
                    "percentunit",
                    [
                        Query(
                            named(
                                share(
                                    f"sum by (agency) (increase({rej}[$__range]))",
                                    f'sum by (agency) (increase({{__name__=~"{PREFIX}events_'
                                    f'(processed|rejected)_total", {f}}}[$__range]))',
                                ),
                                "agency",
                            ),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    min=0,
                    max=1,
                    thresholds=_rejection_colours(m),
                    links=quality_link,
                )
            ),
            table_panel(
                Spec(
                    "Отклонено по причинам",
                    "Число отклонённых событий за период по ведомству и причине.",
                    "short",
                    [
                        Query(
                            named(
                                f"sum by (agency, reason) (increase({rej}[$__range]))",
                                "agency",
                                "reason",
                            ),
                            table=True,
                        )
                    ],
                    decimals=0,
                )
            ),
            series_panel(
                Spec(
                    "Поток событий по ведомствам",
                    "Обработанные события в секунду: замолчавший источник виден как ноль.",
                    "cps",
                    [
                        Query(
                            named(f"sum by (agency) (rate({ok}[$__rate_interval]))", "agency"),
                            "{{agency_name}}",
                        )
                    ],
                    width=24,
                )
            ),
        )
        .row(
            "Опоздания, повторы, часы",
            count_bars(
                "Опоздавшие события",
                "События жизненного цикла, пришедшие после закрытия заявления, по причине.",
                f"sum by (agency, reason) (increase({PREFIX}late_events_total{{{f}}}[$__range]))",
                "agency",
                "reason",
            ),
            count_bars(
                "Повторные события",
                "События с уже виденным event_id (учтены один раз).",
                f"sum by (agency) (increase({PREFIX}duplicate_events_total{{{f}}}[$__range]))",
                "agency",
            ),
            bars_panel(
                Spec(
                    "Пропуски шагов формы",
                    "Поданные заявления, пропустившие шаги каталога / поданные.",
                    "percentunit",
                    [
                        Query(
                            named(
                                share(
                                    f"sum by (agency) (increase("
                                    f"{PREFIX}journeys_skipped_steps_total{{{f}}}[$__range]))",
                                    f"sum by (agency) (increase("
                                    f"{PREFIX}journeys_submitted_total{{{f}}}[$__range]))",
                                ),
                                "agency",
                            ),
                            "{{agency_name}}",
                            instant=True,
                        )
                    ],
                    width=8,
                    min=0,
                    max=1,
                )
            ),
            *(
                series_panel(
                    Spec(
                        title,
                        text,
                        "s",
                        [
                            Query(
                                named(
                                    "histogram_quantile(0.9, sum by (le, agency) (rate("
                                    f"{PREFIX}{family}_bucket{{{f}}}[$__rate_interval])))",
                                    "agency",
                                ),
                                "{{agency_name}}",
                            )
                        ],
                        width=12,
                    )
                )
                for title, text, family in (
                    (
                        "Задержка доставки",
                        "Время получения минус время события: 90-й перцентиль по ведомствам. "
                        "Догрузка задним числом и отправка с опозданием — не ошибка часов.",
                        "delivery_delay_seconds",
                    ),
                    (
                        "Расхождение часов источника",
                        "Отметка отправки по часам источника против времени получения "
                        "брокером (по модулю): 90-й перцентиль; только для событий, "
                        "отправленных библиотекой производителя.",
                        "clock_skew_seconds",
                    ),
                )
            ),
        )
    )


def pipeline_health(m: Methodology) -> Board:
    """Pipeline health."""
    jobs = f'job=~"{pipeline.JOB_API}|{pipeline.JOB_PROCESSOR}"'
    deadletters = f"sum by (reason) (rate({pipeline.PROCESSOR_DEADLETTERS.name}[$__rate_interval]))"
    return (
        Board(
            UIDS["pipeline"],
            "ServicePulse — работа конвейера",
            "Доступность компонентов, отставание обработчиков от Kafka, учёт по времени событий, "
            "время пакетов и транзакций, восстановление состояния, вычисление правил.",
            variables=(),
            time_from="now-3h",
        )
        .row(
            "Компоненты",
            table_panel(
                Spec(
                    "Доступность",
                    "up по целям сбора метрик: 1 доступен, 0 нет.",
                    "none",
                    [Query(f"up{{{jobs}}}", table=True)],
                    width=12,
                    mappings={"0": "недоступен", "1": "доступен"},
                )
            ),
            series_panel(
                Spec(
                    "Время сбора метрик",
                    "Сколько длится один сбор /metrics у каждой цели.",
                    "s",
                    [Query(f"scrape_duration_seconds{{{jobs}}}", "{{job}} {{instance}}")],
                )
            ),
        )
        .row(
            "Обработчики",
            series_panel(
                Spec(
                    "Отставание от Kafka",
                    "Необработанные записи по разделам (каждый раздел учтён один раз).",
                    "short",
                    [
                        Query(R.LAG_SUM, "всего"),
                        Query(
                            f"max by (partition) ({pipeline.PROCESSOR_LAG.name})",
                            "раздел {{partition}}",
                        ),
                    ],
                )
            ),
            series_panel(
                Spec(
                    "Отставание учёта по времени событий",
                    "Текущее время минус момент, до которого события учтены, наибольшее по "
                    "разделам.",
                    "s",
                    [Query(R.WATERMARK_DELAY_MAX, "наибольшее")],
                )
            ),
            series_panel(
                Spec(
                    "Обработка событий",
                    "Входные события в секунду по экземплярам обработчика.",
                    "cps",
                    [
                        Query(
                            f"sum by (instance) (rate({pipeline.PROCESSOR_EVENTS.name}"
                            "[$__rate_interval]))",
                            "{{instance}}",
                        )
                    ],
                    width=8,
                )
            ),
            series_panel(
                Spec(
                    "Пакет и транзакция",
                    "99-й перцентиль времени обработки пакета и фиксации транзакции Kafka.",
                    "s",
                    [
                        Query(
                            "histogram_quantile(0.99, sum by (le) (rate("
                            f"{pipeline.PROCESSOR_BATCH.name}_bucket[$__rate_interval])))",
                            "пакет",
                        ),
                        Query(
                            "histogram_quantile(0.99, sum by (le) (rate("
                            f"{pipeline.PROCESSOR_COMMIT.name}_bucket[$__rate_interval])))",
                            "транзакция",
                        ),
                    ],
                    width=8,
                )
            ),
            stat_panel(
                Spec(
                    "Восстановление состояния",
                    "Среднее время восстановления состояния из changelog при назначении "
                    "разделов, с запуска обработчиков, и число восстановлений.",
                    "s",
                    [
                        Query(
                            share(
                                f"sum({pipeline.PROCESSOR_RESTORE.name}_sum)",
                                f"sum({pipeline.PROCESSOR_RESTORE.name}_count)",
                            ),
                            "среднее",
                            instant=True,
                        )
                    ],
                    width=4,
                )
            ),
            stat_panel(
                Spec(
                    "Разделов назначено",
                    "Входные разделы, назначенные обработчикам (сумма по экземплярам).",
                    "short",
                    [Query(f"sum({pipeline.PROCESSOR_PARTITIONS.name})", instant=True)],
                    width=4,
                )
            ),
            series_panel(
                Spec(
                    "Транзакции и отбракованные события",
                    "Транзакции Kafka по результату, события, отбракованные в очередь ошибок, "
                    "и события, удалённые по сроку хранения топика до обработки (потеряны), "
                    "в секунду.",
                    "cps",
                    [
                        Query(
                            f"sum by (result) (rate({pipeline.PROCESSOR_TRANSACTIONS.name}"
                            "[$__rate_interval]))",
                            "{{result}}",
                        ),
                        Query(
                            # the names come from the API: while it is down the dead
                            # letters still show, with no name
                            f"({named(deadletters, 'reason')})\nor on (reason) {deadletters}",
                            "отбраковано: {{reason_name}}",
                        ),
                        Query(
                            f"sum(rate({pipeline.PROCESSOR_RETENTION_LOST.name}"
                            "[$__rate_interval]))",
                            "удалены до обработки",
                        ),
                    ],
                    names=pipeline.TRANSACTION_RESULTS_RU,
                )
            ),
            series_panel(
                Spec(
                    "Размер состояния",
                    "Записей в состоянии обработчиков по видам.",
                    "short",
                    [
                        Query(
                            f"sum by (kind) ({pipeline.PROCESSOR_STATE.name})",
                            "{{kind}}",
                        )
                    ],
                    names=pipeline.STATE_KINDS_RU,
                )
            ),
            series_panel(
                Spec(
                    "Запросы к API",
                    "Запросы в секунду по маршруту и коду ответа.",
                    "reqps",
                    [
                        Query(
                            f"sum by (route, status) (rate({pipeline.API_REQUESTS.name}"
                            "[$__rate_interval]))",
                            "{{route}} {{status}}",
                        )
                    ],
                )
            ),
            series_panel(
                Spec(
                    "Задержка API",
                    "99-й перцентиль времени ответа API по всем маршрутам.",
                    "s",
                    [
                        Query(
                            "histogram_quantile(0.99, sum by (le) (rate("
                            f"{pipeline.API_LATENCY.name}_bucket[$__rate_interval])))",
                            "p99",
                        )
                    ],
                    width=8,
                )
            ),
            stat_panel(
                Spec(
                    "Модель чтения API",
                    "Готовность модели чтения (1: догнала Kafka) у каждого экземпляра API.",
                    "none",
                    [Query(f"min({pipeline.API_READMODEL_READY.name})", instant=True)],
                    width=4,
                    mappings={"0": "догоняет", "1": "готова"},
                )
            ),
            series_panel(
                Spec(
                    "Вычисление правил",
                    "Длительность последнего вычисления групп правил ServicePulse.",
                    "s",
                    [
                        Query(
                            'prometheus_rule_group_last_duration_seconds{rule_group=~".*servicepulse.*"}',
                            "{{rule_group}}",
                        )
                    ],
                )
            ),
            series_panel(
                Spec(
                    "Сбор /metrics API",
                    "Длительность сбора метрик API Prometheus'ом (норма — миллисекунды).",
                    "s",
                    [
                        Query(
                            f'scrape_duration_seconds{{job="{pipeline.JOB_API}"}}',
                            "{{instance}}",
                        )
                    ],
                    width=12,
                )
            ),
            series_panel(
                Spec(
                    "Бизнес-ряды и бюджет",
                    "Число бизнес-рядов, которые отдаёт API, и бюджет каталога (docs/METRICS.md).",
                    "none",
                    [
                        Query(
                            f"sum by (instance) ({pipeline.API_BUSINESS_SERIES.name})",
                            "{{instance}} ряды",
                        ),
                        Query(
                            f"sum by (instance) ({pipeline.API_BUSINESS_SERIES_BUDGET.name})",
                            "{{instance}} бюджет",
                        ),
                    ],
                    width=12,
                )
            ),
        )
    )


BOARDS: Final = (overview, agency, service, life, offices, feedback, quality, pipeline_health)


def models(m: Methodology) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON model of every dashboard."""
    out = {}
    for make in BOARDS:
        model = make(m).build()
        out[model["uid"]] = model
    return out


def render(m: Methodology) -> dict[str, str]:
    """File name -> JSON text of every dashboard (``<uid>.json``)."""
    return {
        f"{uid}.json": json.dumps(model, indent=2, ensure_ascii=False) + "\n"
        for uid, model in models(m).items()
    }
