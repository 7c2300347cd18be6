"""The region as the simulator sees it: who asks for what, when, where and how.

Built once from the catalog and a scenario: population weights per municipality, demand
weights per service (with peaks), channel availability by time of day, office queue
levels, and the working-hours calendar decisions follow. Everything here is a pure
function of (catalog, scenario, instant); the randomness lives in ``journeys.py``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Final

from contract.catalog import Catalog, Office, Service
from contract.events import Channel
from producers.simulator.scenario import AgencyKnobs, Scenario, ServiceKnobs

_NO_AGENCY: Final = AgencyKnobs()
_NO_SERVICE: Final = ServiceKnobs()

#: Share of all arrivals per local hour (digital and in person), Monday to Friday.
HOUR_PROFILE: Final = (
    0.15, 0.08, 0.05, 0.04, 0.04, 0.08, 0.25, 0.55, 0.95, 1.35, 1.6, 1.65,
    1.5, 1.45, 1.5, 1.45, 1.35, 1.25, 1.15, 1.1, 1.05, 0.9, 0.6, 0.3,
)  # fmt: skip
#: Demand per weekday (Monday first), relative to an ordinary weekday.
WEEKDAY_FACTOR: Final = (1.15, 1.05, 1.0, 1.0, 0.95, 0.55, 0.4)
#: Queue level per local hour at offices, relative to the day's mean.
OFFICE_HOUR_FACTOR: Final = {
    8: 0.6, 9: 0.9, 10: 1.3, 11: 1.45, 12: 1.2, 13: 1.0, 14: 0.9,
    15: 0.9, 16: 1.0, 17: 1.3, 18: 1.45, 19: 0.9,
}  # fmt: skip
#: Mean wait at an office of average load at an average hour, in seconds.
BASE_WAIT_S: Final = 420.0
WORK_START: Final = time(9, 0)
WORK_END_HOUR: Final = 18
ASSISTED: Final = (Channel.MFC, Channel.OFFICE, Channel.PHONE)


@dataclass(frozen=True, slots=True)
class Hours:
    """Opening hours of one kind of place: (open, close) local hours per weekday."""

    weekdays: tuple[tuple[int, int] | None, ...]

    def open_at(self, local: datetime, working_day: bool) -> bool:
        """Whether the place is open at a local time (closed on public holidays)."""
        wd = local.weekday()
        if not working_day and wd < 5:
            return False  # a public holiday on a weekday
        if working_day and wd >= 5:
            wd = 0  # a Saturday or Sunday made a working day keeps weekday hours
        span = self.weekdays[wd]
        return span is not None and span[0] <= local.hour < span[1]


MFC_HOURS: Final = Hours(((8, 20),) * 5 + ((9, 17), None))
OFFICE_HOURS: Final = Hours(((9, 18),) * 5 + (None, None))
PHONE_HOURS: Final = Hours(((8, 20),) * 5 + (None, None))
CHANNEL_HOURS: Final = {
    Channel.MFC: MFC_HOURS,
    Channel.OFFICE: OFFICE_HOURS,
    Channel.PHONE: PHONE_HOURS,
}


@dataclass(frozen=True, slots=True)
class Weighted:
    """Items with cumulative weights, for one ``bisect`` per draw."""

    items: tuple[str, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, pairs: list[tuple[str, float]]) -> Weighted:
        """From (item, weight) pairs; items of weight 0 are dropped."""
        kept = [(i, w) for i, w in pairs if w > 0]
        if not kept:
            return cls((), ())
        items, weights = zip(*kept, strict=True)
        return cls(tuple(items), tuple(itertools.accumulate(weights)))

    def pick(self, u: float) -> str:
        """The item at uniform draw ``u`` in [0, 1)."""
        return self.items[bisect.bisect_right(self.cumulative, u * self.cumulative[-1])]

    def __bool__(self) -> bool:
        return bool(self.items)


class RegionModel:
    """Demand, channels, offices and calendars of the region (pure functions of time)."""

    def __init__(self, catalog: Catalog, scenario: Scenario) -> None:
        self.catalog = catalog
        self.scenario = scenario
        self.tz = catalog.tz
        f = catalog.file
        self.municipalities = Weighted.of(
            [(m.oktmo, float(m.population)) for m in f.municipalities]
        )
        if not self.municipalities:
            self.municipalities = Weighted.of([(m.oktmo, 1.0) for m in f.municipalities])
        self.muni_index = {m.oktmo: i for i, m in enumerate(f.municipalities)}
        self.population = {m.oktmo: max(m.population, 1) for m in f.municipalities}
        self.services: dict[str, Service] = {s.code: s for s in f.services}
        self._base_demand = {
            s.code: s.demand
            * scenario.agencies.get(s.agency, _NO_AGENCY).demand
            * scenario.services.get(s.code, _NO_SERVICE).demand
            for s in f.services
        }
        self.life_situations = Weighted.of(
            [
                (ls.code, sum(self._base_demand.get(c, 0.0) for c in ls.services) ** 0.5)
                for ls in f.life_situations
            ]
        )
        self.ls_services = {ls.code: list(ls.services) for ls in f.life_situations}
        mfc = [o for o in f.offices if o.agency == "mfc"] or list(f.offices)
        self._mfc_by_muni: dict[str, list[Office]] = {}
        for o in mfc:
            self._mfc_by_muni.setdefault(o.municipality, []).append(o)
        self._mfc_fallback = Weighted.of([(o.code, float(o.windows)) for o in mfc])
        self.offices = {o.code: o for o in f.offices}
        self._agency_offices: dict[str, list[Office]] = {}
        for o in f.offices:
            if o.agency != "mfc":
                self._agency_offices.setdefault(o.agency, []).append(o)
        self._office_load = self._office_loads(mfc)
        d = scenario.diurnal
        self._hours = tuple(1.0 + d * (h - 1.0) for h in HOUR_PROFILE)
        self.max_factor = max(self._hours) * max(WEEKDAY_FACTOR) * self._max_peak()
        self._day_cache: dict[date, tuple[float, Weighted, float, float]] = {}

    # -- demand over time ------------------------------------------------------------

    def _max_peak(self) -> float:
        # peaks may overlap; the product bounds any one day's factor
        return math.prod(max(p.factor, 1.0) for p in self.scenario.peaks) or 1.0

    def local(self, epoch: float) -> datetime:
        """The local time of an instant."""
        return datetime.fromtimestamp(epoch, self.tz)

    def day(self, d: date) -> tuple[float, Weighted, float, float]:
        """(demand factor, service weights, wait factor, extra late share) of a day."""
        cached = self._day_cache.get(d)
        if cached is not None:
            return cached
        sc = self.scenario
        working = self.catalog.is_working_day(d)
        if working:
            factor = WEEKDAY_FACTOR[d.weekday()] if d.weekday() < 5 else WEEKDAY_FACTOR[0]
        elif d.weekday() == 5:
            factor = WEEKDAY_FACTOR[5]
        else:
            factor = sc.holiday_factor
        weights = dict(self._base_demand)
        wait = 1.0
        extra_late = 0.0
        peaks = [p for p in sc.peaks if p.covers(d)]
        total_before = sum(weights.values())
        for p in peaks:
            for code, svc in self.services.items():
                if (not p.services or code in p.services) and (
                    not p.agencies or svc.agency in p.agencies
                ):
                    weights[code] *= p.factor
            wait *= p.wait_factor
            extra_late += p.extra_late_rate
        if peaks:
            factor *= sum(weights.values()) / total_before
        result = (factor, Weighted.of(list(weights.items())), wait, extra_late)
        if len(self._day_cache) > 4096:
            self._day_cache.clear()
        self._day_cache[d] = result
        return result

    def intensity(self, local: datetime) -> float:
        """Relative arrival intensity at a local time (mean over a week about 1)."""
        return self.day(local.date())[0] * self._hours[local.hour]

    # -- channels and places -----------------------------------------------------------

    def channel_open(self, channel: Channel, local: datetime) -> bool:
        """Whether an assisted channel serves citizens at a local time."""
        hours = CHANNEL_HOURS.get(channel)
        if hours is None:
            return True
        return hours.open_at(local, self.catalog.is_working_day(local.date()))

    def channels(self, service: str, local: datetime) -> Weighted:
        """Channel weights of a service at a local time (closed channels excluded)."""
        return _channels(self, service, local.date(), local.hour)

    def mfc_office(self, municipality: str, u: float) -> Office:
        """The MFC office a resident of ``municipality`` goes to."""
        own = self._mfc_by_muni.get(municipality)
        if own:
            return own[int(u * len(own))]
        return self.offices[self._mfc_fallback.pick(u)]

    def agency_office(self, agency: str, u: float) -> Office | None:
        """An office of the agency itself, if the catalog lists one."""
        own = self._agency_offices.get(agency)
        return own[int(u * len(own))] if own else None

    def _office_loads(self, mfc: list[Office]) -> dict[str, float]:
        served: dict[str, float] = {o.code: 0.0 for o in self.offices.values()}
        for m in self.catalog.file.municipalities:
            own = self._mfc_by_muni.get(m.oktmo)
            if own:
                for o in own:
                    served[o.code] += m.population / len(own)
            else:
                total = self._mfc_fallback.cumulative[-1] if self._mfc_fallback else 1.0
                for o in mfc:
                    served[o.code] += m.population * o.windows / total
        per_window = {
            code: served[code] / self.offices[code].windows for code in served if served[code] > 0
        }
        ordered = sorted(per_window.values())
        median = ordered[len(ordered) // 2] if ordered else 1.0
        return {
            code: min(2.5, max(0.5, (per_window.get(code, median) / median) ** 0.6))
            for code in self.offices
        }

    def mean_wait(self, office: Office, local: datetime) -> float:
        """Mean queue wait in seconds at an office at a local time."""
        sc = self.scenario
        hour = OFFICE_HOUR_FACTOR.get(local.hour, 0.6)
        weekday = 1.3 if local.weekday() == 0 else (1.2 if local.weekday() == 5 else 1.0)
        knob = sc.offices.get(office.code)
        return (
            BASE_WAIT_S
            * self._office_load.get(office.code, 1.0)
            * hour
            * weekday
            * self.day(local.date())[2]
            * sc.wait_factor
            * (knob.wait_factor if knob else 1.0)
        )

    # -- working time ------------------------------------------------------------------

    def next_open(self, channel: Channel, epoch: float) -> float:
        """The first instant at or after ``epoch`` when an assisted channel is open."""
        local = self.local(epoch)
        for _ in range(24 * 20):
            if self.channel_open(channel, local):
                return local.timestamp()
            local = (local + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        return epoch

    def working_time(self, epoch: float, spread_s: float) -> float:
        """Move an instant into office hours (9-18 on a working day), if outside.

        An instant outside is moved to the next working morning plus ``spread_s``.
        """
        local = self.local(epoch)
        if (
            self.catalog.is_working_day(local.date())
            and local.time() >= WORK_START
            and local.hour < WORK_END_HOUR
        ):
            return epoch
        d = local.date() if local.time() < WORK_START else local.date() + timedelta(days=1)
        while not self.catalog.is_working_day(d):
            d += timedelta(days=1)
        return datetime.combine(d, WORK_START, self.tz).timestamp() + spread_s


@lru_cache(maxsize=8192)
def _channels(model: RegionModel, service: str, day: date, hour: int) -> Weighted:
    svc = model.services[service]
    local = datetime.combine(day, time(hour), model.tz)
    mix = model.scenario.channel_mix
    pairs = [
        (str(ch), mix.get(ch, 0.0))
        for ch in svc.channels
        if ch != Channel.PROACTIVE and model.channel_open(ch, local)
    ]
    if not any(w > 0 for _, w in pairs):
        pairs = [(str(ch), 1.0) for ch in svc.channels if ch in (Channel.PORTAL, Channel.MOBILE)]
    return Weighted.of(pairs)
