"""The ESG signal agent: a tenant's property catalog, versioned in event time.

Keeps every property's recent ESG facts as versions ordered by the signal's event
time, so that an engagement is enriched with the facts *as they stood when the
investor looked* (not as they stand now: a later EPC upgrade must not make an old
view look greener). Also keeps the catalog's own mix — the share of properties
that are energy-efficient, certified, low climate risk — which is the base rate an
investor's ESG-content engagement is compared with.

One catalog per tenant: the mix is a per-tenant fact, and an enrichment is a dict
lookup and a bisection, cheap enough that one worker per tenant keeps up.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from esg_leads.operators.dedup import EventIdDedup
from esg_leads.operators.feed_health import FeedWatch
from esg_leads.operators.esg_reference import energy_star_certifiable, epc_band_from_sap
from esg_leads.operators.validation import dead_letter, processing_error
from esg_leads.schemas.common import EPC_RANK, epoch_seconds
from esg_leads.schemas.inputs import PropertySignal
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.records import CatalogMix, EnrichedEngagement, FeedStatus, Ingested, PropertyFacts
from esg_leads.schemas.settings import Settings

AGENT_VERSION = "property-catalog/1"
#: Versions kept per property; older ones are only needed for very late engagements.
MAX_VERSIONS = 8
_HIGH_EPC_RANK = EPC_RANK["B"]


def salted_id(salt: str, value: str) -> str:
    """A stable pseudonym for an identifier (used for erased subjects and contacts).

    >>> salted_id("s", "inv-1") == salted_id("s", "inv-1") != salted_id("t", "inv-1")
    True
    """
    return hashlib.blake2b(value.encode(), key=salt.encode()[:64], digest_size=16).hexdigest()


def facts_from_signal(signal: PropertySignal, low_risk_max: int,
                      ref: tuple[str, str, int, int] | None = None) -> PropertyFacts:
    """Condense a property signal into the facts the flow reasons with.

    "High EPC" means the top efficiency classes: EPC A+ to B, from the band or, when
    only a SAP rating is given, from the SAP band table; for US assets without an
    EPC an ENERGY STAR score that qualifies for certification (75+) counts the same.
    """
    band = signal.epc_band.value if signal.epc_band is not None else None
    if band is None and signal.sap_score is not None:
        band = epc_band_from_sap(signal.sap_score)
    rank = EPC_RANK[band] if band is not None else None
    star = signal.energy_star_score
    high_epc = (rank is not None and rank <= _HIGH_EPC_RANK) or (
        rank is None and star is not None and energy_star_certifiable(star))
    certs = signal.certifications
    label = None
    if certs:
        first = certs[0]
        level = getattr(first, "level", None)
        label = f"{first.scheme} {level.value}" if level is not None else f"{first.scheme} {first.stars:g}"
    risk = signal.climate_risk
    max_risk = max(risk.flood, risk.wildfire, risk.heat) if risk is not None else None
    return PropertyFacts(
        property_id=signal.property_id,
        tenant=signal.tenant,
        effective=signal.event_time,
        country=signal.country,
        asset_class=signal.asset_class.value,
        value_eur=signal.value_eur,
        epc_band=band,
        epc_rank=rank,
        energy_star_score=star,
        certified=bool(certs),
        certified_verified=any(c.verified for c in certs),
        certification=label,
        energy_intensity=signal.energy_intensity_kwh_m2,
        carbon_intensity=signal.carbon_intensity_kgco2e_m2,
        max_climate_risk=max_risk,
        third_party=signal.verification.value == "third_party",
        data_as_of_ordinal=signal.data_as_of.toordinal(),
        high_epc=high_epc,
        low_climate_risk=max_risk is not None and max_risk <= low_risk_max,
        ref=ref,
        source=signal.source,
    )


@dataclass(slots=True)
class _Versions:
    times: list[float] = field(default_factory=list)
    facts: list[PropertyFacts] = field(default_factory=list)


class PropertyCatalog:
    """State of one tenant's catalog; see the module docstring.

    Methods return ``None`` for a duplicate delivery, which the caller dead-letters.
    """

    def __init__(self, settings: Settings) -> None:
        self._low_risk_max = settings.features.low_climate_risk_max
        self._salt = settings.contact_hash_salt.get_secret_value()
        self._properties: dict[str, _Versions] = {}
        self._dedup = EventIdDedup(settings.dedup.horizon)
        self._erased: set[str] = set()
        self._n = self._high = self._certified = self._low_risk = 0
        self._valued = 0
        self._log_value_sum = 0.0
        self._mix = CatalogMix(0, 0.0, 0.0, 0.0)
        self.counts: Counter[tuple[str, str]] = Counter()
        #: source -> properties whose current facts it stated (for feed degradation)
        self._by_source: Counter[str] = Counter()
        self._feeds: FeedWatch | None = None
        self.configure_feeds(settings)

    def configure_feeds(self, settings: Settings) -> None:
        """Watch the sources ``settings.sources`` names (a resumed run's settings too)."""
        limits = {name: cfg.max_staleness for name, cfg in settings.sources.items()}
        feeds = self.__dict__.get("_feeds")  # absent in snapshots from before feed health
        if not limits:
            self._feeds = None
        elif feeds is None:
            self._feeds = FeedWatch(limits)
        else:
            feeds.configure(limits)

    def process(self, items: list[Ingested], now: datetime) -> list:
        """Signals update the catalog; engagements come out enriched (or dead-lettered).

        An event the catalog fails on becomes a ``processing_error`` dead letter: one
        bad event must not stop the flow, nor vanish.
        """
        out: list = []
        for ingested in items:
            try:
                self._process_one(ingested, now, out)
            except Exception as error:  # noqa: BLE001 - errors are data here
                out.append(processing_error(ingested, error, now))
        return out

    def _process_one(self, ingested: Ingested, now: datetime, out: list) -> None:
        topic = ingested.topic
        if topic != "esg.property-signals":  # a signal: once its facts are in the shares
            self.watch(ingested, now, out)
        if topic == "investor.engagements":
            if self.is_erased(ingested.event.investor_id):  # type: ignore[attr-defined]
                out.append(dead_letter(ingested, DlqReason.ERASED_SUBJECT,
                                       "investor has been erased; payload withheld", now,
                                       withhold_value=True))
                return
            enriched = self.enrich(ingested)
            out.append(enriched if enriched is not None else _duplicate(ingested, now))
        elif topic == "esg.property-signals":
            if self.apply_signal(ingested) is None:
                out.append(_duplicate(ingested, now))
            else:
                self.counts[("used", topic)] += 1
            self.watch(ingested, now, out)
        elif topic == "investor.erasure":
            # Counted as used by the investor stage, which also receives it.
            self.erase(ingested.event.investor_id)  # type: ignore[attr-defined]
        else:
            raise ValueError(f"property catalog does not handle topic {topic!r}")

    def watch(self, ingested: Ingested, now: datetime, out: list) -> None:
        """Feed health at this event's time: a signal says its source spoke, any event
        moves the tenant's clock (the intake passes the events the catalog does not take
        here too, so a stale source is seen as soon as any event passes its limit)."""
        feeds = self.__dict__.get("_feeds")
        if feeds is None:
            return
        event = ingested.event
        when = epoch_seconds(event.event_time)  # type: ignore[attr-defined]
        alerts = (feeds.signal(ingested.tenant, event.source, when, now)  # type: ignore[attr-defined]
                  if ingested.topic == "esg.property-signals"
                  else feeds.advance(ingested.tenant, when, now))
        for alert in alerts:
            self.counts[("alerts", alert["kind"])] += 1
        out.extend(alerts)
        if alerts:
            # A source went stale or recovered: every investor shard of the tenant hears
            # of it before anything this event closes (operators/degradation.py).
            out.append(self.feed_status(ingested.tenant, when))

    def feed_status(self, tenant: str, clock: float) -> FeedStatus | None:
        """The watched sources at event time ``clock`` (``None``: none watched)."""
        feeds = self.__dict__.get("_feeds")
        if feeds is None:
            return None
        n = self._n
        by_source = self.__dict__.get("_by_source") or {}
        return feeds.status(tenant, clock, {k: v / n for k, v in by_source.items()} if n else {})

    # ------------------------------------------------------------- signals

    def apply_signal(self, ingested: Ingested) -> PropertyFacts | None:
        signal: PropertySignal = ingested.event  # type: ignore[assignment]
        if not self._dedup.first_time(f"{ingested.topic}/{signal.event_id}", signal.event_time):
            return None
        # The signal's position travels with its facts: scores name the signals they used.
        facts = facts_from_signal(signal, self._low_risk_max, ingested.ref())
        versions = self._properties.get(signal.property_id)
        if versions is None:
            versions = self._properties[signal.property_id] = _Versions()
        previous = versions.facts[-1] if versions.facts else None
        ts = epoch_seconds(signal.event_time)
        at = bisect_right(versions.times, ts)
        versions.times.insert(at, ts)
        versions.facts.insert(at, facts)
        if len(versions.times) > MAX_VERSIONS:
            del versions.times[0], versions.facts[0]
        latest = versions.facts[-1]
        if latest is not previous:
            self._count(previous, -1)
            self._count(latest, +1)
            self._mix = self._compute_mix()
        return facts

    def _count(self, facts: PropertyFacts | None, sign: int) -> None:
        if facts is None:
            return
        self._n += sign
        if facts.source is not None:
            # A snapshot from before sources were counted has no ``_by_source``.
            self.__dict__.setdefault("_by_source", Counter())[facts.source] += sign
        self._high += sign * facts.high_epc
        self._certified += sign * facts.certified
        self._low_risk += sign * facts.low_climate_risk
        if facts.value_eur:
            self._valued += sign
            self._log_value_sum += sign * math.log(facts.value_eur)

    def _compute_mix(self) -> CatalogMix:
        n = self._n
        if n == 0:
            return CatalogMix(0, 0.0, 0.0, 0.0)
        log_value = self._log_value_sum / self._valued if self._valued else None
        return CatalogMix(n, self._high / n, self._certified / n, self._low_risk / n, log_value)

    # --------------------------------------------------------- engagements

    def facts_as_of(self, property_id: str, when: datetime) -> PropertyFacts | None:
        """The version in force at ``when``, or ``None`` if the property was unknown then."""
        versions = self._properties.get(property_id)
        if versions is None:
            return None
        at = bisect_right(versions.times, epoch_seconds(when))
        return versions.facts[at - 1] if at else None

    def enrich(self, ingested: Ingested) -> EnrichedEngagement | None:
        event = ingested.event
        if not self._dedup.first_time(f"{ingested.topic}/{event.event_id}", event.event_time):  # type: ignore[attr-defined]
            return None
        property_id = event.property_id  # type: ignore[attr-defined]
        facts = self.facts_as_of(property_id, event.event_time) if property_id else None  # type: ignore[attr-defined]
        return EnrichedEngagement(ingested, facts, self._mix)

    # ------------------------------------------------------------- erasure

    def erase(self, investor_id: str) -> None:
        """Remember (as a salted hash only) that this investor must not be processed."""
        self._erased.add(salted_id(self._salt, investor_id))

    def is_erased(self, investor_id: str) -> bool:
        return bool(self._erased) and salted_id(self._salt, investor_id) in self._erased

    # ---------------------------------------------------------------- info

    @property
    def mix(self) -> CatalogMix:
        return self._mix

    def __len__(self) -> int:
        return len(self._properties)


def _duplicate(ingested: Ingested, now: datetime) -> dict:
    return dead_letter(ingested, DlqReason.DUPLICATE,
                       f"event_id {ingested.event.event_id!r} already processed", now)  # type: ignore[attr-defined]


__all__ = ["PropertyCatalog", "facts_from_signal", "salted_id"]
