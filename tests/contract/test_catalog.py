"""Unit tests of the service catalog: the demo file, the loader's errors, event checks."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.catalog import OTHER, Catalog, demo_catalog_path
from contract.errors import CatalogError
from contract.events import Channel, Event, Reason, decode_event

CITY_DISTRICTS = (
    "Калининский",
    "Курчатовский",
    "Ленинский",
    "Металлургический",
    "Советский",
    "Тракторозаводский",
    "Центральный",
)
REQUIRED_SITUATIONS = (
    "Многодетная семья",
    "Выход на пенсию",
    "Замена и восстановление документов",
    "Переезд в другой регион",
)
SOURCE = "broken.yaml"


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return Catalog.from_file(demo_catalog_path())


@pytest.fixture(scope="module")
def demo_raw() -> dict[str, Any]:
    data = yaml.safe_load(demo_catalog_path().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture
def raw(demo_raw: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the demo YAML document, safe to mutate."""
    return copy.deepcopy(demo_raw)


def _load(data: dict[str, Any]) -> Catalog:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: quicker, same text
    text = yaml.dump(data, Dumper=dumper, allow_unicode=True, sort_keys=False)
    return Catalog.from_text(text, SOURCE)


# -- the demo catalog ------------------------------------------------------------------


def test_demo_region(demo: Catalog) -> None:
    region = demo.file.region
    assert (region.code, region.name) == ("74", "Челябинская область")
    assert demo.timezone == "Asia/Yekaterinburg"
    assert demo.tz.key == "Asia/Yekaterinburg"


def test_demo_round_trips_through_yaml(raw: dict[str, Any], demo: Catalog) -> None:
    # the tests below build broken files this way, so the unbroken one must load too
    assert _load(raw).file == demo.file


def test_demo_agencies(demo: Catalog) -> None:
    assert len(demo.agencies) >= 8
    assert "mfc" in demo.agencies
    assert "МФЦ" in demo.agencies["mfc"].short_name
    assert {"minsoc", "minobr", "zags"} <= set(demo.agencies)
    assert all(a.name for a in demo.agencies.values())


def test_demo_counterparts(demo: Catalog) -> None:
    codes = {c.code for c in demo.file.counterparts}
    assert {"fns", "sfr", "mvd", "rosreestr", "fssp"} <= codes
    assert all(c.name for c in demo.file.counterparts)
    assert not codes & set(demo.agencies)  # federal bodies are not measured agencies


def test_demo_municipalities(demo: Catalog) -> None:
    munis = demo.file.municipalities
    assert all(len(m.oktmo) == 8 and m.oktmo.startswith("75") for m in munis)
    kinds = {m.kind for m in munis}
    assert {"urban_okrug", "city_district"} <= kinds
    by_name = {m.name: m for m in munis}
    assert by_name["Челябинский городской округ"].oktmo == "75701000"
    assert by_name["Магнитогорский городской округ"].oktmo == "75738000"
    assert by_name["Златоустовский городской округ"].oktmo == "75712000"
    assert by_name["Миасский городской округ"].oktmo == "75742000"
    assert by_name["Копейский городской округ"].oktmo == "75728000"
    # every district and okrug of the region: 16 urban okrugs and 27 former districts
    assert sum(m.kind == "urban_okrug" for m in munis) == 16
    assert sum(m.kind in ("municipal_district", "municipal_okrug") for m in munis) == 27


def test_demo_chelyabinsk_city_districts(demo: Catalog) -> None:
    districts = [m for m in demo.file.municipalities if m.kind == "city_district"]
    assert len(districts) == 7
    assert all(m.oktmo.startswith("75701") and m.oktmo != "75701000" for m in districts)
    for name in CITY_DISTRICTS:
        assert sum(m.name.startswith(name) for m in districts) == 1, name
    assert all(m.population > 100_000 for m in districts)
    # the okrug itself carries no population, so the region total counts the city once
    assert demo.municipalities["75701000"].population == 0


def test_demo_population_is_realistic(demo: Catalog) -> None:
    total = sum(m.population for m in demo.file.municipalities)
    assert 3_200_000 < total < 3_600_000
    city = sum(m.population for m in demo.file.municipalities if m.oktmo.startswith("75701"))
    assert 1_100_000 < city < 1_300_000


def test_demo_mfc_offices(demo: Catalog) -> None:
    mfc = [o for o in demo.file.offices if o.agency == "mfc"]
    assert len(mfc) >= 20
    assert len({o.municipality for o in mfc}) == len(mfc)  # one per municipality
    assert all(4 <= o.windows <= 30 for o in mfc)
    in_chelyabinsk = [o for o in mfc if o.municipality.startswith("75701")]
    assert len(in_chelyabinsk) >= 3
    for oktmo in ("75738000", "75712000", "75742000", "75728000", "75743000", "75752000"):
        assert any(o.municipality == oktmo for o in mfc), oktmo


def test_demo_services(demo: Catalog) -> None:
    services = demo.file.services
    assert len(services) >= 30
    for s in services:
        assert 3 <= len(s.steps) <= 7, s.code
        assert 2 <= len(s.errors) <= 4, s.code
        assert 2 <= len(s.reasons) <= 4, s.code
        assert s.channels, s.code
        assert 0.2 <= s.demand <= 5.0, s.code
        assert 60 <= s.abandon_after.total_seconds() <= 2 * 3600, s.code
    proactive = [s.code for s in services if Channel.PROACTIVE in s.channels]
    assert len(proactive) >= 2
    agencies_with_services = {s.agency for s in services}
    assert len(agencies_with_services) >= 8


def test_demo_deadline_kinds_are_mixed(demo: Catalog) -> None:
    kinds = [s.deadline.kind for s in demo.file.services]
    assert kinds.count("working_days") >= 10
    assert kinds.count("calendar_days") >= 2
    assert 2 <= kinds.count("hours") <= 3
    hours = next(s for s in demo.file.services if s.deadline.kind == "hours")
    assert hours.deadline.describe().endswith(" ч")


def test_demo_demand_favours_families(demo: Catalog) -> None:
    mean = sum(s.demand for s in demo.file.services) / len(demo.file.services)
    for code in ("school_enrolment", "kindergarten_queue", "housing_subsidy", "third_child_edv"):
        assert demo.services[code].service.demand > mean, code


def test_demo_life_situations(demo: Catalog) -> None:
    situations = demo.file.life_situations
    assert len(situations) >= 6
    names = {ls.name for ls in situations}
    for name in REQUIRED_SITUATIONS:
        assert name in names
    assert sum(ls.regional for ls in situations) >= 2
    for ls in situations:
        assert 2 <= len(ls.services) <= 5, ls.code
        assert all(code in demo.services for code in ls.services)


def test_demo_calendar(demo: Catalog) -> None:
    assert demo.years == {2026, 2027}
    for year in demo.file.calendar:
        assert year.source
        assert all(d.weekday() < 5 for d in year.holidays), year.year
        assert all(d.weekday() >= 5 for d in year.working_weekends), year.year
    y2027 = next(y for y in demo.file.calendar if y.year == 2027)
    assert "112" in y2027.source


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 1, 9), False),  # moved from Saturday 3 January
        (date(2026, 1, 12), True),
        (date(2026, 2, 23), False),
        (date(2026, 3, 9), False),  # 8 March falls on a Sunday
        (date(2026, 3, 10), True),
        (date(2026, 5, 11), False),  # 9 May falls on a Saturday
        (date(2026, 3, 14), False),  # an ordinary Saturday
        (date(2026, 3, 15), False),  # an ordinary Sunday
        (date(2026, 12, 31), False),  # moved from Sunday 4 January
        (date(2027, 5, 3), False),  # 1 May 2027 is a Saturday
        (date(2027, 5, 4), True),
        (date(2027, 6, 14), False),  # 12 June 2027 is a Saturday
        (date(2028, 3, 8), True),  # outside the calendar: Monday to Friday work
    ],
)
def test_is_working_day(demo: Catalog, day: date, working: bool) -> None:
    assert demo.is_working_day(day) is working


def test_working_weekend_is_working(raw: dict[str, Any]) -> None:
    raw["calendar"][0]["working_weekends"] = [date(2026, 3, 14)]
    catalog = _load(raw)
    assert catalog.is_working_day(date(2026, 3, 14)) is True
    assert catalog.is_working_day(date(2026, 3, 21)) is False


# -- broken files ---------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _duplicate_service(data: dict[str, Any]) -> None:
    data["services"][1]["code"] = data["services"][0]["code"]


def _delete_services(data: dict[str, Any]) -> None:
    del data["services"]


BROKEN: list[tuple[str, Mutation, tuple[str, ...]]] = [
    ("missing-key", _delete_services, ("services",)),
    (
        "unknown-agency",
        _set(("services", 0, "agency"), "minfin"),
        ("services[0].agency", "unknown agency", "'minfin'"),
    ),
    ("duplicate-service", _duplicate_service, ("services[1]", "duplicate code")),
    (
        "two-deadline-kinds",
        _set(("services", 2, "deadline"), {"working_days": 5, "hours": 48}),
        ("services[2].deadline", "exactly one"),
    ),
    (
        "no-deadline-kind",
        _set(("services", 2, "deadline"), {}),
        ("services[2].deadline", "exactly one"),
    ),
    (
        "deadline-wrong-type",
        _set(("services", 0, "deadline"), {"working_days": "ten"}),
        ("services[0].deadline.working_days", "int"),
    ),
    (
        "unknown-life-situation-service",
        _set(("life_situations", 3, "services", 1), "no_such_service"),
        ("life_situations[3].services[1]", "unknown service", "'no_such_service'"),
    ),
    (
        "office-unknown-municipality",
        _set(("offices", 0, "municipality"), "75999000"),
        ("offices[0].municipality", "'75999000'"),
    ),
    (
        "office-unknown-agency",
        _set(("offices", 1, "agency"), "mfc2"),
        ("offices[1].agency", "unknown agency", "'mfc2'"),
    ),
    (
        "unknown-time-zone",
        _set(("region", "timezone"), "Asia/Chelyabinsk"),
        ("region.timezone", "'Asia/Chelyabinsk'"),
    ),
    (
        "holiday-outside-year",
        _set(("calendar", 0, "holidays", 0), date(2025, 12, 31)),
        ("calendar[0]", "2025-12-31"),
    ),
    (
        "working-weekend-on-weekday",
        _set(("calendar", 0, "working_weekends"), [date(2026, 3, 10)]),
        ("calendar[0].working_weekends", "2026-03-10"),
    ),
    (
        "unknown-field",
        _set(("agencies", 0, "inn"), "7451000000"),
        ("agencies[0]", "inn"),
    ),
    ("bad-code", _set(("services", 0, "code"), "жильё"), ("services[0].code",)),
    # every code is shown by its name (dashboards, reports): a blank name is refused
    (
        "blank-agency-name",
        _set(("agencies", 0, "name"), ""),
        ("agencies[0].name", "empty name of agency"),
    ),
    (
        "blank-municipality-name",
        _set(("municipalities", 4, "name"), " "),
        ("municipalities[4].name", "empty name of municipality"),
    ),
    (
        "blank-office-name",
        _set(("offices", 2, "name"), ""),
        ("offices[2].name", "empty name of office"),
    ),
    (
        "blank-service-name",
        _set(("services", 3, "name"), ""),
        ("services[3].name", "empty name of service"),
    ),
    (
        "blank-step-name",
        _set(("services", 1, "steps", 2, "name"), "  "),
        ("services[1].steps[2].name", "empty name of step", "of service"),
    ),
    (
        "blank-error-name",
        _set(("services", 0, "errors", 1, "name"), ""),
        ("services[0].errors[1].name", "empty name of error code"),
    ),
    (
        "blank-life-situation-name",
        _set(("life_situations", 0, "name"), "\t"),
        ("life_situations[0].name", "empty name of life situation"),
    ),
    (
        "blank-counterpart-name",
        _set(("counterparts", 0, "name"), ""),
        ("counterparts[0].name", "empty name of counterpart"),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN]
)
def test_broken_file_names_the_field(
    raw: dict[str, Any], mutate: Mutation, expected: tuple[str, ...]
) -> None:
    mutate(raw)
    with pytest.raises(CatalogError) as err:
        _load(raw)
    message = str(err.value)
    assert message.startswith(f"{SOURCE}: ")
    for part in expected:
        assert part in message


def test_catalog_check_refuses_a_blank_step_name(raw: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from servicepulse.cli import app

    service = raw["services"][1]
    service["steps"][0]["name"] = ""
    path = tmp_path / "blank.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["catalog", "check", str(path)], terminal_width=300)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())  # the console wraps long lines
    step, code = service["steps"][0]["code"], service["code"]
    assert f"services[1].steps[0].name: empty name of step {step!r} of service {code!r}" in output


def test_not_yaml() -> None:
    with pytest.raises(CatalogError, match=r"^broken\.yaml: not valid YAML"):
        Catalog.from_text("version: 1\nregion: [unclosed\n", SOURCE)


@pytest.mark.parametrize("text", ["- version\n- 1\n", "just a string\n", ""])
def test_top_level_not_a_mapping(text: str) -> None:
    with pytest.raises(CatalogError, match=r"^broken\.yaml: .*mapping at top level"):
        Catalog.from_text(text, SOURCE)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(CatalogError, match="cannot read catalog") as err:
        Catalog.from_file(path)
    assert str(path) in str(err.value)


def test_all_problems_reported_at_once(raw: dict[str, Any]) -> None:
    raw["services"][0]["agency"] = "minfin"
    raw["offices"][0]["municipality"] = "75999000"
    with pytest.raises(CatalogError) as err:
        _load(raw)
    assert "services[0].agency" in str(err.value)
    assert "offices[0].municipality" in str(err.value)


# -- checking events against the catalog ------------------------------------------------


def _event(**fields: Any) -> Event:
    body: dict[str, Any] = {
        "event_id": "0b1e4c2a-5f9d-4c51-9a8e-2f6c8d7e1a3b",
        "type": "journey.step",
        "schema_version": 1,
        "occurred_at": "2026-03-10T10:15:00+05:00",
        "agency": "minsoc",
        "municipality": "75701310",
        "channel": "portal",
        "service": "housing_subsidy",
        "journey": "j-0001",
        "attrs": {"step": "income"},
    }
    body.update(fields)
    for key in [k for k, v in body.items() if v is None]:
        del body[key]
    event = decode_event(json.dumps(body))
    assert isinstance(event, Event), event
    return event


def _visit(**fields: Any) -> Event:
    """A visit.served event at an MFC office (no service, no journey)."""
    body: dict[str, Any] = {
        "type": "visit.served",
        "agency": "mfc",
        "service": None,
        "journey": None,
        "channel": "mfc",
        "municipality": "75738000",
        "attrs": {"office": "mfc-magn", "wait_seconds": 420},
    }
    body.update(fields)
    return _event(**body)


def test_valid_events_have_no_problems(demo: Catalog) -> None:
    assert demo.check(_event()) == []
    assert demo.check(_visit()) == []
    started = _event(
        type="journey.started",
        attrs=None,
        agency="zags",
        service="zags_birth",
        life_situation="child_birth",
    )
    assert demo.check(started) == []


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        (lambda: _visit(agency="minfin"), "agency", Reason.UNKNOWN_AGENCY),
        (lambda: _event(agency="minobr"), "service", Reason.SERVICE_NOT_OWNED),
        (lambda: _event(service="no_such_service"), "service", Reason.UNKNOWN_SERVICE),
        (lambda: _event(attrs={"step": "payment"}), "attrs.step", Reason.UNKNOWN_STEP),
        (
            lambda: _visit(attrs={"office": "mfc-mars", "wait_seconds": 60}),
            "attrs.office",
            Reason.UNKNOWN_OFFICE,
        ),
        (lambda: _event(municipality="75999000"), "municipality", Reason.UNKNOWN_MUNICIPALITY),
        (
            lambda: _event(life_situation="lottery_win"),
            "life_situation",
            Reason.UNKNOWN_LIFE_SITUATION,
        ),
        (
            lambda: _event(
                type="interagency.requested", attrs={"request": "r-1", "counterpart": "nasa"}
            ),
            "attrs.counterpart",
            Reason.UNKNOWN_AGENCY,
        ),
    ],
    ids=[
        "unknown-agency",
        "service-not-owned",
        "unknown-service",
        "unknown-step",
        "unknown-office",
        "unknown-municipality",
        "unknown-life-situation",
        "unknown-counterpart",
    ],
)
def test_check_reports_the_problem(
    demo: Catalog, event: Callable[[], Event], field: str, reason: Reason
) -> None:
    problems = demo.check(event())
    assert [(p.field, p.reason) for p in problems] == [(field, reason)]
    assert problems[0].message


def test_federal_counterpart_is_known(demo: Catalog) -> None:
    event = _event(type="interagency.requested", attrs={"request": "r-1", "counterpart": "fns"})
    assert demo.check(event) == []


def test_error_code_maps_unknown_codes_to_other(demo: Catalog) -> None:
    assert demo.error_code("housing_subsidy", "esia_timeout") == "esia_timeout"
    assert demo.error_code("housing_subsidy", "quantum_flux") == OTHER
    assert demo.error_code("housing_subsidy", None) == OTHER
    assert demo.error_code("no_such_service", "esia_timeout") == OTHER
    # a code known to another service is still "other" for this one
    assert demo.error_code("doctor_appointment", "upload_failed") == OTHER
    assert OTHER == "other"
