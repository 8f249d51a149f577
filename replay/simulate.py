"""Day-by-day simulation of the world's behaviour: what happens, and when.

The simulation knows the latent truth (each investor's ESG receptivity and intent)
and lets it show only through behaviour: which properties an investor looks at,
how deep they go (downloads, replies, meetings), how often they come back. Sales
assesses every engaged investor after a delay of days to weeks; whether they
qualify is a coin flip weighted by the latent variables, so even a perfect model
of the latents (the *oracle*) cannot predict every outcome.

Events come out as :class:`Emitted` records with both an event time and an ingest
time; the generator turns them into Kafka messages.

Drift (``WorldSpec.drift_at``, ``--drift-at DAY``): from that moment the market turns
green, abruptly, in two ways a detector can tell apart.

* *Concept*: what converts changes (:func:`conversion_logit`: ESG receptivity weighs
  more, intent less), for every sales decision taken after the onset.
* *Features*: the engagement mix changes (:data:`DRIFT_BEHAVIOUR`): investors visit
  more often, open fewer e-mails in a session (the channel mix moves to the web),
  browse the high-ESG tiers far more (whatever their own receptivity), linger longer on
  the pages they view and download ESG reports several times as often; ESG campaigns
  are opened and clicked more.

Only the world after the onset draws differently: without ``drift_at`` the random
draws, and so the bytes, are exactly those of a world that never knew about drift.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np

from esg_leads.replay.world import (
    EPC_ORDER,
    Investor,
    Property,
    Tenant,
    crm_record,
    entity_rng,
    make_investor,
    make_property,
    make_tenants,
)

DAY_S = 86_400.0
#: How behaviour changes after the drift onset (see the module docstring); each is a
#: multiplier or an additive shift of the pre-drift rule it names.
DRIFT_BEHAVIOUR = {
    "session_rate": 1.5,  # visits per day, times
    "session_email_open": 0.15,  # chance a visit starts from an e-mail (was 0.4)
    "browse_esg_tilt": 2.5,  # added to the log-weight of the high-ESG tier (minus on the low)
    "dwell": 1.6,  # dwell time on a page, times
    "esg_report": 0.25,  # added to the chance of an ESG report download in a visit
    "campaign_esg": 0.2,  # added to the open and click chances of an ESG campaign
}
TENANT_WEIGHTS = (1.0, 0.8, 0.65, 0.5, 0.45, 0.4, 0.35, 0.3)


class FeedOutage(NamedTuple):
    """A signal provider down for ``hours`` from ``day`` (days after the start); ``source``
    ``None``: every provider. Signals it would have sent in that time never arrive."""

    day: float
    hours: float
    source: str | None = None


def parse_feed_outage(text: str) -> FeedOutage:
    """``DAY:HOURS[:SOURCE]`` as ``--feed-outage`` takes it.

    >>> parse_feed_outage("10:48:epc-register")
    FeedOutage(day=10.0, hours=48.0, source='epc-register')
    >>> parse_feed_outage("3.5:12")
    FeedOutage(day=3.5, hours=12.0, source=None)
    >>> parse_feed_outage("ten:5")
    Traceback (most recent call last):
    ...
    ValueError: feed outage 'ten:5': expected DAY:HOURS[:SOURCE] with numbers, e.g. 10:48:epc-register
    """
    parts = text.split(":", 2)
    try:
        day, hours = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise ValueError(f"feed outage {text!r}: expected DAY:HOURS[:SOURCE] with numbers, "
                         "e.g. 10:48:epc-register") from None
    if not (math.isfinite(day) and math.isfinite(hours)) or day < 0 or hours <= 0:
        raise ValueError(f"feed outage {text!r}: DAY must be >= 0 and HOURS > 0")
    source = parts[2] if len(parts) == 3 and parts[2] else None
    return FeedOutage(day, hours, source)


@dataclass(frozen=True, slots=True)
class WorldSpec:
    tenants: int = 3
    investors: int = 2000
    properties: int = 600
    days: int = 30
    seed: int = 1
    malformed_rate: float = 0.01
    drift_at: float | None = None
    start: datetime = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
    partitions: int = 3
    duplicate_rate: float = 0.005
    late_rate: float = 0.003
    #: Reviewer teams decide the flow's review cases (replay.reviewers); off: nobody does.
    reviewers: bool = True
    #: Investors without a profile fill it in when the flow asks (replay.profile_answers);
    #: off: nobody does (``--profile-answers off``).
    profile_answers: bool = True
    #: Signal providers that go quiet for a while (``--feed-outage``).
    feed_outages: tuple[FeedOutage, ...] = ()

    def __post_init__(self) -> None:
        if self.tenants < 1 or self.investors < 1 or self.properties < self.tenants:
            raise ValueError("need at least one tenant, one investor and one property per tenant")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not 0 <= self.malformed_rate < 0.5:
            raise ValueError("malformed rate must be in [0, 0.5)")
        if self.drift_at is not None and not 0 < self.drift_at < self.days:
            raise ValueError("drift day must fall inside the simulated days")
        for outage in self.feed_outages:
            if not 0 <= outage.day < self.days:
                raise ValueError(f"feed outage on day {outage.day:g}: outside the "
                                 f"{self.days} simulated days")


@dataclass(slots=True)
class Emitted:
    """One event the world produced; ``payload`` is the JSON object to publish."""

    ingest_s: float
    topic: str
    key: str
    payload: dict
    late: bool = False
    #: An investor's answer to the flow's info request (replay.profile_answers).
    answer: bool = False


@dataclass(slots=True)
class Truth:
    investor: Investor
    first_engagement_s: float | None = None
    decision_s: float | None = None
    p_convert: float | None = None
    p_pre_drift: float = 0.0
    p_post_drift: float = 0.0
    converted: bool = False
    engagements: int = 0
    unsubscribed: bool = False
    erased: bool = False
    #: Cumulative bucket weights of this investor's browsing, computed on first use.
    browse: list[float] | None = None
    #: The same after the drift onset (the market turned green).
    browse_drifted: list[float] | None = None


@dataclass(slots=True)
class _Catalog:
    """A tenant's properties bucketed by (country, asset class, ESG tier) for fast choice."""

    buckets: dict[tuple[str, str, int], list[Property]] = field(default_factory=dict)
    listed: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    high_esg_share: float = 0.0
    median_value: float = 1.0
    #: The buckets in a fixed order, as parallel lists (filled by ``freeze``).
    keys: list[tuple[str, str, int]] = field(default_factory=list)
    bucket_list: list[list[Property]] = field(default_factory=list)
    listed_list: list[list[float]] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tiers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    country_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    asset_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def add(self, prop: Property) -> None:
        key = (prop.country, prop.asset_class, _esg_tier(prop))
        self.buckets.setdefault(key, []).append(prop)

    def freeze(self) -> None:
        props = [p for ps in self.buckets.values() for p in ps]
        for key, ps in self.buckets.items():
            ps.sort(key=lambda p: (p.listed_day, p.property_id))
            self.listed[key] = [p.listed_day for p in ps]
        self.keys = sorted(self.buckets)
        self.bucket_list = [self.buckets[k] for k in self.keys]
        self.listed_list = [self.listed[k] for k in self.keys]
        self.countries = sorted({c for c, _, _ in self.keys})
        self.assets = sorted({a for _, a, _ in self.keys})
        self.counts = np.array([len(b) for b in self.bucket_list], dtype=float)
        self.tiers = np.array([t for _, _, t in self.keys], dtype=int)
        self.country_index = np.array([self.countries.index(c) for c, _, _ in self.keys], dtype=int)
        self.asset_index = np.array([self.assets.index(a) for _, a, _ in self.keys], dtype=int)
        self.high_esg_share = sum(p.high_esg for p in props) / len(props)
        values = sorted(p.value_eur for p in props)
        self.median_value = values[len(values) // 2]


def _esg_tier(prop: Property) -> int:
    return 2 if prop.quality >= 0.62 else (1 if prop.quality >= 0.4 else 0)


def conversion_logit(inv: Investor, catalog: _Catalog, drifted: bool) -> float:
    """The true drivers of qualification; after the drift day ESG matters more."""
    supply = catalog.high_esg_share / 0.4
    fit = math.exp(-abs(math.log(inv.ticket_max / catalog.median_value)) / 2)
    if drifted:
        return -4.7 + 2.2 * inv.intent + 3.6 * inv.receptivity * supply + 0.8 * fit
    return -4.7 + 4.6 * inv.intent + 1.6 * inv.receptivity * supply + 0.8 * fit


class Simulation:
    """Runs the world day by day; iterate :meth:`events` for everything, in ingest order."""

    def __init__(self, spec: WorldSpec, answers: Mapping[str, float] | None = None) -> None:
        """``answers``: investor id -> when (epoch s) that investor fills in the profile
        the flow asked for (:mod:`replay.profile_answers`); none: nobody does."""
        self.spec = spec
        self._answers = dict(answers or {})
        self.t0 = spec.start.timestamp()
        self.tenants: list[Tenant] = make_tenants(spec.tenants, spec.seed, spec.days)
        weights = [TENANT_WEIGHTS[i % len(TENANT_WEIGHTS)] for i in range(spec.tenants)]
        self.catalogs = {t.name: _Catalog() for t in self.tenants}
        for i in range(spec.properties):
            # The first properties go one to each tenant so that no catalog is empty.
            tenant = self.tenants[i] if i < spec.tenants else entity_rng(
                spec.seed, "owner", i).choices(self.tenants, weights)[0]
            prop = make_property(spec.seed, i, tenant, spec.days)
            tenant.properties.append(prop)
            self.catalogs[tenant.name].add(prop)
        for catalog in self.catalogs.values():
            catalog.freeze()
        self.truths: list[Truth] = []
        for i in range(spec.investors):
            tenant = entity_rng(spec.seed, "client", i).choices(self.tenants, weights)[0]
            inv = make_investor(spec.seed, i, tenant, spec.days)
            catalog = self.catalogs[tenant.name]
            truth = Truth(inv, p_pre_drift=_sigmoid(conversion_logit(inv, catalog, False)),
                          p_post_drift=_sigmoid(conversion_logit(inv, catalog, True)))
            self.truths.append(truth)
        self._by_tenant = {t.name: t for t in self.tenants}
        self._rng = random.Random(f"{spec.seed}:behaviour")
        self._pending: list[tuple[float, int, Emitted]] = []
        self._seq = 0
        self._event_seq = 0
        self._decisions: list[tuple[float, int]] = []  # (time, investor index)
        self._featured: dict[tuple[str, int], list[Property]] = {}

    # ------------------------------------------------------------------ public

    def events(self) -> Iterator[Emitted]:
        """All events of the world in ingest order, generated one day at a time."""
        for day in range(self.spec.days):
            self._simulate_day(day)
            horizon = self.t0 + (day + 1) * DAY_S
            while self._pending and self._pending[0][0] < horizon:
                yield heapq.heappop(self._pending)[2]
        end = self.t0 + self.spec.days * DAY_S
        while self._pending:
            emitted = heapq.heappop(self._pending)[2]
            if emitted.ingest_s < end:
                yield emitted

    # --------------------------------------------------------------- one day

    def _simulate_day(self, day: int) -> None:
        rng = self._rng
        day_start = self.t0 + day * DAY_S
        weekday = (self.spec.start.weekday() + day) % 7
        weekday_factor = 1.0 if weekday < 5 else 0.25
        for tenant in self.tenants:
            for prop in tenant.properties:
                if day <= prop.listed_day < day + 1:
                    self._property_signal(prop, day_start + (prop.listed_day - day) * DAY_S
                                          + rng.uniform(0, 6 * 3600), initial=True)
                elif prop.listed_day < day and rng.random() < 0.006:
                    self._property_signal(prop, day_start + rng.uniform(6, 18) * 3600,
                                          initial=False)
            for offset, esg_theme in tenant.campaigns:
                if day <= offset < day + 1:
                    self._campaign(tenant, day, day_start, esg_theme)
        for truth in self.truths:
            inv = truth.investor
            if inv.arrival_day >= day + 1 or truth.erased:
                continue
            if inv.erase_day is not None and inv.erase_day < day + 1:
                self._erase(truth, day_start + (inv.erase_day - day) * DAY_S)
                continue
            answered = self._answers.get(inv.investor_id) if self._answers else None
            if answered is not None and day_start <= answered < day_start + DAY_S:
                self._answered_profile(truth, answered)
            if day <= inv.arrival_day and inv.has_profile:
                # The CRM record usually exists a little before the first engagement.
                arrival = day_start + (inv.arrival_day - day) * DAY_S
                self._profile(truth, max(day_start, arrival - rng.uniform(0, 6) * 3600))
            elif inv.has_profile and rng.random() < 0.004:
                self._profile(truth, day_start + rng.uniform(8, 18) * 3600, update=True)
            rate = (0.05 + 0.9 * inv.intent) * weekday_factor
            if self._drifted(day_start + DAY_S / 2):
                rate *= DRIFT_BEHAVIOUR["session_rate"]
            if truth.decision_s is not None and truth.decision_s < day_start:
                rate *= 1.4 if truth.converted else 0.3
            if rng.random() < 1 - math.exp(-rate):
                self._session(truth, day, day_start)
        while self._decisions and self._decisions[0][0] < day_start + DAY_S:
            when, index = heapq.heappop(self._decisions)
            self._decide(self.truths[index], when)

    # ---------------------------------------------------------------- events

    def _envelope(self, tenant: str, when: float, source: str) -> dict:
        self._event_seq += 1
        return {
            "tenant": tenant,
            "event_id": f"e{self._event_seq:010d}",
            "event_time": datetime.fromtimestamp(round(when, 3), tz=timezone.utc),
            "source": source,
        }

    def _push(self, topic: str, key: str, payload: dict, event_s: float, delay_s: float,
              late: bool = False, answer: bool = False) -> None:
        self._seq += 1
        emitted = Emitted(event_s + delay_s, topic, key, payload, late, answer)
        heapq.heappush(self._pending, (emitted.ingest_s, self._seq, emitted))

    def _property_signal(self, prop: Property, when: float, initial: bool) -> None:
        rng = self._rng
        if not initial:  # an update: fresher data, sometimes a better band after works
            prop.data_age_days = int(rng.uniform(0, 30))
            if rng.random() < 0.3 and prop.epc_band not in ("A+", "A"):
                prop.epc_band = EPC_ORDER[EPC_ORDER.index(prop.epc_band) - 1]
                prop.energy_intensity = round(prop.energy_intensity * 0.82, 1)
                prop.carbon_intensity = round(prop.carbon_intensity * 0.82, 2)
        payload = self._envelope(prop.tenant, when, rng.choice(
            ("epc-register", "owner-portal", "esg-data-vendor")))
        as_of = datetime.fromtimestamp(when - prop.data_age_days * DAY_S, tz=timezone.utc)
        payload.update(
            property_id=prop.property_id,
            country=prop.country,
            region=prop.region,
            asset_class=prop.asset_class,
            floor_area_m2=prop.floor_area_m2,
            value_eur=prop.value_eur,
            epc_band=prop.epc_band,
            verification=prop.verification,
            data_as_of=as_of.date().isoformat(),
        )
        # Missing optional fields are part of real feeds: each is known only sometimes.
        if prop.sap_score is not None:
            payload["sap_score"] = prop.sap_score
        if prop.energy_star_score is not None:
            payload["energy_star_score"] = prop.energy_star_score
        if prop.certification is not None:
            payload["certifications"] = [prop.certification]
        if rng.random() < 0.85:
            payload["energy_intensity_kwh_m2"] = prop.energy_intensity
        if rng.random() < 0.75:
            payload["carbon_intensity_kgco2e_m2"] = prop.carbon_intensity
        if prop.retrofits:
            payload["retrofits"] = prop.retrofits
        if rng.random() < 0.7:
            flood, wildfire, heat = prop.climate
            payload["climate_risk"] = {"flood": flood, "wildfire": wildfire, "heat": heat}
        delay = rng.uniform(1, 600)
        if self._feed_down(payload["source"], when):
            return  # the provider is down: the signal never reaches us
        self._push("esg.property-signals", prop.property_id, payload, when, delay)

    def _drifted(self, when: float) -> bool:
        """Whether ``when`` (seconds since the epoch) is after the drift onset."""
        return self.spec.drift_at is not None and when >= self.t0 + self.spec.drift_at * DAY_S

    def _feed_down(self, source: str, when: float) -> bool:
        for outage in self.spec.feed_outages:
            start = self.t0 + outage.day * DAY_S
            if (outage.source in (None, source)
                    and start <= when < start + outage.hours * 3600):
                return True
        return False

    def _profile(self, truth: Truth, when: float, update: bool = False) -> None:
        rng = self._rng
        inv = truth.investor
        if update:
            change = rng.random()
            if change < 0.4:
                inv.consents["email"] = "opted_out"
            elif change < 0.7:
                inv.consents["phone"] = "opted_in"
            else:
                inv.preferences = dict(inv.preferences, max_climate_risk=40)
        payload = self._envelope(inv.tenant, when, "crm")
        payload.update(crm_record(inv))
        if rng.random() < 0.8:  # ticket sizes are often left blank in CRMs
            payload["ticket_min_eur"] = inv.ticket_min
            payload["ticket_max_eur"] = inv.ticket_max
        self._push("investor.profiles", inv.investor_id, payload, when, rng.expovariate(1 / 60))

    def _answered_profile(self, truth: Truth, when: float) -> None:
        """The profile an investor fills in when asked, as it stands then; with its own
        random stream and event id, so that no other event of the world changes."""
        inv = truth.investor
        rng = random.Random(f"{self.spec.seed}:profile-answer-message:{inv.investor_id}")
        payload = {"tenant": inv.tenant, "event_id": f"pa:{inv.investor_id}",
                   "event_time": datetime.fromtimestamp(round(when, 3), tz=timezone.utc),
                   "source": "crm", **crm_record(inv)}
        if rng.random() < 0.8:
            payload["ticket_min_eur"] = inv.ticket_min
            payload["ticket_max_eur"] = inv.ticket_max
        self._push("investor.profiles", inv.investor_id, payload, when, rng.expovariate(1 / 60),
                   answer=True)

    def _engagement(self, truth: Truth, when: float, action: str, channel: str,
                    prop: Property | None = None, campaign: str | None = None,
                    duration: float | None = None) -> None:
        rng = self._rng
        inv = truth.investor
        payload = self._envelope(inv.tenant, when, "web" if channel == "web" else "marketing")
        payload.update(investor_id=inv.investor_id, action=action, channel=channel)
        if prop is not None:
            payload["property_id"] = prop.property_id
        if campaign is not None:
            payload["campaign_id"] = campaign
        if duration is not None:
            payload["duration_s"] = round(duration, 1)
        late = rng.random() < self.spec.late_rate
        # Most events arrive within seconds; a few (offline clients, retries) hours late.
        delay = rng.uniform(2, 36) * 3600 if late else rng.expovariate(1 / 20)
        self._push("investor.engagements", inv.investor_id, payload, when, delay, late)
        truth.engagements += 1
        if truth.first_engagement_s is None:
            truth.first_engagement_s = when
            heapq.heappush(self._decisions, (when + inv.decision_delay_days * DAY_S, inv.index))

    def _browse_weights(self, inv: Investor, drifted: bool = False) -> list[float]:
        """Cumulative weights over the catalog's buckets: where this investor's eye goes."""
        catalog = self.catalogs[inv.tenant]
        tilt = 3.0 * (inv.receptivity - 0.5) + (DRIFT_BEHAVIOUR["browse_esg_tilt"] if drifted else 0)
        by_tier = np.exp(tilt * np.array([-1.0, 0.0, 1.0]))
        excluded = inv.preferences.get("excluded_asset_classes", ())
        by_country = np.array([2.5 if c in inv.target_countries else 1.0 for c in catalog.countries])
        by_asset = np.array([(2.0 if a in inv.target_asset_classes else 1.0)
                             * (0.2 if a in excluded else 1.0) for a in catalog.assets])
        w = catalog.counts * by_tier[catalog.tiers] * by_country[catalog.country_index] \
            * by_asset[catalog.asset_index]
        return np.cumsum(w).tolist()

    def _choose_property(self, truth: Truth, now_day: float, drifted: bool = False
                         ) -> Property | None:
        """Pick a property to look at: ESG-receptive investors lean to high-ESG tiers."""
        rng = self._rng
        if drifted:
            if truth.browse_drifted is None:
                truth.browse_drifted = self._browse_weights(truth.investor, drifted=True)
            cumulative = truth.browse_drifted
        else:
            if truth.browse is None:
                truth.browse = self._browse_weights(truth.investor)
            cumulative = truth.browse
        catalog = self.catalogs[truth.investor.tenant]
        i = min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)
        listed = bisect_right(catalog.listed_list[i], now_day)
        if listed == 0:
            return None
        return catalog.bucket_list[i][rng.randrange(listed)]

    def _session(self, truth: Truth, day: int, day_start: float) -> None:
        rng = self._rng
        inv = truth.investor
        local_hour = min(20.0, max(7.0, rng.gauss(11.5, 2.5)))
        # Office hours in the investor's time zone, on this UTC day.
        when = day_start + ((local_hour - inv.utc_offset) % 24) * 3600
        intent, recept = inv.intent, inv.receptivity
        drifted = self._drifted(when)
        p_email = DRIFT_BEHAVIOUR["session_email_open"] if drifted else 0.4
        if rng.random() < p_email and truth.investor.consents["email"] != "opted_out":
            self._engagement(truth, when, "email_open", "email")
            when += rng.expovariate(1 / 60)
        viewed: list[Property] = []
        dwell_scale = DRIFT_BEHAVIOUR["dwell"] if drifted else 1.0
        for _ in range(1 + _poisson(rng, 0.6 + 2.2 * intent)):
            prop = self._choose_property(truth, day + 0.5, drifted)
            if prop is None:
                continue
            viewed.append(prop)
            dwell = dwell_scale * rng.lognormvariate(
                math.log(40 + 80 * intent + 60 * recept * prop.high_esg), 0.6)
            self._engagement(truth, when, "property_view", "web", prop, duration=dwell)
            when += dwell + rng.expovariate(1 / 30)
        if viewed and rng.random() < 0.1 + 0.35 * intent:
            self._engagement(truth, when, "brochure_download", "web", rng.choice(viewed))
            when += rng.expovariate(1 / 40)
        esg_report = DRIFT_BEHAVIOUR["esg_report"] if drifted else 0.0
        if viewed and rng.random() < 0.03 + esg_report + 0.45 * recept * (0.3 + intent):
            green = [p for p in viewed if p.high_esg] or viewed
            self._engagement(truth, when, "esg_report_download", "web", rng.choice(green))
            when += rng.expovariate(1 / 40)
        if rng.random() < 0.02 + 0.3 * intent**2:
            self._engagement(truth, when + rng.uniform(600, 7200), "reply", "email")
        if rng.random() < 0.004 + 0.18 * intent**3:
            self._engagement(truth, when + rng.uniform(600, 7200), "meeting_booked", "meeting")
        if inv.consents["phone"] == "opted_in" and rng.random() < 0.01 + 0.08 * intent:
            self._engagement(truth, when + rng.uniform(3600, 4 * 3600), "call", "phone",
                             duration=rng.uniform(60, 1200))
        if (not truth.unsubscribed and inv.consents["email"] != "opted_out"
                and rng.random() < 0.012 * (1 - intent)):
            truth.unsubscribed = True
            inv.consents["email"] = "opted_out"
            self._engagement(truth, when + rng.uniform(60, 600), "unsubscribe", "email")

    def _campaign(self, tenant: Tenant, day: int, day_start: float, esg_theme: bool) -> None:
        rng = self._rng
        campaign_id = f"cmp-{tenant.name}-{day:03d}"
        pool = [p for p in tenant.properties if p.listed_day <= day]
        if esg_theme:
            pool = [p for p in pool if p.high_esg] or pool
        featured = rng.sample(pool, k=min(3, len(pool)))
        drifted = self._drifted(day_start + DAY_S / 2)
        for truth in self.truths:
            inv = truth.investor
            if (inv.tenant != tenant.name or inv.arrival_day > day + 0.4 or truth.erased
                    or inv.consents["email"] not in ("opted_in", "soft_opt_in")):
                continue
            green = DRIFT_BEHAVIOUR["campaign_esg"] if esg_theme and drifted else 0.0
            p_open = 0.12 + green + 0.45 * inv.intent + (0.2 * inv.receptivity if esg_theme else 0.0)
            if rng.random() >= p_open:
                continue
            when = day_start + (9 - inv.utc_offset) * 3600 + rng.expovariate(1 / (3 * 3600))
            when = max(when, day_start)
            self._engagement(truth, when, "email_open", "email", campaign=campaign_id)
            p_click = 0.15 + green + 0.35 * inv.intent + (0.35 * inv.receptivity if esg_theme else 0.0)
            if featured and rng.random() < p_click:
                prop = rng.choice(featured)
                when += rng.uniform(5, 300)
                self._engagement(truth, when, "email_click", "email", prop, campaign_id)
                self._engagement(truth, when + rng.uniform(2, 20), "property_view", "web", prop,
                                 campaign_id, duration=rng.lognormvariate(math.log(45), 0.6))
            if esg_theme and rng.random() < 0.15 * inv.receptivity:
                self._engagement(truth, when + 3 * 3600, "webinar_attended", "event",
                                 campaign=campaign_id, duration=rng.uniform(900, 3600))

    def _decide(self, truth: Truth, when: float) -> None:
        rng = self._rng
        if truth.erased:
            return
        inv = truth.investor
        drifted = self._drifted(when)
        truth.decision_s = when
        truth.p_convert = truth.p_post_drift if drifted else truth.p_pre_drift
        truth.converted = rng.random() < truth.p_convert
        sync_delay = rng.uniform(60, 6 * 3600)  # CRMs sync in batches
        payload = self._envelope(inv.tenant, when, "crm")
        payload.update(investor_id=inv.investor_id,
                       kind="qualified" if truth.converted else "disqualified")
        self._push("crm.outcomes", inv.investor_id, payload, when, sync_delay)
        if truth.converted:
            held = when + rng.uniform(2, 10) * DAY_S
            payload = self._envelope(inv.tenant, held, "crm")
            payload.update(investor_id=inv.investor_id, kind="meeting_held")
            self._push("crm.outcomes", inv.investor_id, payload, held, sync_delay)
            closed = held + rng.uniform(15, 40) * DAY_S
            payload = self._envelope(inv.tenant, closed, "crm")
            won = rng.random() < 0.35
            payload.update(investor_id=inv.investor_id, kind="deal_won" if won else "deal_lost")
            if won:
                payload["deal_value_eur"] = inv.ticket_max
            self._push("crm.outcomes", inv.investor_id, payload, closed, sync_delay)

    def _erase(self, truth: Truth, when: float) -> None:
        truth.erased = True
        inv = truth.investor
        payload = self._envelope(inv.tenant, when, "privacy-desk")
        payload["investor_id"] = inv.investor_id
        self._push("investor.erasure", inv.investor_id, payload, when, self._rng.uniform(1, 60))


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: fine for the small rates used here.
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


__all__ = ["DRIFT_BEHAVIOUR", "Emitted", "Simulation", "Truth", "WorldSpec", "conversion_logit"]
