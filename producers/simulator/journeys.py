"""What happens to one citizen: a journey as a generator of timed events.

Each journey is a Python generator that yields ``(epoch, type, base, attrs)`` in time
order: the engine keeps one heap entry per live journey and advances it when its next
event is due, so a decision weeks after submission costs one suspended generator, not
a pre-built list. All randomness comes from the engine's seeded ``random.Random`` and is
drawn in event-time order, which makes the stream reproducible.

The shapes are plausible rather than measured: form steps of one to a few minutes, drop-off
that grows at upload steps and after errors, decisions spread over the legal term with a
share late (and moved into office hours), interagency responses in hours with a slow
tail, queue waits by office load and hour, feedback that drops after a rejection, a late
decision or a long wait, and appeals that follow bad experiences.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from contract.catalog import Office, Service
from contract.deadlines import APPEAL_TERM, COMPLAINT_TERM, DeadlineCalculator
from contract.events import Channel
from producers.pseudonym import Pseudonymizer, snils_checksum
from producers.simulator.model import ASSISTED, RegionModel
from producers.simulator.scenario import Scenario

AttrsDict = dict[str, Any]
Base = dict[str, Any]
#: One scheduled item: (epoch seconds, event type or None for a wake-up, base, attrs).
Item = tuple[float, str | None, Base | None, AttrsDict | None]
Spawn = Callable[[float, Iterator[Item]], None]

HOUR: Final = 3600.0
DAY: Final = 86_400.0
#: Error codes a portal sends that no catalog lists (counted as ``other``).
UNKNOWN_ERRORS: Final = ("http_502", "gateway_timeout", "js_exception", "captcha_failed")
UNKNOWN_REASON: Final = "unlisted_reason"
#: Time multipliers and drop-off multipliers by words in a step code.
_SLOW_STEPS: Final = ("documents", "upload", "photo", "income", "awards", "plan", "needs")
_FAST_STEPS: Final = ("consent", "review", "identity", "category")
COUNTERPART_SLOWNESS: Final = {"rosreestr": 1.8, "fssp": 1.3, "mvd": 1.2}


@dataclass(frozen=True, slots=True)
class Rates:
    """The knobs of one service, resolved from scenario service, agency and globals."""

    drop_off: float
    error_rate: float
    reject_rate: float
    late_rate: float
    step_drop: dict[str, float]
    step_error: dict[str, float]
    step_code: dict[str, str]
    step_slowness: dict[str, float]
    interagency_slowness: float
    appeal_slowness: float


@dataclass(slots=True)
class SimulatedJourney:
    """What a journey's events share."""

    service: Service
    rates: Rates
    channel: Channel
    municipality: str
    citizen: str
    base: Base


class Pending(NamedTuple):
    """A journey in compact form: enough to rebuild its events after submission.

    ``case`` 0 means no case; ``wait`` < 0 means no office visit.
    """

    jno: int
    t_sub: float
    service: str
    municipality: str
    channel: Channel
    citizen: int
    case: int
    life_situation: str | None
    errors: int = 0
    wait: float = -1.0
    proactive: bool = False


def _pick(rng: random.Random, items: list[str] | tuple[str, ...]) -> str:
    return items[int(rng.random() * len(items))]


class World:
    """Creates journeys: arrivals, life situations, and each journey's script.

    Args:
        model: the region.
        rng: the run's seeded random source.
        tag: a short id of the run, part of every journey, case, request and appeal id.
        pseudonymizer: turns the synthetic SNILS of each simulated person into a pseudonym.
        spawn: the engine's ``spawn(epoch, generator)``.
    """

    def __init__(
        self,
        model: RegionModel,
        rng: random.Random,
        tag: str,
        pseudonymizer: Pseudonymizer,
        spawn: Spawn,
        defer: Callable[[Pending], None],
        seed: int = 0,
    ) -> None:
        self.model = model
        self.sc: Scenario = model.scenario
        self.rng = rng
        self.tag = tag
        self.pseudonymizer = pseudonymizer
        self.spawn = spawn
        self.defer = defer
        self.seed = seed
        self.calc = DeadlineCalculator(model.catalog)
        self._journeys = itertools.count(1)
        self._cases = itertools.count(1)
        self._pseudonyms: dict[int, str] = {}
        self._rates: dict[str, Rates] = {}
        self._counterparts = [c.code for c in model.catalog.file.counterparts]
        self._agencies = [a for a in model.catalog.agencies if a != "mfc"]
        self.arrivals = 0

    # -- ids and people ----------------------------------------------------------------

    def citizen_no(self, municipality: str) -> int:
        """A random resident (residents come back: same number, same pseudonym)."""
        idx = int(self.rng.random() * self.model.population[municipality])
        return 2_000_000 + self.model.muni_index[municipality] * 5_000_000 + idx

    def pseudonym(self, citizen_no: int) -> str:
        """The pseudonym of a resident: HMAC of a synthetic SNILS built from the number."""
        cached = self._pseudonyms.get(citizen_no)
        if cached is not None:
            return cached
        if len(self._pseudonyms) >= 65_536:
            self._pseudonyms.clear()
        first9 = f"{citizen_no:09d}"
        value = self.pseudonymizer.pseudonym(f"{first9}{snils_checksum(first9):02d}", "snils")
        self._pseudonyms[citizen_no] = value
        return value

    def rates(self, service: Service) -> Rates:
        """The resolved knobs of a service (cached)."""
        cached = self._rates.get(service.code)
        if cached is not None:
            return cached
        sc = self.sc
        sk = sc.services.get(service.code)
        ak = sc.agencies.get(service.agency)

        def pick(name: str) -> float:
            for knobs in (sk, ak):
                value = getattr(knobs, name, None) if knobs is not None else None
                if value is not None:
                    return float(value)
            return float(getattr(sc, name))

        drop = sk.drop_off if sk is not None and sk.drop_off is not None else sc.drop_off
        err = sk.error_rate if sk is not None and sk.error_rate is not None else sc.error_rate
        step_drop: dict[str, float] = {}
        step_error: dict[str, float] = {}
        step_code: dict[str, str] = {}
        step_slow: dict[str, float] = {}
        for st in service.steps:
            slow = any(w in st.code for w in _SLOW_STEPS)
            fast = any(w in st.code for w in _FAST_STEPS)
            step_drop[st.code] = drop * (1.6 if slow else 0.6 if fast else 1.0)
            step_error[st.code] = err * (2.0 if slow else 1.0)
            step_slow[st.code] = 2.5 if slow else 0.5 if fast else 1.0
            knob = sk.steps.get(st.code) if sk is not None else None
            if knob is not None:
                if knob.drop_off is not None:
                    step_drop[st.code] = knob.drop_off
                if knob.error_rate is not None:
                    step_error[st.code] = knob.error_rate
                if knob.error_code is not None:
                    step_code[st.code] = knob.error_code
                step_slow[st.code] *= knob.slowness
        rates = Rates(
            drop_off=drop,
            error_rate=err,
            reject_rate=pick("reject_rate"),
            late_rate=pick("late_rate"),
            step_drop=step_drop,
            step_error=step_error,
            step_code=step_code,
            step_slowness=step_slow,
            interagency_slowness=ak.interagency_slowness if ak is not None else 1.0,
            appeal_slowness=ak.appeal_slowness if ak is not None else 1.0,
        )
        self._rates[service.code] = rates
        return rates

    # -- arrivals ----------------------------------------------------------------------

    def arrive(self, t: float) -> None:
        """A resident starts something at ``t``: one service, or a life situation."""
        self.arrivals += 1
        rng = self.rng
        model = self.model
        muni = model.municipalities.pick(rng.random())
        citizen = self.citizen_no(muni)
        if model.life_situations and rng.random() < self.sc.life_situation_share:
            code = model.life_situations.pick(rng.random())
            case = next(self._cases)
            start = t
            for k, service in enumerate(model.ls_services[code]):
                if k > 0:
                    if rng.random() > 0.8:
                        continue
                    if rng.random() < 0.35:
                        start += rng.uniform(60, 900)  # the same sitting
                    else:
                        start += rng.expovariate(1 / (2 * DAY))
                self.start_journey(start, service, muni, citizen, case, code)
            return
        weights = model.day(model.local(t).date())[1]
        self.start_journey(t, weights.pick(rng.random()), muni, citizen, 0, None)

    def start_journey(
        self,
        t: float,
        service_code: str,
        municipality: str,
        citizen: int,
        case: int,
        life_situation: str | None,
    ) -> None:
        """Choose the channel and schedule the journey's generator at its start.

        ``case`` 0 means no case.
        """
        rng = self.rng
        model = self.model
        service = model.services[service_code]
        if Channel.PROACTIVE in service.channels and rng.random() < self.sc.proactive_share:
            channel = Channel.PROACTIVE
            t = model.working_time(t, rng.uniform(0, 8 * HOUR))
        else:
            weights = model.channels(service_code, model.local(t))
            if not weights:
                first = next(ch for ch in service.channels if ch in ASSISTED)
                t = model.next_open(first, t) + rng.uniform(0, HOUR)
                weights = model.channels(service_code, model.local(t))
            channel = Channel(weights.pick(rng.random()))
        p = Pending(
            jno=next(self._journeys),
            t_sub=t,
            service=service_code,
            municipality=municipality,
            channel=channel,
            citizen=citizen,
            case=case,
            life_situation=life_situation,
        )
        j = self.journey(p)
        if channel in (Channel.PORTAL, Channel.MOBILE):
            self.spawn(t, self._digital(t, j, p))
        elif channel == Channel.PROACTIVE:
            self.spawn(t, self._proactive(t, j, p))
        else:
            self.spawn(t, self._assisted(t, j, p))

    def journey(self, p: Pending) -> SimulatedJourney:
        """The shared fields of a journey's events, rebuilt from its compact form."""
        service = self.model.services[p.service]
        base: Base = {
            "agency": service.agency,
            "service": service.code,
            "municipality": p.municipality,
            "channel": p.channel.value,
            "journey": f"{self.tag}-j{p.jno:x}",
        }
        if p.case:
            base["case"] = f"{self.tag}-c{p.case:x}"
            base["life_situation"] = p.life_situation
        citizen = self.pseudonym(p.citizen)
        base["citizen"] = citizen
        return SimulatedJourney(
            service, self.rates(service), p.channel, p.municipality, citizen, base
        )

    def after_items(self, p: Pending) -> list[Item]:
        """Everything after the submission of ``p``, in time order.

        Drawn from a random source of the journey's own, so calling it again gives the
        same items: the engine keeps only ``p`` (a few hundred bytes) for the days a
        journey waits for its decision, and rebuilds the items when one is due.
        """
        rng = random.Random(self.seed * 4_294_967_311 + p.jno)
        return self._after(p, self.journey(p), rng)

    # -- journeys ----------------------------------------------------------------------

    def _digital(self, t: float, j: SimulatedJourney, p: Pending) -> Iterator[Item]:
        rng = self.rng
        sc = self.sc
        base = j.base
        r = j.rates
        cap = j.service.abandon_after.total_seconds() * 0.7
        speed = 0.85 if j.channel == Channel.MOBILE else 1.0
        yield t, "journey.started", base, None
        errors = 0
        abandoned = rng.random() < sc.bounce
        if not abandoned:
            for st in j.service.steps:
                median = 75.0 * r.step_slowness[st.code] * speed
                t += min(cap, median * math.exp(rng.gauss(0, 0.6)))
                yield t, "journey.step", base, {"step": st.code}
                if rng.random() < r.step_error[st.code]:
                    errors += 1
                    t += rng.uniform(3, 40)
                    code = r.step_code.get(st.code)
                    if code is None:
                        known = [e.code for e in j.service.errors]
                        if not known or rng.random() < sc.unknown_error_share:
                            code = _pick(rng, UNKNOWN_ERRORS)
                        else:
                            code = _pick(rng, known)
                    yield t, "journey.error", base, {"step": st.code, "code": code}
                    if rng.random() < sc.error_drop_off:
                        abandoned = True
                        break
                    t += min(cap, rng.uniform(20, 180))
                if rng.random() < r.step_drop[st.code]:
                    abandoned = True
                    break
        if abandoned:
            if rng.random() < sc.explicit_abandon_share:
                yield t + rng.uniform(5, 90), "journey.abandoned", base, None
            if errors and rng.random() < 0.02:
                yield from self._appeal(rng, t + rng.uniform(HOUR, 2 * DAY), p.jno, 1.0, base)
            return
        t += rng.uniform(10, 45)
        yield t, "journey.submitted", base, None
        self.defer(p._replace(t_sub=t, errors=errors))

    def _assisted(self, t: float, j: SimulatedJourney, p: Pending) -> Iterator[Item]:
        rng = self.rng
        office: Office | None = None
        if j.channel == Channel.MFC:
            office = self.model.mfc_office(j.municipality, rng.random())
        elif j.channel == Channel.OFFICE:
            office = self.model.agency_office(j.service.agency, rng.random())
        wait = -1.0
        if office is not None:
            wait, visit = self._visit(rng, t, office, j.citizen, j.service.code)
            t += wait
            yield visit
        t += rng.uniform(60, 300)
        yield t, "journey.started", j.base, None
        t += min(3 * HOUR, 480 * math.exp(rng.gauss(0, 0.5)))
        yield t, "journey.submitted", j.base, None
        self.defer(p._replace(t_sub=t, wait=wait))

    def _proactive(self, t: float, j: SimulatedJourney, p: Pending) -> Iterator[Item]:
        yield t, "journey.started", j.base, None
        self.defer(p._replace(t_sub=t, proactive=True))

    def _visit(
        self, rng: random.Random, t: float, office: Office, citizen: str, service: str
    ) -> tuple[float, Item]:
        """Queue wait at ``office`` for an arrival at ``t`` about ``service``; the
        visit.served item (it names the service, whichever agency owns it)."""
        mean = self.model.mean_wait(office, self.model.local(t))
        wait = min(86_400.0, rng.gammavariate(1.6, mean / 1.6))
        base: Base = {
            "agency": office.agency,
            "municipality": office.municipality,
            "channel": (Channel.MFC if office.agency == "mfc" else Channel.OFFICE).value,
            "citizen": citizen,
            "service": service,
        }
        attrs = {"office": office.code, "wait_seconds": int(wait)}
        return wait, (t + wait, "visit.served", base, attrs)

    def _after(self, p: Pending, j: SimulatedJourney, rng: random.Random) -> list[Item]:
        """Visit feedback, interagency requests, the decision, feedback, appeals, pickup."""
        sc = self.sc
        r = j.rates
        model = self.model
        service = j.service
        base = j.base
        t_sub = p.t_sub
        errors = p.errors
        wait = p.wait if p.wait >= 0 else None
        items: list[Item] = []
        if wait is not None and rng.random() < sc.visit_feedback_rate:
            score = self._score(rng, False, False, 0, wait)
            items.append((t_sub + rng.uniform(30, 300), "feedback.given", base, {"score": score}))
        term = service.deadline
        deadline = self.calc.deadline(term, t_sub)
        span = max(600.0, deadline - t_sub)
        hours_term = term.hours is not None
        # interagency requests; the decision waits for the answers
        ready = t_sub
        if rng.random() < sc.interagency_rate:
            for k in range(2 if rng.random() < 0.35 else 1):
                if self._counterparts and rng.random() < 0.85:
                    counterpart = _pick(rng, self._counterparts)
                else:
                    counterpart = _pick(rng, self._agencies)
                t_req = t_sub + rng.uniform(30, 1800)
                attrs = {"request": f"{self.tag}-r{p.jno:x}.{k}", "counterpart": counterpart}
                items.append((t_req, "interagency.requested", base, attrs))
                if rng.random() < 0.01:
                    continue  # never answered
                if rng.random() < sc.interagency_slow_share:
                    delay = 48 * HOUR + rng.expovariate(1 / (30 * HOUR))
                else:
                    delay = (
                        3
                        * HOUR
                        * math.exp(rng.gauss(0, 1.0))
                        * r.interagency_slowness
                        * COUNTERPART_SLOWNESS.get(counterpart, 1.0)
                    )
                t_resp = t_req + delay
                items.append((t_resp, "interagency.responded", base, dict(attrs)))
                ready = max(ready, t_resp)
        # the decision
        extra_late = model.day(model.local(t_sub).date())[3]
        late_rate = min(1.0, r.late_rate + extra_late)
        u = rng.random()
        if hours_term:
            if u < late_rate:
                t_dec = deadline + rng.expovariate(1 / (0.25 * span)) + 60
            else:
                t_dec = t_sub + span * 0.9 * rng.random() ** 2
            t_dec = max(t_dec, ready + rng.expovariate(1 / HOUR))
        elif u < late_rate:
            t_dec = deadline + rng.expovariate(1 / (1.5 * DAY)) + 600
            t_dec = model.working_time(max(t_dec, ready), rng.uniform(0, 9 * HOUR))
        elif u < late_rate + sc.quick_decision_share and ready == t_sub:
            t_dec = t_sub + rng.uniform(300, 4 * HOUR)
        else:
            t_dec = t_sub + span * 0.95 * rng.betavariate(2.2, 2.0)
            t_dec = max(t_dec, ready + rng.expovariate(1 / (2 * HOUR)))
            t_dec = model.working_time(t_dec, rng.uniform(0, 9 * HOUR))
        late = t_dec > deadline
        reject_rate = 0.02 if p.proactive else r.reject_rate + (0.05 if errors else 0.0)
        rejected = rng.random() < reject_rate
        decision = {"outcome": "rejected" if rejected else "approved"}
        if rejected and service.reasons:
            if rng.random() < sc.unknown_reason_share:
                decision["reason"] = UNKNOWN_REASON
            else:
                decision["reason"] = _pick(rng, [x.code for x in service.reasons])
        items.append((t_dec, "decision.made", base, decision))
        # feedback on the result
        digital = j.channel not in ASSISTED
        p_fb = sc.feedback_rate * (0.5 if p.proactive else 1.0 if digital else 1 / 3)
        if rng.random() < p_fb:
            score = self._score(rng, rejected, late, errors, wait)
            t_fb = t_dec + max(120.0, rng.expovariate(1 / (3 * HOUR)))
            items.append((t_fb, "feedback.given", base, {"score": score}))
        # appeals after bad experiences
        p_appeal = (
            sc.appeal_rate
            + (sc.appeal_after_reject if rejected else 0.0)
            + (sc.appeal_after_late if late else 0.0)
        )
        if rng.random() < p_appeal:
            t_recv = t_dec + max(1800.0, DAY * math.exp(rng.gauss(0, 1.3)))
            # after a rejection or a late decision it is a complaint about the service
            kind = "complaint" if rejected or late else None
            items.extend(self._appeal(rng, t_recv, p.jno, r.appeal_slowness, base, kind=kind))
        # an approved MFC applicant comes back for the result
        if j.channel == Channel.MFC and not rejected and rng.random() < sc.result_pickup_rate:
            t_back = model.next_open(Channel.MFC, t_dec + rng.uniform(DAY, 5 * DAY))
            t_back += rng.uniform(0, 3 * HOUR)
            office = model.mfc_office(j.municipality, rng.random())
            wait2, visit = self._visit(rng, t_back, office, j.citizen, j.service.code)
            items.append(visit)
            if wait2 > 1800 and rng.random() < 0.05:
                t_recv = visit[0] + rng.uniform(HOUR, DAY)
                # a complaint about the MFC's queue: the MFC's, about no service of its own
                about = {k: v for k, v in (visit[2] or {}).items() if k != "service"}
                items.extend(self._appeal(rng, t_recv, p.jno, 1.0, about, "m", kind="complaint"))
        items.sort(key=lambda item: item[0])
        return items

    def _appeal(
        self,
        rng: random.Random,
        t_recv: float,
        jno: int,
        slowness: float,
        base: Base | None,
        suffix: str = "",
        *,
        kind: str | None = None,
    ) -> list[Item]:
        """An appeal received at ``t_recv`` and its answer, about ``base``'s agency: a
        59-FZ appeal (30 days), or with ``kind="complaint"`` a 210-FZ complaint about a
        service (15 working days)."""
        sc = self.sc
        appeal_base = dict(base or {})
        appeal = f"{self.tag}-a{jno:x}{suffix}"
        term = COMPLAINT_TERM if kind == "complaint" else APPEAL_TERM
        deadline = self.calc.deadline(term, t_recv)
        u = rng.random()
        if u < sc.appeal_late_rate:
            t_ans = deadline + rng.expovariate(1 / (4 * DAY)) + HOUR
        elif u < sc.appeal_late_rate + 0.15:
            t_ans = t_recv + rng.uniform(2 * HOUR, 2 * DAY)
        else:
            span = (deadline - t_recv) * slowness
            t_ans = t_recv + span * 0.95 * rng.betavariate(3.0, 2.0)
        t_ans = self.model.working_time(t_ans, rng.uniform(0, 9 * HOUR))
        return [
            (
                t_recv,
                "appeal.received",
                appeal_base,
                {"appeal": appeal, **({"kind": kind} if kind else {})},
            ),
            (max(t_ans, t_recv + 60), "appeal.answered", appeal_base, {"appeal": appeal}),
        ]

    def _score(
        self, rng: random.Random, rejected: bool, late: bool, errors: int, wait: float | None
    ) -> int:
        mean = 4.55 - 1.7 * rejected - 1.2 * late - 0.35 * min(errors, 2)
        if wait is not None:
            mean -= 0.0 if wait < 600 else 0.5 if wait < 900 else 1.0 if wait < 1800 else 1.8
        return min(5, max(1, round(rng.gauss(mean, 0.75))))
