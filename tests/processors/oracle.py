"""Expected totals of a generated stream, computed from the raw events alone.

Deliberately written without the processor's code: plain passes over the events with
the facts the generator guarantees (every journey's events share its dimensions, events
are in event-time order per partition, decisions are far from their deadlines, cases
never time out, a closing event pushes every watermark past every timeout).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from contract import aggregates as agg
from tests.fixtures.streams import TZ, Stream

ABANDON_AFTER = {"soc-benefit": 30, "soc-card": 20, "reg-cert": 30}
STEPS = {"soc-benefit": 3, "soc-card": 1, "reg-cert": 2}
KNOWN_ERRORS = {"soc-benefit": {"esia_timeout"}}
Cell = tuple[str, str, str, str, str, str]


def _day(t: datetime) -> str:
    return t.astimezone(TZ).date().isoformat()


def expected(stream: Stream) -> tuple[dict[Cell, Counter[str]], Counter[str]]:
    """Per (day, agency, service, municipality, channel, life situation): counters as
    ``field`` or ``field:key``; and the gauges summed over all cells."""
    tot: dict[Cell, Counter[str]] = defaultdict(Counter)
    seen: set[str] = set()
    journeys: dict[tuple[str, str], dict[str, Any]] = {}
    appeals: dict[str, tuple[datetime, timedelta]] = {}
    requests: dict[str, datetime] = {}
    cases: dict[str, dict[str, Any]] = {}
    for evs in stream.events.values():
        for ev in evs:
            if not isinstance(ev, dict) or ev.get("service") == "no-such-service":
                continue
            t = datetime.fromisoformat(ev["occurred_at"])
            typ = ev["type"]
            a = ev.get("attrs", {})
            if typ in ("appeal.received", "appeal.answered"):
                dims = (ev["agency"], "", ev["municipality"], ev["channel"], "")
            elif typ == "visit.served":  # the service it was for, whoever owns it
                dims = (ev["agency"], ev.get("service", ""), ev["municipality"], ev["channel"], "")
            else:
                dims = (
                    ev["agency"],
                    ev.get("service", ""),
                    ev["municipality"],
                    ev["channel"],
                    ev.get("life_situation", ""),
                )
            cell = (_day(t), *dims)
            if ev["event_id"] in seen:
                tot[cell]["duplicates"] += 1
                continue
            seen.add(ev["event_id"])
            tot[cell]["events"] += 1
            if typ.startswith(("journey.", "decision.")):
                key = (ev["agency"], ev["journey"])
                j = journeys.setdefault(
                    key, {"dims": dims, "steps": set(), "err": False, "case": ev.get("case")}
                )
                j["last"] = t
                # a case is its id alone: its journeys may belong to several agencies
                if key[1] and ev.get("case") and ev["case"] not in cases:
                    cases[ev["case"]] = {"cell": cell, "journeys": set()}
                if ev.get("case"):
                    cases[ev["case"]]["journeys"].add(key)
            if typ == "journey.started":
                tot[cell]["started"] += 1
                if ev["channel"] in ("portal", "mobile", "proactive"):
                    tot[cell]["started_digital"] += 1
                j["started"] = t
            elif typ.startswith(("journey.", "decision.")) and ("decided" in j or "cancelled" in j):
                tot[cell]["late:after_decided" if "decided" in j else "late:after_abandoned"] += 1
            elif typ == "journey.step":
                if a["step"] not in j["steps"]:
                    j["steps"].add(a["step"])
                    tot[cell]["steps:" + a["step"]] += 1
            elif typ == "journey.error":
                code = a["code"] if a["code"] in KNOWN_ERRORS.get(dims[1], ()) else "other"
                tot[cell]["errors:" + code] += 1
                j["err"] = True
            elif typ == "journey.submitted":
                j["submitted"] = t
                tot[cell]["submitted"] += 1
                tot[cell]["resolved"] += 1
                tot[cell]["resolved_with_errors"] += j["err"]
                # only self-service forms have steps to skip
                self_service = dims[3] in ("portal", "mobile")
                tot[cell]["skipped_steps"] += self_service and len(j["steps"]) < STEPS[dims[1]]
            elif typ == "journey.abandoned":
                j["cancelled"] = t
                tot[cell]["abandoned"] += 1
                tot[cell]["resolved"] += 1
                tot[cell]["resolved_with_errors"] += j["err"]
            elif typ == "decision.made":
                j["decided"] = t
                # from the submission, else the start (one may be lost to retention)
                base = j.get("submitted") or j.get("started")
                tl = (
                    "unknown"
                    if base is None
                    else "on_time"
                    if t - base < timedelta(days=1)
                    else "late"
                )
                tot[cell][f"decisions:{a['outcome']}:{tl}"] += 1
            elif typ == "feedback.given":
                tot[cell][f"feedback:{a['score']}"] += 1
            elif typ == "visit.served":
                within = "true" if a["wait_seconds"] <= 900 else "false"
                tot[cell][f"visits:{within}"] += 1
                tot[cell][f"office_visits:{a['office']}:{within}"] += 1
            elif typ == "appeal.received":
                # 15 working days of a complaint span at least 21 calendar days; the
                # generator answers after 5, 25 or 45 days, never near a term's end
                term = timedelta(days=21 if a.get("kind") == "complaint" else 30)
                appeals[a["appeal"]] = (t, term)
                tot[cell]["appeals_received"] += 1
            elif typ == "appeal.answered":
                got = appeals.pop(a["appeal"], None)  # None: its receipt was lost
                tl = "unknown" if got is None else "on_time" if t - got[0] <= got[1] else "late"
                tot[cell][f"appeals_answered:{tl}"] += 1
            elif typ == "interagency.requested":
                requests[a["request"] + ev["journey"]] = t
                tot[cell]["interagency_requested"] += 1
            elif typ == "interagency.responded":
                sent = requests.pop(a["request"] + ev["journey"], None)  # None: request lost
                label = (
                    "unknown"
                    if sent is None
                    else "within"
                    if t - sent <= timedelta(hours=48)
                    else "over"
                )
                tot[cell][f"interagency_responded:{label}"] += 1
    gauges: Counter[str] = Counter()
    for j in journeys.values():
        dims = j["dims"]
        closed = "decided" in j or "cancelled" in j
        if not closed and "submitted" not in j and dims[3] in ("portal", "mobile"):
            at = j["last"] + timedelta(minutes=ABANDON_AFTER[dims[1]])
            c = tot[(_day(at), *dims)]
            for f in ("abandoned", "abandoned_timeout", "resolved"):
                c[f] += 1
            c["resolved_with_errors"] += j["err"]
            j["timeout"] = at
            continue
        if closed:
            continue
        if "submitted" in j or dims[3] not in ("portal", "mobile"):
            gauges["pending"] += 1
            if j["started"].month < 5:  # every term of a March journey ends before May
                gauges["overdue"] += 1
        if "submitted" not in j:
            gauges["open_journeys"] += 1
    for case in cases.values():
        tot[case["cell"]]["cases_started"] += 1
        js = [journeys[k] for k in case["journeys"]]
        if all("decided" in j or "cancelled" in j for j in js) and any("decided" in j for j in js):
            last = max(j.get("decided") or j["cancelled"] for j in js)
            tot[(_day(last), *case["cell"][1:])]["cases_completed"] += 1
    gauges["appeals_open"] = gauges["appeals_overdue"] = len(appeals)
    return {k: v for k, v in tot.items() if v}, gauges


def flatten(rollups: dict[Cell, agg.Rollup]) -> dict[Cell, Counter[str]]:
    """The same shape from materialised rollups (histograms left out)."""
    out: dict[Cell, Counter[str]] = {}
    for cell, r in rollups.items():
        c: Counter[str] = Counter()
        for f in agg.INT_FIELDS:
            c[f] = getattr(r, f)
        for f in agg.MAP_FIELDS:
            for k, v in getattr(r, f).items():
                c[f"{f}:{k}"] = v
        c = +c
        if c:
            out[cell] = c
    return out


def assert_matches(
    stream: Stream,
    cells: dict[Cell, agg.Rollup],
    gauges: Mapping[str, int],
    *,
    context: str = "",
    extra_gauges: Counter[str] | None = None,
    ignore: tuple[str, ...] = (),
) -> dict[Cell, Counter[str]]:
    """Assert that materialised ``cells`` and ``gauges`` equal the oracle's count of
    ``stream``, every cell and every gauge; return the flattened cells.

    ``extra_gauges`` adds what the oracle cannot know (a response that retention deleted
    leaves its request open); ``ignore`` drops counters the caller checks another way
    (duplicates, whose count depends on the retries a fault caused).
    """
    want, want_gauges = expected(stream)
    want_gauges.update(extra_gauges or Counter())
    got = flatten(cells)
    if ignore:
        want = _without(want, ignore)
        got = _without(got, ignore)
    diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
    where = f"{context}: " if context else ""
    assert not diff, f"{where}cells differ from the oracle (want, got): {list(diff.items())[:5]}"
    got_gauges = {k: v for k, v in gauges.items() if v}
    assert got_gauges == {k: v for k, v in want_gauges.items() if v}, (
        f"{where}gauges differ from the oracle: {got_gauges} != {dict(want_gauges)}"
    )
    return got


def _without(cells: dict[Cell, Counter[str]], names: tuple[str, ...]) -> dict[Cell, Counter[str]]:
    """``cells`` without the counters ``names``, and without cells left empty."""
    out = {}
    for cell, c in cells.items():
        kept = Counter({k: v for k, v in c.items() if k not in names})
        if kept:
            out[cell] = kept
    return out
