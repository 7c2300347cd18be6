"""The service catalog (DESIGN.md section 4): loading, consistency checks, event checks.

The catalog is one YAML file. It bounds every metric label: agencies, services, steps,
municipalities, offices, error codes and life situations all come from it. A broken file
fails loudly with the path inside the file (``services[3].deadline``) and what is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from contract.errors import CatalogError
from contract.events import CHANNEL_NAMES as CHANNEL_NAMES  # re-exported: one definition
from contract.events import Channel, Event, EventType, Problem, Reason
from contract.personal import shown

_T = TypeVar("_T")
#: libyaml's safe loader (in PyYAML's wheels), six times quicker than the pure-Python one
#: on the demo catalog; the same documents either way.
_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_ABANDON_AFTER: Final = timedelta(minutes=30)
OTHER: Final = "other"
#: Channels whose journeys fill a form with the catalog's steps (self-service): only their
#: journeys have funnels, skipped steps and a timeout abandonment.
FORM_CHANNELS: Final = frozenset({"portal", "mobile"})
#: event types as module constants: :meth:`Catalog.check` runs per event, and an enum
#: class attribute costs about 100 ns
_VISIT: Final = EventType.VISIT_SERVED
_INTERAGENCY: Final = frozenset({EventType.INTERAGENCY_REQUESTED, EventType.INTERAGENCY_RESPONDED})

_code = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Named(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A code with its Russian name (error codes, rejection reasons, steps, counterparts)."""

    code: _code
    name: str


class Deadline(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A legal term: exactly one of calendar days, working days or hours."""

    calendar_days: Annotated[int, msgspec.Meta(ge=1, le=366)] | None = None
    working_days: Annotated[int, msgspec.Meta(ge=1, le=366)] | None = None
    hours: Annotated[int, msgspec.Meta(ge=1, le=8784)] | None = None

    @property
    def kind(self) -> Literal["calendar_days", "working_days", "hours"]:
        """Which of the three the term is."""
        if self.calendar_days is not None:
            return "calendar_days"
        if self.working_days is not None:
            return "working_days"
        return "hours"

    @property
    def amount(self) -> int:
        """The number of days or hours."""
        value = self.calendar_days or self.working_days or self.hours
        assert value is not None  # noqa: S101 - checked when the catalog loads
        return value

    def describe(self) -> str:
        """Russian wording, as in an administrative regulation."""
        words = {"calendar_days": "календ. дн.", "working_days": "раб. дн.", "hours": "ч"}
        return f"{self.amount} {words[self.kind]}"


class Agency(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An executive body or institution whose services are measured."""

    code: _code
    name: str
    short_name: str = ""

    @property
    def display_name(self) -> str:
        """The name pages, reports and label values show: the short one when there is one."""
        return self.short_name or self.name


class Municipality(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A municipal district, okrug, urban okrug or city district, by OKTMO code."""

    oktmo: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8,11}$")]
    name: str
    kind: Literal["urban_okrug", "municipal_district", "municipal_okrug", "city_district"]
    population: Annotated[int, msgspec.Meta(ge=0)] = 0


class Office(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A place where citizens are served in person (an MFC office or an agency office)."""

    code: _code
    name: str
    municipality: str
    agency: _code = "mfc"
    windows: Annotated[int, msgspec.Meta(ge=1)] = 4


class Service(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One public service: its owner, the ordered steps of its form, its legal term."""

    code: _code
    name: str
    agency: _code
    steps: list[Named]
    deadline: Deadline
    abandon_after: timedelta = DEFAULT_ABANDON_AFTER
    channels: list[Channel] = msgspec.field(
        default_factory=lambda: [Channel.PORTAL, Channel.MOBILE, Channel.MFC]
    )
    errors: list[Named] = msgspec.field(default_factory=list)
    reasons: list[Named] = msgspec.field(default_factory=list)
    #: relative demand weight used by the traffic simulator
    demand: Annotated[float, msgspec.Meta(ge=0)] = 1.0


class LifeSituation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A life event that bundles several services into one case."""

    code: _code
    name: str
    services: list[_code]
    regional: bool = False


class CalendarYear(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The production calendar of one year: non-working holidays and working weekends."""

    year: Annotated[int, msgspec.Meta(ge=2000, le=2100)]
    holidays: list[date]
    working_weekends: list[date] = msgspec.field(default_factory=list)
    source: str = ""


class Region(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The region the catalog describes."""

    code: str
    name: str
    timezone: str = "Asia/Yekaterinburg"


class CatalogFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The YAML document, as written. Use :class:`Catalog` for lookups."""

    version: Literal[1]
    region: Region
    agencies: list[Agency]
    municipalities: list[Municipality]
    offices: list[Office]
    services: list[Service]
    life_situations: list[LifeSituation]
    calendar: list[CalendarYear]
    counterparts: list[Named] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServiceIndex:
    """Fast lookups for one service, built once at load."""

    service: Service
    step_codes: frozenset[str]
    step_order: dict[str, int]
    error_codes: frozenset[str]
    reason_codes: frozenset[str]
    abandon_after_s: float


@dataclass(frozen=True)
class Catalog:
    """A loaded, consistent catalog with indexes for the hot path.

    Construct with :func:`load_catalog` or :meth:`from_file`.
    """

    file: CatalogFile
    source: str
    agencies: dict[str, Agency] = field(init=False)
    municipalities: dict[str, Municipality] = field(init=False)
    offices: dict[str, Office] = field(init=False)
    services: dict[str, ServiceIndex] = field(init=False)
    life_situations: dict[str, LifeSituation] = field(init=False)
    counterparts: frozenset[str] = field(init=False)
    holidays: frozenset[date] = field(init=False)
    working_weekends: frozenset[date] = field(init=False)
    years: frozenset[int] = field(init=False)
    tz: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        f = self.file
        setattr_ = object.__setattr__
        setattr_(self, "agencies", _unique(f.agencies, "agencies", lambda a: a.code, self.source))
        setattr_(
            self,
            "municipalities",
            _unique(f.municipalities, "municipalities", lambda m: m.oktmo, self.source),
        )
        setattr_(self, "offices", _unique(f.offices, "offices", lambda o: o.code, self.source))
        services = _unique(f.services, "services", lambda s: s.code, self.source)
        setattr_(
            self,
            "services",
            {
                code: ServiceIndex(
                    service=s,
                    step_codes=frozenset(st.code for st in s.steps),
                    step_order={st.code: i for i, st in enumerate(s.steps)},
                    error_codes=frozenset(e.code for e in s.errors),
                    reason_codes=frozenset(r.code for r in s.reasons),
                    abandon_after_s=s.abandon_after.total_seconds(),
                )
                for code, s in services.items()
            },
        )
        setattr_(
            self,
            "life_situations",
            _unique(f.life_situations, "life_situations", lambda x: x.code, self.source),
        )
        setattr_(
            self,
            "counterparts",
            frozenset(self.agencies) | frozenset(c.code for c in f.counterparts),
        )
        setattr_(self, "holidays", frozenset(d for y in f.calendar for d in y.holidays))
        setattr_(
            self, "working_weekends", frozenset(d for y in f.calendar for d in y.working_weekends)
        )
        setattr_(self, "years", frozenset(y.year for y in f.calendar))
        try:
            setattr_(self, "tz", ZoneInfo(f.region.timezone))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CatalogError(
                f"{self.source}: region.timezone: unknown time zone {f.region.timezone!r}"
            ) from exc
        self._check_references()

    def _check_references(self) -> None:
        problems: list[str] = []
        for i, s in enumerate(self.file.services):
            if s.agency not in self.agencies:
                problems.append(f"services[{i}].agency: unknown agency {s.agency!r} of {s.code!r}")
            kinds = sum(
                v is not None
                for v in (s.deadline.calendar_days, s.deadline.working_days, s.deadline.hours)
            )
            if kinds != 1:
                problems.append(
                    f"services[{i}].deadline: give exactly one of calendar_days, "
                    f"working_days, hours (service {s.code!r})"
                )
            if not s.steps:
                problems.append(f"services[{i}].steps: service {s.code!r} has no steps")
            if len({st.code for st in s.steps}) != len(s.steps):
                problems.append(f"services[{i}].steps: duplicate step code in {s.code!r}")
            if s.abandon_after <= timedelta(0):
                problems.append(f"services[{i}].abandon_after: must be positive")
        for i, o in enumerate(self.file.offices):
            if o.municipality not in self.municipalities:
                problems.append(f"offices[{i}].municipality: unknown OKTMO {o.municipality!r}")
            if o.agency not in self.agencies:
                problems.append(f"offices[{i}].agency: unknown agency {o.agency!r} of {o.code!r}")
        for i, ls in enumerate(self.file.life_situations):
            for j, code in enumerate(ls.services):
                if code not in self.services:
                    problems.append(f"life_situations[{i}].services[{j}]: unknown service {code!r}")
        for i, y in enumerate(self.file.calendar):
            for d in (*y.holidays, *y.working_weekends):
                if d.year != y.year:
                    problems.append(f"calendar[{i}]: date {d} is not in year {y.year}")
            for d in y.working_weekends:
                if d.weekday() < 5:
                    problems.append(f"calendar[{i}].working_weekends: {d} is not a weekend day")
        problems.extend(self._blank_names())
        if problems:
            raise CatalogError(f"{self.source}: " + "; ".join(problems))

    def _blank_names(self) -> list[str]:
        """Entries whose Russian name is empty (or only spaces): dashboards, reports and web
        pages show every code by its name, so a blank one would show as nothing."""
        f = self.file
        named: list[tuple[str, str, str]] = [("region", f"region {f.region.code!r}", f.region.name)]
        named += [
            (f"agencies[{i}]", f"agency {a.code!r}", a.name) for i, a in enumerate(f.agencies)
        ]
        named += [
            (f"municipalities[{i}]", f"municipality {m.oktmo!r}", m.name)
            for i, m in enumerate(f.municipalities)
        ]
        named += [(f"offices[{i}]", f"office {o.code!r}", o.name) for i, o in enumerate(f.offices)]
        for i, s in enumerate(f.services):
            named.append((f"services[{i}]", f"service {s.code!r}", s.name))
            for kind, what in (("steps", "step"), ("errors", "error code"), ("reasons", "reason")):
                items: list[Named] = getattr(s, kind)
                named += [
                    (
                        f"services[{i}].{kind}[{j}]",
                        f"{what} {x.code!r} of service {s.code!r}",
                        x.name,
                    )
                    for j, x in enumerate(items)
                ]
        named += [
            (f"life_situations[{i}]", f"life situation {ls.code!r}", ls.name)
            for i, ls in enumerate(f.life_situations)
        ]
        named += [
            (f"counterparts[{i}]", f"counterpart {c.code!r}", c.name)
            for i, c in enumerate(f.counterparts)
        ]
        return [
            f"{path}.name: empty name of {what} (every code is shown by its Russian name)"
            for path, what, name in named
            if not name.strip()
        ]

    # -- lookups ---------------------------------------------------------------------

    @property
    def timezone(self) -> str:
        """IANA name of the region's time zone: day boundaries of every rollup."""
        return self.file.region.timezone

    @property
    def calendar_until(self) -> date | None:
        """The last day the production calendar covers (``None`` without a calendar).

        Deadlines after it are computed with Monday to Friday as working days; the
        processor counts them (``servicepulse_deadlines_beyond_calendar_total``).
        """
        return date(max(self.years), 12, 31) if self.years else None

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` is a working day by the production calendar.

        Outside the years the calendar covers, Monday to Friday are working days.
        """
        if day in self.working_weekends:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def error_code(self, service: str, code: str | None) -> str:
        """The catalog error code, or ``"other"`` for one the catalog does not know."""
        idx = self.services.get(service)
        if code is None or idx is None or code not in idx.error_codes:
            return OTHER
        return code

    def check(self, event: Event) -> list[Problem]:
        """Problems of an otherwise valid event against this catalog (empty if none).

        Unknown error or rejection-reason codes are not problems: they are counted as
        ``other``, so an agency adding a code does not lose its events.
        """
        problems: list[Problem] = []
        if event.agency not in self.agencies:
            problems.append(
                Problem("agency", Reason.UNKNOWN_AGENCY, f"unknown agency {shown(event.agency)}")
            )
        if event.municipality not in self.municipalities:
            problems.append(
                Problem(
                    "municipality",
                    Reason.UNKNOWN_MUNICIPALITY,
                    f"unknown municipality (OKTMO) {shown(event.municipality)}",
                )
            )
        svc = None
        if event.service is not None:
            svc = self.services.get(event.service)
            if svc is None:
                problems.append(
                    Problem(
                        "service", Reason.UNKNOWN_SERVICE, f"unknown service {shown(event.service)}"
                    )
                )
            elif svc.service.agency != event.agency and event.type is not _VISIT:
                # an MFC office serves other agencies' services: a visit names the service
                # it was for, whoever owns it
                problems.append(
                    Problem(
                        "service",
                        Reason.SERVICE_NOT_OWNED,
                        f"service {shown(event.service)} belongs to agency "
                        f"{shown(svc.service.agency)}, "
                        f"not {shown(event.agency)}",
                    )
                )
        if event.life_situation is not None and event.life_situation not in self.life_situations:
            problems.append(
                Problem(
                    "life_situation",
                    Reason.UNKNOWN_LIFE_SITUATION,
                    f"unknown life situation {shown(event.life_situation)}",
                )
            )
        attrs = event.attrs
        if attrs.step is not None and svc is not None and attrs.step not in svc.step_codes:
            problems.append(
                Problem(
                    "attrs.step",
                    Reason.UNKNOWN_STEP,
                    f"unknown step {shown(attrs.step)} of service {shown(event.service or '')}",
                )
            )
        if attrs.office is not None and attrs.office not in self.offices:
            problems.append(
                Problem(
                    "attrs.office", Reason.UNKNOWN_OFFICE, f"unknown office {shown(attrs.office)}"
                )
            )
        if (
            event.type in _INTERAGENCY
            and attrs.counterpart is not None
            and attrs.counterpart not in self.counterparts
        ):
            problems.append(
                Problem(
                    "attrs.counterpart",
                    Reason.UNKNOWN_AGENCY,
                    f"unknown counterpart agency {shown(attrs.counterpart)}",
                )
            )
        return problems

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        """Load and check a catalog file. Raises :class:`CatalogError`."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"cannot read catalog {str(p)!r}: {exc.strerror}") from exc
        return cls.from_text(text, str(p))

    @classmethod
    def from_text(cls, text: str, source: str = "<catalog>") -> Catalog:
        """Parse and check catalog YAML. Raises :class:`CatalogError`."""
        try:
            data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            raise CatalogError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise CatalogError(f"{source}: the catalog must be a YAML mapping at top level")
        try:
            parsed = msgspec.convert(data, CatalogFile, strict=False)
        except msgspec.ValidationError as exc:
            raise CatalogError(f"{source}: {_humanise(str(exc))}") from exc
        return cls(parsed, source)


def _humanise(msg: str) -> str:
    text, sep, path = msg.rpartition(" - at `$")
    if not sep:
        return msg
    return f"{path.rstrip('`').lstrip('.') or 'top level'}: {text}"


def _unique(items: Iterable[_T], what: str, key: Callable[[_T], str], source: str) -> dict[str, _T]:
    out: dict[str, _T] = {}
    for i, item in enumerate(items):
        k = key(item)
        if k in out:
            raise CatalogError(f"{source}: {what}[{i}]: duplicate code {k!r}")
        out[k] = item
    return out


DEMO_CATALOG: Final = "chelyabinsk.yaml"


def demo_catalog_path() -> Path:
    """Path of the demo catalog for the Chelyabinsk region that ships with the project."""
    return Path(str(resources.files("contract") / "data" / DEMO_CATALOG))


@functools.lru_cache(maxsize=8)
def load_catalog(path: str | None = None) -> Catalog:
    """Load a catalog by path (``None``: the demo catalog); cached per path."""
    return Catalog.from_file(path or demo_catalog_path())
