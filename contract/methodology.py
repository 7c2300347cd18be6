"""The client-centricity index: components, weights, levels (DESIGN.md section 5).

Weights, thresholds, standards and alert objectives come from one YAML file
(``data/methodology.yaml`` by default). :func:`score` computes the index from exact
rollups for reports; the Prometheus recording and alert rules are generated from the same
:class:`Methodology`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Final, Literal, get_args

import msgspec
import yaml

from contract.aggregates import Rollup
from contract.errors import ConfigError

ComponentCode = Literal[
    "completion",
    "on_time",
    "satisfaction",
    "wait",
    "digital",
    "appeals",
    "interagency",
    "error_free",
]
COMPONENT_CODES: Final[tuple[ComponentCode, ...]] = get_args(ComponentCode)

#: A Prometheus duration of one unit: ``5m``, ``6h``, ``30d``.
Duration = Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]*[smhdw]$")]
#: A share strictly between 0 and 1 (an objective's target, a drop in points / 100).
Share = Annotated[float, msgspec.Meta(gt=0, lt=1)]
Severity = Literal["critical", "warning"]


class Component(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One index component: its weight and how it is described."""

    code: ComponentCode
    name: str
    weight: float
    numerator: str
    denominator: str


class Standards(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Service standards the components are measured against."""

    office_wait_seconds: int = 900
    interagency_seconds: int = 172_800
    appeal_term_days: int = 30
    #: complaints under 210-FZ art. 11.2: working days from registration
    complaint_term_working_days: int = 15
    csat_good_min_score: int = 4
    small_cell: int = 5


class BurnRate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A multi-window burn-rate condition (as Sloth and Pyrra generate them).

    Fires when the error ratio over both ``long`` and ``short`` exceeds
    ``factor * (1 - target)`` for ``for_`` (``for`` in the file); the short window makes
    it resolve soon after a fix.
    """

    long: Duration
    short: Duration
    factor: Annotated[float, msgspec.Meta(gt=0)]
    severity: Severity
    for_: Duration = msgspec.field(name="for")


def _check_burn(what: str, target: float, burn: tuple[BurnRate, ...]) -> None:
    budget = 1.0 - target
    for b in burn:
        threshold = b.factor * budget
        if threshold >= 1:
            raise ValueError(
                f"{what}: burn factor {b.factor:g} x budget {budget:g} = {threshold:g} "
                "can never be exceeded by an error ratio; lower the factor"
            )


class Objective(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A compliance objective on an index component, alerted on per agency.

    Raises:
        ValueError: a burn factor whose threshold is 100% or more (it could never fire).
    """

    component: ComponentCode
    #: the share of the component's denominator that should be in its numerator
    target: Share
    #: the Prometheus alert name
    alert: str
    #: what falls short, as the alert summary says it ("<agency>: <what> ниже норматива")
    what: str
    burn: tuple[BurnRate, ...]

    def __post_init__(self) -> None:
        _check_burn(self.alert, self.target, self.burn)


class ValidEvents(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The share of a source's events that pass validation, alerted on per agency.

    Raises:
        ValueError: a burn factor whose threshold is 100% or more.
    """

    target: Share
    burn: tuple[BurnRate, ...]

    def __post_init__(self) -> None:
        _check_burn("valid_events", self.target, self.burn)


class CompletionDrop(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A service's completion over the last hour below the day's by more than ``points``."""

    points: Share
    #: resolved journeys the service needs in the hour before the alert may fire
    min_resolved: Annotated[int, msgspec.Meta(ge=1)]
    for_: Duration = msgspec.field(name="for")


class SourceSilent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An agency that sent events in the last day and nothing for ``after``."""

    after: Duration
    for_: Duration = msgspec.field(name="for")


class OverdueRising(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Overdue applications of an agency that grew over ``window``."""

    window: Duration
    for_: Duration = msgspec.field(name="for")


class ProcessorLag(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """More than ``records`` events not yet consumed, over all partitions."""

    records: Annotated[int, msgspec.Meta(ge=1)]
    for_: Duration = msgspec.field(name="for")


class WatermarkDelay(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The slowest partition's event-time watermark more than ``seconds`` behind."""

    seconds: Annotated[int, msgspec.Meta(ge=1)]
    for_: Duration = msgspec.field(name="for")


class ComponentDown(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The API or a processor not scraped (``up == 0``)."""

    for_: Duration = msgspec.field(name="for")


class Alerts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Objectives and thresholds of the generated Prometheus alert rules."""

    objectives: tuple[Objective, ...]
    valid_events: ValidEvents
    completion_drop: CompletionDrop
    source_silent: SourceSilent
    overdue_rising: OverdueRising
    processor_lag: ProcessorLag
    watermark_delay: WatermarkDelay
    component_down: ComponentDown


class Methodology(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The whole methodology file."""

    version: Literal[1]
    levels: dict[str, float]
    standards: Standards
    windows: list[Duration]
    components: list[Component]
    alerts: Alerts

    def level(self, index: float) -> str:
        """The level name of an index value (``advanced``, ``satisfactory``, ``basic``)."""
        for name, bound in sorted(self.levels.items(), key=lambda kv: -kv[1]):
            if index >= bound:
                return name
        return min(self.levels.items(), key=lambda kv: kv[1])[0]


@dataclass(frozen=True, slots=True)
class ComponentValue:
    """A component over a period: exact numerator and denominator, value in 0..1."""

    code: str
    name: str
    weight: float
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        """numerator / denominator, or ``None`` when there is no data."""
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True, slots=True)
class Score:
    """The index of one scope and period with the components that made it."""

    components: tuple[ComponentValue, ...]
    index: float | None
    level: str | None
    counted: tuple[str, ...]


def fractions(r: Rollup, standards: Standards) -> dict[str, tuple[int, int]]:
    """Numerator and denominator of every component from one (summed) rollup."""
    decisions_on_time = sum(v for k, v in r.decisions.items() if k.endswith(":on_time"))
    decisions_late = sum(v for k, v in r.decisions.items() if k.endswith(":late"))
    good = sum(v for k, v in r.feedback.items() if int(k) >= standards.csat_good_min_score)
    return {
        "completion": (r.submitted, r.submitted + r.abandoned),
        "on_time": (decisions_on_time, decisions_on_time + decisions_late),
        "satisfaction": (good, sum(r.feedback.values())),
        "wait": (r.visits.get("true", 0), r.visits.get("true", 0) + r.visits.get("false", 0)),
        "digital": (r.started_digital, r.started),
        "appeals": (
            r.appeals_answered.get("on_time", 0),
            r.appeals_answered.get("on_time", 0) + r.appeals_answered.get("late", 0),
        ),
        "interagency": (
            r.interagency_responded.get("within", 0),
            r.interagency_responded.get("within", 0) + r.interagency_responded.get("over", 0),
        ),
        "error_free": (r.resolved - r.resolved_with_errors, r.resolved),
    }


def score(rollup: Rollup, methodology: Methodology) -> Score:
    """The index of a summed rollup: weights renormalised over components with data."""
    return score_fractions(fractions(rollup, methodology.standards), methodology)


def score_fractions(fr: dict[str, tuple[int, int]], methodology: Methodology) -> Score:
    """The index of given (numerator, denominator) per component (as :func:`score`)."""
    comps = tuple(
        ComponentValue(c.code, c.name, c.weight, *fr[c.code]) for c in methodology.components
    )
    counted = [c for c in comps if c.denominator > 0 and c.weight > 0]
    if not counted:
        return Score(comps, None, None, ())
    total_w = sum(c.weight for c in counted)
    index = 100.0 * sum(c.weight * (c.numerator / c.denominator) for c in counted) / total_w
    return Score(comps, index, methodology.level(index), tuple(c.code for c in counted))


def default_methodology_path() -> Path:
    """The methodology file that ships with the project."""
    return Path(str(resources.files("contract") / "data" / "methodology.yaml"))


@functools.lru_cache(maxsize=4)
def load_methodology(path: str | None = None) -> Methodology:
    """Load and check a methodology file (``None``: the shipped one)."""
    p = Path(path) if path else default_methodology_path()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        m = msgspec.convert(data, Methodology)
    except OSError as exc:
        raise ConfigError(f"cannot read methodology {str(p)!r}: {exc.strerror}") from exc
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{p}: invalid methodology: {exc}") from exc
    codes = [c.code for c in m.components]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{p}: a component is listed twice")
    if any(c.weight < 0 for c in m.components):
        raise ConfigError(f"{p}: weights must not be negative")
    for obj in m.alerts.objectives:
        # Only listed components get recorded ratios; an alert on another one never fires.
        if obj.component not in codes:
            raise ConfigError(
                f"{p}: alerts.objectives: {obj.alert} is on component {obj.component!r}, "
                "which is not in components"
            )
    return m
