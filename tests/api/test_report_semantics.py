"""Issue 14 in the report and the scorecard: what inspectors see means what it says.

Funnels per channel with form steps, cases per life situation (counted once across
agencies), restated days counted as days with what changed, local times. A read model is
fed aggregate records directly (no broker).
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from api.readmodel import ReadModel
from api.report_render import render_html
from api.reports import Report, build_report
from api.scorecard import Scorer
from contract import aggregates as agg
from contract.aggregates import Hist, Restatement, RestatementEntry, Rollup, RollupKey
from contract.catalog import load_catalog
from contract.methodology import load_methodology
from contract.settings import CommonSettings
from contract.topics import Topics

CATALOG = load_catalog()
METHODOLOGY = load_methodology()
SERVICE = "large_family_status"


def _model() -> ReadModel:
    return ReadModel(CommonSettings(), Topics("unit"), CATALOG)


def _put(m: ReadModel, day: str, channel: str, r: Rollup, ls: str = "", p: int = 0) -> None:
    key = RollupKey(p, day, agg.Dims("minsoc", SERVICE, "75701000", channel, ls)).encode()
    with m.lock:
        m.apply_aggregate(key, agg.encode(r))


def _sample(m: ReadModel, name: str, labels: dict[str, str]) -> float | None:
    """One sample of the model's /metrics business families (None if absent)."""
    with m.lock:
        text = m.exposition.payload().decode()
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def _report(m: ReadModel) -> Report:
    return build_report(
        Scorer(m, CATALOG, METHODOLOGY),
        "region",
        None,
        date(2026, 11, 1),
        date(2026, 11, 30),
        datetime.fromisoformat("2026-11-30T20:30:00+00:00"),
    )


def test_funnels_are_per_channel_over_journeys_that_have_the_steps() -> None:
    m = _model()
    _put(m, "2026-11-02", "portal", Rollup(started=40, steps={"identity": 36, "family": 30}))
    _put(m, "2026-11-02", "mobile", Rollup(started=20, steps={"identity": 10}))
    # 500 MFC starts with no form steps must not make step 1 the "largest loss"
    _put(m, "2026-11-02", "mfc", Rollup(started=500, submitted=480))
    rep = _report(m)
    funnels = {f.channel: f for f in rep.funnels if f.service == SERVICE}
    assert set(funnels) == {"portal", "mobile"}
    assert funnels["portal"].started == 40
    assert funnels["portal"].steps[0].drop_off == 1 - 36 / 40
    assert funnels["mobile"].steps[0].drop_off == 1 - 10 / 20
    html = render_html(rep).decode()
    assert "мобильное приложение" in html and "шагов формы у них нет" in html


def test_cases_per_life_situation_in_scorecard_and_report() -> None:
    m = _model()
    h = Hist.empty("case_seconds")
    for _ in range(6):
        h.observe("case_seconds", 2 * 86400)
    _put(
        m,
        "2026-11-03",
        "portal",
        Rollup(started=10, cases_started=8, cases_completed=6, case_seconds=h),
        ls="large_family",
    )
    rep = _report(m)
    (row,) = rep.life_situations
    assert row.code == "large_family" and row.name == "Многодетная семья"
    assert (row.cases.started, row.cases.completed) == (8, 6)
    assert row.cases.mean_days == 2.0
    assert len(row.agencies) > 1  # a life situation spans agencies
    sc = Scorer(m, CATALOG, METHODOLOGY).scorecard(
        "life_situation", "large_family", date(2026, 11, 1), date(2026, 11, 30)
    )
    assert sc.cases is not None and sc.cases.completion == 6 / 8
    assert "Жизненные ситуации" in render_html(rep).decode()


def _restated(m: ReadModel, p: int, day: str, agency: str, fields: list[str]) -> None:
    rs = Restatement(
        count=2,
        first_at="2026-11-05T01:00:00+00:00",
        last_at="2026-11-05T20:10:00+00:00",
        recent=[RestatementEntry("2026-11-05T20:10:00+00:00", "journey.started", fields)],
    )
    with m.lock:
        m.apply_aggregate(agg.restatement_key(p, day, agency), agg.encode(rs))


def test_restatements_count_days_and_say_what_changed() -> None:
    m = _model()
    _put(m, "2026-11-02", "portal", Rollup(started=10))
    for agency in ("minsoc", "minobr", "minzdrav"):
        _restated(m, 0, "2026-11-02", agency, ["started", "events"])
    _restated(m, 1, "2026-11-03", "minsoc", ["decisions"])
    rep = _report(m)
    assert rep.restated_day_count == 2
    html = render_html(rep).decode()
    assert "Пересчитано после закрытия дней: 2" in html
    assert "начатые" in html and "решения" in html
    assert "дн. были пересчитаны" not in html


def test_report_times_are_in_the_region_time_zone() -> None:
    m = _model()
    _put(m, "2026-11-02", "portal", Rollup(started=10))
    rep = _report(m)
    assert rep.generated_at.isoformat() == "2026-12-01T01:30:00+05:00"
    html = render_html(rep).decode()
    assert "01.12.2026 01:30 (UTC+05:00)" in html
    assert " UTC<" not in html and "водяной знак" not in html


def test_deadlines_past_the_calendar_are_marked_in_the_report() -> None:
    m = _model()
    _put(m, "2026-11-02", "portal", Rollup(started=10))
    clean = _report(m)
    assert clean.summary.deadlines_beyond_calendar == 0
    assert "data-beyond-calendar" not in render_html(clean).decode()
    _put(m, "2026-11-03", "portal", Rollup(started=10, beyond_calendar=7))
    rep = _report(m)
    assert rep.summary.deadlines_beyond_calendar == 7
    assert rep.summary.calendar_until == CATALOG.calendar_until
    assert [s.code for s in rep.services if s.beyond_calendar] == [SERVICE]
    html = render_html(rep).decode()
    assert html.count("data-beyond-calendar") == 2  # the warning and the service's mark
    assert "заканчивается 31.12.2027" in html and "(7)" in html
    # below the small-cell threshold the count itself is hidden, the warning is not
    m2 = _model()
    _put(m2, "2026-11-03", "portal", Rollup(started=10, beyond_calendar=2))
    html2 = render_html(_report(m2)).decode()
    assert "data-beyond-calendar" in html2 and "(2)" not in html2


def test_case_end_to_end_time_per_life_situation_in_prometheus() -> None:
    m = _model()
    h = Hist.empty("case_seconds")
    for days in (1, 2, 40):
        h.observe("case_seconds", days * 86400)
    _put(m, "2026-11-03", "portal", Rollup(cases_completed=3, case_seconds=h), ls="large_family")
    ls = {"life_situation": "large_family"}

    def v(name: str, labels: dict[str, str]) -> float | None:
        return _sample(m, name, labels)

    assert v("servicepulse_case_duration_seconds_count", ls) == 3
    assert v("servicepulse_case_duration_seconds_bucket", {**ls, "le": "259200.0"}) == 2
    assert v("servicepulse_cases_completed_total", {"agency": "minsoc", **ls}) == 3


def test_published_figures_hide_small_cells_consistently() -> None:
    m = _model()
    # minsoc: 3 scores, all bad (a small cell); minobr: 10 scores, all good
    _put(m, "2026-11-02", "portal", Rollup(started=40, steps={"identity": 3}, feedback={"1": 3}))
    key = RollupKey(
        0, "2026-11-02", agg.Dims("minobr", "school_enrolment", "75701000", "portal", "")
    )
    with m.lock:
        m.apply_aggregate(key.encode(), agg.encode(Rollup(started=20, feedback={"5": 10})))
        m.apply_aggregate(
            agg.GaugeKey(0, agg.GaugeDims("minsoc", SERVICE, "75701000", "mfc")).encode(),
            agg.encode(agg.Gauges(pending=4, overdue=3)),
        )
    rep = _report(m)
    sat = next(c for c in rep.summary.components if c.code == "satisfaction")
    # the region is summed from the cells the agencies' rows show: 10 of 10, not 10 of 13
    assert (sat.numerator, sat.denominator) == (10, 10)
    assert rep.summary.hidden_small_cells == {"satisfaction": 1}
    minsoc = next(a for a in rep.agencies if a.code == "minsoc")
    assert next(c for c in minsoc.components if c.code == "satisfaction").suppressed
    funnel = next(f for f in rep.funnels if f.service == SERVICE)
    assert funnel.steps[0].reached is None and funnel.steps[0].drop_off is None
    (row,) = rep.overdue
    assert (row.pending, row.overdue) == (None, None)
    html = render_html(rep).decode()
    assert "Показатели региона рассчитаны без малых ячеек ведомств" in html


def test_offices_in_prometheus_and_the_report() -> None:
    m = _model()
    office = next(iter(CATALOG.offices))
    key = RollupKey(0, "2026-11-02", agg.Dims("mfc", SERVICE, "75701000", "mfc", ""))
    visits = {f"{office}:true": 6, f"{office}:false": 2, "no-such-office:true": 9}
    with m.lock:
        m.apply_aggregate(
            key.encode(), agg.encode(Rollup(visits={"true": 6}, office_visits=visits))
        )
    labels = {"agency": "mfc", "office": office, "service": SERVICE, "within_standard": "true"}
    assert _sample(m, "servicepulse_office_visits_by_office_total", labels) == 6
    rep = _report(m)
    (row,) = rep.offices
    assert row.code == office and row.visits == 8 and row.within_standard.value == 6 / 8
    assert CATALOG.offices[office].name in render_html(rep).decode()


def test_dashboards_show_names_not_codes() -> None:
    m = _model()
    office, info = next(iter(CATALOG.offices.items()))
    labels = {"office": office, "office_name": info.name, "municipality": info.municipality}
    assert _sample(m, "servicepulse_catalog_office_info", labels) == 1
    muni = CATALOG.municipalities["75738000"].name
    assert (
        _sample(
            m,
            "servicepulse_catalog_municipality_info",
            {"municipality": "75738000", "municipality_name": muni},
        )
        == 1
    )
    from dashboards import build

    board = build.render(METHODOLOGY)["sp-offices.json"]
    assert "office_visits_by_office_total" in board and "{{office_name}}" in board
    assert "{{municipality}}" not in board and "{{municipality_name}}" in board


def test_a_wrong_key_shows_in_the_agencys_data_quality() -> None:
    m = _model()
    _put(m, "2026-11-02", "portal", Rollup(started=10, events=10))
    dead = {
        "reason": "wrong_key",
        "agency": "minsoc",
        "source": "processor",
        "received_at": "2026-11-02T10:00:00+05:00",
        "received_day": "2026-11-02",
    }
    with m.lock:
        m.apply_dead_letter(msgspec.json.encode(dead), 0)
    rep = _report(m)
    q = next(q for q in rep.quality if q.agency == "minsoc")
    assert q.rejected_by_reason == {"wrong_key": 1}
    assert "неверный ключ записи в Kafka" in render_html(rep).decode()


def test_the_api_names_every_service_life_situation_and_pseudo_value() -> None:
    m = _model()
    for code, idx in CATALOG.services.items():
        labels = {"service": code, "service_name": idx.service.name}
        assert _sample(m, "servicepulse_catalog_service_info", labels) == 1
    for code, ls in CATALOG.life_situations.items():
        labels = {"life_situation": code, "life_situation_name": ls.name}
        assert _sample(m, "servicepulse_catalog_life_situation_info", labels) == 1
    # the label values that are no catalog code are named too, so joins drop no series
    unknown = {"agency": "unknown", "agency_name": "неизвестное ведомство"}
    assert _sample(m, "servicepulse_catalog_agency_info", unknown) == 1
    other = {"municipality": "other", "municipality_name": "другие места"}
    assert _sample(m, "servicepulse_catalog_municipality_info", other) == 1
    no_service = {"service": "", "service_name": "без услуги"}
    assert _sample(m, "servicepulse_catalog_service_info", no_service) == 1
