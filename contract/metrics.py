"""Prometheus metric names, labels and histogram buckets (DESIGN.md section 5).

The API exposes the business families, the rules and dashboards query them, and the
processor's rollups use the same buckets, so one table here keeps all three in step.
Label values come only from the catalog (or from the bounded enums of the contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

PREFIX: Final = "servicepulse_"

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0

#: Histogram upper bounds in seconds (the +Inf bucket is implied), by rollup field name.
BUCKETS: Final[dict[str, tuple[float, ...]]] = {
    "form_seconds": (30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, DAY),
    "decision_seconds": (
        HOUR,
        4 * HOUR,
        DAY,
        2 * DAY,
        3 * DAY,
        5 * DAY,
        7 * DAY,
        10 * DAY,
        15 * DAY,
        20 * DAY,
        30 * DAY,
        45 * DAY,
        60 * DAY,
    ),
    "wait_seconds": (60, 300, 600, 900, 1200, 1800, 2700, 3600, 7200),
    "interagency_seconds": (
        HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        3 * DAY,
        5 * DAY,
        10 * DAY,
    ),
    "case_seconds": (DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 60 * DAY, 90 * DAY),
    "skew_seconds": (1, 5, 30, 60, 300, 3600, DAY),
    "sender_skew_seconds": (1, 5, 30, 60, 300, 3600, DAY),
}

MetricKind = Literal["counter", "gauge", "histogram"]

#: The dimension labels of business metrics, in order (a family carries a subset).
DIMS: Final = ("agency", "service", "municipality", "channel")
#: What the journey families carry: the live questions are per agency, service and
#: channel; municipality (x50 in the demo region) and day are served by the API
#: (scorecards, reports), not by Prometheus (docs/METRICS.md, "Series budget").
JOURNEY_DIMS: Final = ("agency", "service", "channel")

#: Reasons of ``late_events_total`` (the processor writes no others), with their Russian
#: names (``servicepulse_catalog_reason_info``; a reason not here is exposed as ``other``).
LATE_REASON_NAMES: Final[dict[str, str]] = {
    "after_abandoned": "после того как заявление брошено",
    "after_decided": "после решения по заявлению",
    "repeated_start": "повторное начало заявления",
    "repeated_submit": "повторная подача заявления",
    "repeated_appeal": "повторное поступление жалобы",
    "repeated_answer": "повторный ответ на жалобу",
    "repeated_request": "повторный межведомственный запрос",
    "repeated_response": "повторный межведомственный ответ",
    "behind_watermark": "позже допустимого опоздания",
    "too_late": "день уже закрыт для изменений",
}
LATE_REASONS: Final = tuple(LATE_REASON_NAMES)


@dataclass(frozen=True, slots=True)
class Family:
    """One exposed metric family.

    ``labels`` are the label names in order; the dimension labels first, then the
    family's own (``step``, ``outcome``, ...). Each family carries only the dimensions
    that answer a live question and stay bounded by the catalog (docs/METRICS.md,
    "Series budget"); the municipality appears only on office visits, where it is the
    office's, and the day never: both are served by the API's reports.
    """

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]
    #: the field the series are summed from: of ``contract.aggregates.Rollup`` for
    #: counters and histograms, of ``Gauges`` for gauges; ``None`` for the families fed
    #: otherwise (dead letters, catalog names)
    source: str | None = None

    @property
    def buckets(self) -> str | None:
        """The key in :data:`BUCKETS` of a histogram (its rollup field), else ``None``."""
        return self.source if self.kind == "histogram" else None

    @property
    def full(self) -> str:
        """The name as exposed, with the ``servicepulse_`` prefix."""
        return PREFIX + self.name


_BACK_OFFICE: Final = ("agency", "service")

FAMILIES: Final[tuple[Family, ...]] = (
    Family("journeys_started_total", "counter", "Journeys started", JOURNEY_DIMS, "started"),
    Family(
        "journeys_started_digital_total",
        "counter",
        "Journeys started on portal, mobile or proactive channels",
        JOURNEY_DIMS,
        "started_digital",
    ),
    Family("journeys_submitted_total", "counter", "Journeys submitted", JOURNEY_DIMS, "submitted"),
    Family(
        "journeys_abandoned_total",
        "counter",
        "Journeys abandoned (cancelled, or timed out on portal/mobile)",
        JOURNEY_DIMS,
        "abandoned",
    ),
    Family(
        "journeys_resolved_total",
        "counter",
        "Journeys submitted or abandoned",
        JOURNEY_DIMS,
        "resolved",
    ),
    Family(
        "journeys_resolved_with_errors_total",
        "counter",
        "Resolved journeys that saw at least one journey.error",
        JOURNEY_DIMS,
        "resolved_with_errors",
    ),
    Family(
        "journeys_skipped_steps_total",
        "counter",
        "Submitted journeys that skipped steps of the catalog",
        JOURNEY_DIMS,
        "skipped_steps",
    ),
    Family(
        "journey_steps_total",
        "counter",
        "Journeys that reached a step (once per journey)",
        (*JOURNEY_DIMS, "step"),
        "steps",
    ),
    Family(
        "journey_errors_total",
        "counter",
        "journey.error events by catalog code",
        (*JOURNEY_DIMS, "code"),
        "errors",
    ),
    Family(
        "decisions_total",
        "counter",
        "Decisions by outcome and timeliness",
        (*JOURNEY_DIMS, "outcome", "timeliness"),
        "decisions",
    ),
    Family(
        "decision_duration_seconds",
        "histogram",
        "Time from submission (else start) to decision",
        _BACK_OFFICE,
        "decision_seconds",
    ),
    Family(
        "form_duration_seconds",
        "histogram",
        "Time from start to submission",
        JOURNEY_DIMS,
        "form_seconds",
    ),
    Family(
        "applications_pending",
        "gauge",
        "Applications submitted (or registered off-line) and not yet decided",
        JOURNEY_DIMS,
        "pending",
    ),
    Family(
        "applications_overdue",
        "gauge",
        "Pending applications past their deadline",
        JOURNEY_DIMS,
        "overdue",
    ),
    Family(
        "journeys_open",
        "gauge",
        "Journeys started and not yet resolved",
        JOURNEY_DIMS,
        "open_journeys",
    ),
    Family("feedback_total", "counter", "Feedback scores", (*JOURNEY_DIMS, "score"), "feedback"),
    Family(
        "office_visits_total",
        "counter",
        "Office visits by wait within the standard",
        ("agency", "municipality", "within_standard"),
        "visits",
    ),
    Family(
        "office_visits_by_office_total",
        "counter",
        "Office visits by office (catalog code), the service visited for and wait within standard",
        ("agency", "office", "service", "within_standard"),
        "office_visits",
    ),
    Family(
        "office_wait_seconds",
        "histogram",
        "Office queue waiting time",
        ("agency", "municipality"),
        "wait_seconds",
    ),
    Family(
        "appeals_received_total",
        "counter",
        "Appeals received",
        ("agency", "channel"),
        "appeals_received",
    ),
    Family(
        "appeals_answered_total",
        "counter",
        "Appeals answered by timeliness",
        ("agency", "channel", "timeliness"),
        "appeals_answered",
    ),
    Family(
        "appeals_open",
        "gauge",
        "Appeals received and not answered",
        ("agency", "channel"),
        "appeals_open",
    ),
    Family(
        "appeals_overdue",
        "gauge",
        "Open appeals past their 30-day term",
        ("agency", "channel"),
        "appeals_overdue",
    ),
    Family(
        "interagency_requests_total",
        "counter",
        "Interagency requests sent",
        _BACK_OFFICE,
        "interagency_requested",
    ),
    Family(
        "interagency_responses_total",
        "counter",
        "Interagency responses by whether they came within PT48H",
        (*_BACK_OFFICE, "within_48h"),
        "interagency_responded",
    ),
    Family(
        "interagency_response_seconds",
        "histogram",
        "Interagency response time",
        _BACK_OFFICE,
        "interagency_seconds",
    ),
    Family(
        "cases_started_total",
        "counter",
        "Life-situation cases started",
        ("agency", "life_situation"),
        "cases_started",
    ),
    Family(
        "cases_completed_total",
        "counter",
        "Life-situation cases with every journey decided",
        ("agency", "life_situation"),
        "cases_completed",
    ),
    Family(
        "deadlines_beyond_calendar_total",
        "counter",
        "Deadlines set past the production calendar's last day (Monday-Friday assumed)",
        _BACK_OFFICE,
        "beyond_calendar",
    ),
    Family(
        "case_duration_seconds",
        "histogram",
        "End-to-end time of completed life-situation cases (first start to last decision)",
        ("life_situation",),
        "case_seconds",
    ),
    Family(
        "late_events_total",
        "counter",
        "Lifecycle events counted late, by reason",
        ("agency", "service", "reason"),
        "late",
    ),
    Family(
        "duplicate_events_total",
        "counter",
        "Events seen again with a known event_id",
        ("agency",),
        "duplicates",
    ),
    Family("events_processed_total", "counter", "Valid events processed", ("agency",), "events"),
    Family(
        "events_rejected_total",
        "counter",
        "Events rejected, by agency and reason",
        ("agency", "reason"),
    ),
    Family(
        "delivery_delay_seconds",
        "histogram",
        "Delivery delay: broker receive time minus occurred_at (backfills and late sends)",
        ("agency",),
        "skew_seconds",
    ),
    Family(
        "clock_skew_seconds",
        "histogram",
        "Producer clock skew: |sent_at header (producer's clock) - broker receive time|",
        ("agency",),
        "sender_skew_seconds",
    ),
    # Russian names of the code labels as info series (value 1), so dashboards show names:
    # ``... * on (office) group_left (office_name) servicepulse_catalog_office_info``.
    # Each is ``catalog_<label>_info``: the labels before ``<label>_name`` are those it is
    # joined on (a step is a step of its service); contract.names makes the series.
    Family(
        "catalog_agency_info", "gauge", "Catalog name of each agency (1)", ("agency", "agency_name")
    ),
    Family(
        "catalog_municipality_info",
        "gauge",
        "Catalog name of each municipality (1)",
        ("municipality", "municipality_name"),
    ),
    Family(
        "catalog_office_info",
        "gauge",
        "Catalog name and municipality of each office (1)",
        ("office", "office_name", "municipality"),
    ),
    Family(
        "catalog_service_info",
        "gauge",
        "Catalog name of each service (1)",
        ("service", "service_name"),
    ),
    Family(
        "catalog_life_situation_info",
        "gauge",
        "Catalog name of each life situation (1)",
        ("life_situation", "life_situation_name"),
    ),
    Family(
        "catalog_step_info",
        "gauge",
        "Catalog name of each form step of each service (1)",
        ("service", "step", "step_name"),
    ),
    Family(
        "catalog_code_info",
        "gauge",
        "Catalog name of each journey error code of each service (1)",
        ("service", "code", "code_name"),
    ),
    Family(
        "catalog_channel_info",
        "gauge",
        "Name of each channel (1)",
        ("channel", "channel_name"),
    ),
    Family(
        "catalog_reason_info",
        "gauge",
        "Name of each reason of rejected and late events (1)",
        ("reason", "reason_name"),
    ),
)

#: Russian names of the label values that are not catalog codes (an agency the catalog
#: does not know, a visit at a place without an office, feedback without a service, an
#: error code the service does not list, ...): the info series name them too, so a join
#: with the names drops no series.
PSEUDO_NAMES: Final[dict[str, dict[str, str]]] = {
    "agency": {"unknown": "неизвестное ведомство"},
    "municipality": {"other": "другие места"},
    "office": {"other": "другие офисы"},
    "service": {"": "без услуги"},
    "life_situation": {"": "вне жизненной ситуации"},
    "code": {"other": "прочие ошибки"},
    "reason": {"other": "прочее"},
}

#: The label each info family names (``catalog_<label>_info``).
NAMED_LABELS: Final = tuple(
    f.name.removeprefix("catalog_").removesuffix("_info")
    for f in FAMILIES
    if f.name.startswith("catalog_")
)

FAMILY_BY_NAME: Final = {f.name: f for f in FAMILIES}


def info_keys(label: str) -> tuple[str, ...]:
    """The labels the name of ``label`` is joined on: the code, and the code that scopes
    it where codes repeat (a step or an error code is one of its service's)."""
    labels = FAMILY_BY_NAME[f"catalog_{label}_info"].labels
    return labels[: labels.index(f"{label}_name")]


#: Fields of ``contract.aggregates.Rollup`` and ``Gauges`` that no family exposes: the
#: API's reports and scorecards read them. Every other field is the ``source`` of exactly
#: one family (tests/contract/test_wire.py checks it), so a new counter is one field, one
#: family and one increment (docs/METRICS.md, "Adding a counter").
UNEXPOSED_FIELDS: Final = frozenset({"abandoned_timeout", "withdrawn", "interagency_open"})
