"""Scenario knobs of the traffic simulator, read from a YAML file.

Every knob has a default that gives ordinary traffic; a scenario file overrides some of
them, globally or for one agency, service, form step or office. Unknown keys and codes
the catalog does not know are refused with the path of the offending entry.

Example (an agency whose upload step fails)::

    name: failing-step
    services:
      housing_subsidy:
        steps:
          documents: {error_rate: 0.4, drop_off: 0.25, error_code: upload_failed}
"""

from __future__ import annotations

import re
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Final

import msgspec
import yaml

from contract.catalog import Catalog
from contract.events import Channel
from producers.errors import ScenarioError

#: a probability or share, 0 and 1 included (contract.methodology.Share excludes both)
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Factor = Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)]

_CODE: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DAY: Final = re.compile(r"^(\d{4}-)?\d{2}-\d{2}$")


class StepKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One form step of one service."""

    drop_off: Fraction | None = None
    error_rate: Fraction | None = None
    #: the error code this step fails with (default: one of the service's codes)
    error_code: str | None = None
    #: multiplier of the time spent on the step
    slowness: Factor = 1.0


class ServiceKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One service; ``None`` keeps the agency or global value."""

    demand: Factor = 1.0
    drop_off: Fraction | None = None
    error_rate: Fraction | None = None
    reject_rate: Fraction | None = None
    late_rate: Fraction | None = None
    steps: dict[str, StepKnobs] = msgspec.field(default_factory=dict)


class AgencyKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every service of one agency."""

    demand: Factor = 1.0
    reject_rate: Fraction | None = None
    late_rate: Fraction | None = None
    #: multiplier of interagency response times for requests this agency sends
    interagency_slowness: Factor = 1.0
    #: multiplier of appeal answer times
    appeal_slowness: Factor = 1.0


class OfficeKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One office: a multiplier of its queue waits."""

    wait_factor: Factor = 1.0


class Peak(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A period of higher (or lower) demand.

    ``start``/``end`` (inclusive) are ``YYYY-MM-DD`` dates, or ``MM-DD`` for a period
    that repeats every year. Empty ``services``/``agencies`` mean every one.
    """

    start: str
    end: str
    factor: Factor
    services: list[str] = msgspec.field(default_factory=list)
    agencies: list[str] = msgspec.field(default_factory=list)
    #: multiplier of office waits during the peak (crowds)
    wait_factor: Factor = 1.0
    #: added to the late-decision share during the peak (backlog)
    extra_late_rate: Fraction = 0.0

    def covers(self, day: date) -> bool:
        """Whether ``day`` is inside the peak."""
        if len(self.start) == 5:
            key = day.strftime("%m-%d")
            if self.start <= self.end:
                return self.start <= key <= self.end
            return key >= self.start or key <= self.end
        return self.start <= day.isoformat() <= self.end


def _default_mix() -> dict[Channel, float]:
    return {
        Channel.PORTAL: 0.36,
        Channel.MOBILE: 0.2,
        Channel.MFC: 0.34,
        Channel.OFFICE: 0.07,
        Channel.PHONE: 0.03,
    }


class Scenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """All knobs of one simulation. Shares are probabilities (0..1)."""

    name: str = "default"
    description: str = ""
    #: relative weight of each channel where the service offers it (proactive apart)
    channel_mix: dict[Channel, Factor] = msgspec.field(default_factory=_default_mix)
    #: share of journeys of a service that offers `proactive` that start proactively
    proactive_share: Fraction = 0.25
    #: share of arrivals that are a life situation (several services, one case)
    life_situation_share: Fraction = 0.12
    #: chance to leave the form after each step (first step: plus `bounce`)
    drop_off: Fraction = 0.04
    bounce: Fraction = 0.05
    #: chance of a portal error on each step
    error_rate: Fraction = 0.02
    #: share of errors reported with a code the catalog does not know
    unknown_error_share: Fraction = 0.05
    #: chance to give up right after an error
    error_drop_off: Fraction = 0.35
    #: share of drop-offs with an explicit cancel (the rest go silent)
    explicit_abandon_share: Fraction = 0.3
    reject_rate: Fraction = 0.1
    #: share of rejections with a reason code the catalog does not know
    unknown_reason_share: Fraction = 0.03
    late_rate: Fraction = 0.06
    #: share of decided journeys decided by a registry check within hours
    quick_decision_share: Fraction = 0.15
    #: chance that a submitted journey needs interagency requests
    interagency_rate: Fraction = 0.45
    #: share of interagency responses slower than 48 hours
    interagency_slow_share: Fraction = 0.08
    #: chance of feedback after a decision (digital; assisted channels get a third)
    feedback_rate: Fraction = 0.3
    #: chance of feedback right after an MFC visit
    visit_feedback_rate: Fraction = 0.4
    #: chance of an appeal after any decision, after a rejection, after a late one
    appeal_rate: Fraction = 0.005
    appeal_after_reject: Fraction = 0.12
    appeal_after_late: Fraction = 0.1
    #: share of appeals answered after the 30-day term
    appeal_late_rate: Fraction = 0.07
    #: chance that an approved MFC applicant comes back for the result
    result_pickup_rate: Fraction = 0.6
    #: multiplier of every office wait
    wait_factor: Factor = 1.0
    #: demand on public holidays and Sundays, relative to a weekday
    holiday_factor: Factor = 0.35
    #: strength of the daily cycle: 1 = realistic (quiet nights), 0 = flat all day
    diurnal: Fraction = 1.0
    agencies: dict[str, AgencyKnobs] = msgspec.field(default_factory=dict)
    services: dict[str, ServiceKnobs] = msgspec.field(default_factory=dict)
    offices: dict[str, OfficeKnobs] = msgspec.field(default_factory=dict)
    peaks: list[Peak] = msgspec.field(default_factory=list)

    def check(self, catalog: Catalog, source: str = "<scenario>") -> None:
        """Raise :class:`ScenarioError` naming every code the catalog does not know."""
        problems: list[str] = []
        for code in self.agencies:
            if code not in catalog.agencies:
                problems.append(f"agencies.{code}: unknown agency {code!r}")
        for code, knobs in self.services.items():
            idx = catalog.services.get(code)
            if idx is None:
                problems.append(f"services.{code}: unknown service {code!r}")
                continue
            for step, sk in knobs.steps.items():
                if step not in idx.step_codes:
                    problems.append(
                        f"services.{code}.steps.{step}: unknown step {step!r} of {code!r}"
                    )
                if sk.error_code is not None and not _CODE.match(sk.error_code):
                    problems.append(
                        f"services.{code}.steps.{step}.error_code: {sk.error_code!r} is not "
                        "a code (A-Z a-z 0-9 . _ -, at most 64)"
                    )
        for code in self.offices:
            if code not in catalog.offices:
                problems.append(f"offices.{code}: unknown office {code!r}")
        for i, peak in enumerate(self.peaks):
            for name, value in (("start", peak.start), ("end", peak.end)):
                if not _DAY.match(value):
                    problems.append(f"peaks[{i}].{name}: {value!r} is not YYYY-MM-DD or MM-DD")
            if len(peak.start) != len(peak.end):
                problems.append(f"peaks[{i}]: start and end must both be dates or both MM-DD")
            for code in peak.services:
                if code not in catalog.services:
                    problems.append(f"peaks[{i}].services: unknown service {code!r}")
            for code in peak.agencies:
                if code not in catalog.agencies:
                    problems.append(f"peaks[{i}].agencies: unknown agency {code!r}")
        if problems:
            raise ScenarioError(f"{source}: " + "; ".join(problems))


DEFAULT_SCENARIO: Final = Scenario()


def scenarios_dir() -> Path:
    """The folder of the example scenarios that ship with the simulator."""
    return Path(str(resources.files("producers.simulator") / "scenarios"))


def shipped_scenarios() -> list[str]:
    """Names of the shipped scenarios (``--scenario NAME`` finds them)."""
    return sorted(p.stem for p in scenarios_dir().glob("*.yaml"))


def load_scenario(path_or_name: str | Path, catalog: Catalog | None = None) -> Scenario:
    """Load a scenario from a YAML file, or a shipped one by name (``failing-step``).

    Raises:
        ScenarioError: the file is missing, not valid YAML, has unknown keys or wrong
            values (the message names the path inside the file), or names codes the
            catalog does not know.
    """
    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        shipped = scenarios_dir() / f"{path_or_name}.yaml"
        if shipped.exists():
            path = shipped
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(shipped_scenarios())
        raise ScenarioError(
            f"cannot read scenario {str(path_or_name)!r}: {exc.strerror}; "
            f"shipped scenarios: {known}"
        ) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    try:
        scenario = msgspec.convert(data, Scenario, strict=False)
    except msgspec.ValidationError as exc:
        msg, sep, where = str(exc).rpartition(" - at `$")
        detail = f"{where.rstrip('`').lstrip('.') or 'top level'}: {msg}" if sep else str(exc)
        raise ScenarioError(f"{path}: {detail}") from exc
    if catalog is not None:
        scenario.check(catalog, str(path))
    return scenario
