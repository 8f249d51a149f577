"""The synthetic world: tenants, their property catalogs and their investors.

Everything here is drawn from seeded ``random.Random`` streams, one per entity, so
adding investors never changes the properties drawn and the same seed always gives
the same world. The distributions are plausible rather than measured: they follow
the published shape of the schemes (EPC stock weighted to the middle bands, a
minority certified, most certificates in the middle levels) and the obvious
physics (energy intensity rises as the EPC band falls; carbon follows the grid).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from dataclasses import dataclass, field

TENANT_NAMES = (
    "acme-capital",
    "borealis-re",
    "cityline-im",
    "dunmore-am",
    "eastgate-reim",
    "fjord-property",
    "granite-peak",
    "harbourline",
)

#: Who may decide the review cases of every generated tenant.
DEV_REVIEWERS = ("reviewer-1", "reviewer-2")


def dev_review_signing_key(seed: int, tenant: str) -> str:
    """The review signing key a generated world gives ``tenant``: 64 hex characters.

    Derived from the seed, so that the same arguments write the same ``config.toml``
    (and the world's decisions can be signed with ``esg-leads review-decision --config
    WORLD/config.toml``). For development only: anyone who knows the seed knows the key.

    >>> dev_review_signing_key(1, "acme-capital") == dev_review_signing_key(1, "acme-capital")
    True
    >>> len({dev_review_signing_key(s, t) for s in (1, 2) for t in ("a", "b")})
    4
    """
    return hmac.new(b"esg-leads/dev-review-signing-key/1", f"{seed}/{tenant}".encode(),
                    hashlib.sha256).hexdigest()


#: Countries by tenant "home market"; each tenant draws from one of these mixes.
MARKETS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("GB", 0.55), ("IE", 0.1), ("NL", 0.15), ("FR", 0.1), ("DE", 0.1)),
    (("DE", 0.35), ("SE", 0.25), ("NL", 0.15), ("FR", 0.1), ("ES", 0.15)),
    (("US", 0.7), ("GB", 0.15), ("AU", 0.15)),
)

#: Grid carbon factor, kgCO2e per kWh (rounded public averages of recent years).
GRID_FACTOR = {"GB": 0.21, "IE": 0.33, "NL": 0.33, "FR": 0.06, "DE": 0.38, "SE": 0.03,
               "ES": 0.17, "US": 0.37, "AU": 0.63, "IT": 0.28}
#: Baseline physical risk by country: (flood, wildfire, heat), 0-100.
CLIMATE_BASE = {"GB": (35, 5, 15), "IE": (30, 5, 8), "NL": (55, 3, 15), "FR": (25, 15, 30),
                "DE": (25, 8, 20), "SE": (15, 10, 8), "ES": (15, 40, 55), "US": (30, 30, 40),
                "AU": (20, 55, 60), "IT": (25, 30, 50)}
#: Investor home jurisdictions by market, and their UTC offset (hours) for office hours.
JURISDICTIONS = {0: (("GB", 0.6), ("IE", 0.1), ("NL", 0.1), ("DE", 0.1), ("FR", 0.1)),
                 1: (("DE", 0.4), ("SE", 0.2), ("NL", 0.15), ("ES", 0.1), ("GB", 0.15)),
                 2: (("US", 0.8), ("GB", 0.1), ("AU", 0.1))}
UTC_OFFSET = {"GB": 0, "IE": 0, "NL": 1, "FR": 1, "DE": 1, "SE": 1, "ES": 1, "IT": 1,
              "US": -5, "AU": 10}

EPC_MIX = (("A+", 0.01), ("A", 0.06), ("B", 0.16), ("C", 0.27), ("D", 0.25), ("E", 0.14),
           ("F", 0.07), ("G", 0.04))
EPC_ORDER = ("A+", "A", "B", "C", "D", "E", "F", "G")
#: Typical energy intensity kWh/m2/yr at each band for an office; other classes scale it.
EPC_INTENSITY = {"A+": 45, "A": 65, "B": 100, "C": 140, "D": 180, "E": 230, "F": 290, "G": 370}
#: SAP rating ranges by band (for GB residential), used to draw a consistent SAP score.
SAP_RANGE = {"A+": (95, 110), "A": (92, 100), "B": (81, 91), "C": (69, 80), "D": (55, 68),
             "E": (39, 54), "F": (21, 38), "G": (1, 20)}

ASSET_MIX = (("office", 0.3), ("logistics", 0.16), ("residential", 0.2), ("retail", 0.12),
             ("industrial", 0.08), ("hotel", 0.05), ("healthcare", 0.04), ("data_centre", 0.02),
             ("mixed_use", 0.03))
ASSET_INTENSITY = {"office": 1.0, "retail": 1.2, "industrial": 0.8, "logistics": 0.55,
                   "residential": 0.8, "hotel": 1.4, "healthcare": 1.6, "data_centre": 5.0,
                   "mixed_use": 1.0}
ASSET_AREA = {"office": 6000, "retail": 3000, "industrial": 9000, "logistics": 25000,
              "residential": 4000, "hotel": 8000, "healthcare": 7000, "data_centre": 12000,
              "mixed_use": 10000}
PRICE_PER_M2 = {"office": 5500, "retail": 3500, "industrial": 1400, "logistics": 1300,
                "residential": 4500, "hotel": 4000, "healthcare": 3800, "data_centre": 9000,
                "mixed_use": 4200}

#: Certification scheme most used in each country.
SCHEME_BY_COUNTRY = {"GB": "BREEAM", "IE": "BREEAM", "NL": "BREEAM", "ES": "BREEAM",
                     "FR": "BREEAM", "DE": "DGNB", "SE": "BREEAM", "US": "LEED", "AU": "NABERS",
                     "IT": "LEED"}
LEVEL_MIX = {
    "BREEAM": (("pass", 0.05), ("good", 0.22), ("very_good", 0.4), ("excellent", 0.27),
               ("outstanding", 0.06)),
    "LEED": (("certified", 0.18), ("silver", 0.3), ("gold", 0.4), ("platinum", 0.12)),
    "DGNB": (("bronze", 0.05), ("silver", 0.3), ("gold", 0.5), ("platinum", 0.15)),
}
INVESTOR_TYPES = (("private_individual", 0.2), ("family_office", 0.2), ("asset_manager", 0.25),
                  ("pension_fund", 0.12), ("insurer", 0.08), ("reit", 0.1),
                  ("sovereign_wealth", 0.05))
TICKET_MEDIAN = {"private_individual": 2e6, "family_office": 10e6, "asset_manager": 40e6,
                 "pension_fund": 80e6, "insurer": 60e6, "reit": 50e6, "sovereign_wealth": 200e6}
HIGH_EPC = frozenset(("A+", "A", "B"))


def pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    """Draw one label from ``(label, weight)`` pairs whose weights sum to about 1."""
    u = rng.random() * sum(w for _, w in weighted)
    for label, weight in weighted:
        u -= weight
        if u <= 0:
            return label
    return weighted[-1][0]


def entity_rng(seed: int, kind: str, index: int) -> random.Random:
    """An independent, reproducible random stream for one entity."""
    return random.Random(f"{seed}:{kind}:{index}")


@dataclass(slots=True)
class Tenant:
    name: str
    market: int
    #: Day offsets of the tenant's email campaigns, and whether each is ESG-themed.
    campaigns: list[tuple[float, bool]] = field(default_factory=list)
    properties: list[Property] = field(default_factory=list)


@dataclass(slots=True)
class Property:
    property_id: str
    tenant: str
    country: str
    region: str
    asset_class: str
    floor_area_m2: float
    value_eur: float
    epc_band: str
    sap_score: int | None
    energy_star_score: int | None
    certification: dict | None
    energy_intensity: float
    carbon_intensity: float
    retrofits: list[dict]
    climate: tuple[int, int, int]
    verification: str
    data_age_days: int
    listed_day: float  #: first appearance in the stream (0 = known from the start)
    #: Latent ESG quality in [0, 1] that investors' browsing responds to.
    quality: float = 0.0

    @property
    def high_esg(self) -> bool:
        return self.epc_band in HIGH_EPC or self.certification is not None


@dataclass(slots=True)
class Investor:
    investor_id: str
    tenant: str
    index: int
    receptivity: float  #: latent ESG receptivity, 0-1
    intent: float  #: latent purchase intent, 0-1
    investor_type: str
    subscriber_type: str
    jurisdiction: str
    utc_offset: int
    target_countries: list[str]
    target_asset_classes: list[str]
    ticket_min: float
    ticket_max: float
    risk_tolerance: str
    preferences: dict
    consents: dict[str, str]
    do_not_call: bool
    has_profile: bool
    arrival_day: float
    decision_delay_days: float
    erase_day: float | None
    name: str = ""
    email: str = ""
    phone: str = ""


def crm_record(inv: Investor) -> dict:
    """An investor's CRM record as ``investor.profiles`` carries it (tickets aside)."""
    return dict(
        investor_id=inv.investor_id,
        investor_type=inv.investor_type,
        subscriber_type=inv.subscriber_type,
        jurisdiction=inv.jurisdiction,
        preferences=inv.preferences,
        target_countries=inv.target_countries,
        target_asset_classes=inv.target_asset_classes,
        risk_tolerance=inv.risk_tolerance,
        consents=[{"channel": c, "status": s} for c, s in inv.consents.items()],
        do_not_call=inv.do_not_call,
        contact={"name": inv.name, "email": inv.email, "phone": inv.phone},
    )


def make_tenants(count: int, seed: int, days: int) -> list[Tenant]:
    tenants = []
    for i in range(count):
        name = TENANT_NAMES[i] if i < len(TENANT_NAMES) else f"tenant-{i:03d}"
        rng = entity_rng(seed, "tenant", i)
        campaigns = []
        day = rng.uniform(1, 6)
        while day < days:
            campaigns.append((day, rng.random() < 0.4))
            day += rng.uniform(5, 10)
        tenants.append(Tenant(name=name, market=i % len(MARKETS), campaigns=campaigns))
    return tenants


def make_property(seed: int, index: int, tenant: Tenant, days: int) -> Property:
    rng = entity_rng(seed, "property", index)
    country = pick(rng, MARKETS[tenant.market])
    asset = pick(rng, ASSET_MIX)
    retrofits = []
    band = pick(rng, EPC_MIX)
    if rng.random() < 0.2:  # a retrofit programme lifts the band by one (not to A+)
        for _ in range(rng.randint(1, 3)):
            retrofits.append({"kind": rng.choice(("hvac", "insulation", "glazing", "solar_pv",
                                                  "heat_pump", "led_lighting", "bms")),
                              "year": rng.randint(2012, 2025)})
        band = EPC_ORDER[max(1, EPC_ORDER.index(band) - 1)]
    rank = EPC_ORDER.index(band)
    intensity = EPC_INTENSITY[band] * ASSET_INTENSITY[asset] * math.exp(rng.gauss(0, 0.18))
    carbon = intensity * GRID_FACTOR[country] * math.exp(rng.gauss(0, 0.1))
    base = CLIMATE_BASE[country]
    coastal = rng.random() < 0.25
    climate = (
        _clip(base[0] + (25 if coastal else 0) + rng.gauss(0, 12)),
        _clip(base[1] + rng.gauss(0, 10)),
        _clip(base[2] + rng.gauss(0, 10)),
    )
    certification = None
    p_cert = 0.45 - 0.05 * rank if asset not in ("residential",) else 0.08
    if rng.random() < max(0.03, p_cert):
        scheme = SCHEME_BY_COUNTRY[country]
        verified = rng.random() < 0.82
        if scheme == "NABERS":
            stars = min(6.0, max(1.0, round((5.0 - 0.4 * rank + rng.gauss(0, 0.7)) * 2) / 2))
            certification = {"scheme": "NABERS", "stars": stars, "verified": verified}
        else:
            certification = {"scheme": scheme, "level": pick(rng, LEVEL_MIX[scheme]),
                             "verified": verified}
    energy_star = None
    if country == "US":
        energy_star = int(min(100, max(1, round(88 - 9 * rank + rng.gauss(0, 10)))))
    sap = None
    if country == "GB" and asset == "residential":
        lo, hi = SAP_RANGE[band]
        sap = rng.randint(lo, hi)
    area = ASSET_AREA[asset] * math.exp(rng.gauss(0, 0.6))
    quality = (
        0.55 * (1 - rank / 7)
        + 0.3 * (certification is not None)
        + 0.15 * (1 - max(climate) / 100)
    )
    return Property(
        property_id=f"prop-{index:06d}",
        tenant=tenant.name,
        country=country,
        region=f"{country}-{'coast' if coastal else 'inland'}",
        asset_class=asset,
        floor_area_m2=round(area, 1),
        value_eur=round(area * PRICE_PER_M2[asset] * math.exp(rng.gauss(0, 0.25)), -3),
        epc_band=band,
        sap_score=sap,
        energy_star_score=energy_star,
        certification=certification,
        energy_intensity=round(intensity, 1),
        carbon_intensity=round(carbon, 2),
        retrofits=retrofits,
        climate=climate,
        verification="third_party" if rng.random() < 0.7 else "self_reported",
        data_age_days=int(rng.expovariate(1 / 300)),
        listed_day=0.0 if rng.random() < 0.8 else rng.uniform(0, days * 0.8),
        quality=quality,
    )


def make_investor(seed: int, index: int, tenant: Tenant, days: int) -> Investor:
    rng = entity_rng(seed, "investor", index)
    receptivity = rng.betavariate(2, 2)
    intent = rng.betavariate(1.6, 3.5)
    itype = pick(rng, INVESTOR_TYPES)
    subscriber = "individual" if itype == "private_individual" or (
        itype == "family_office" and rng.random() < 0.5) else "corporate"
    jurisdiction = pick(rng, JURISDICTIONS[tenant.market])
    countries = [c for c, _ in MARKETS[tenant.market]]
    targets = sorted(set(rng.sample(countries, k=rng.randint(1, min(3, len(countries))))))
    assets = sorted(set(pick(rng, ASSET_MIX) for _ in range(rng.randint(1, 3))))
    median = TICKET_MEDIAN[itype]
    ticket_max = round(median * math.exp(rng.gauss(0, 0.5)), -4)
    # Stated preferences follow receptivity only loosely: some talk ESG and browse
    # anything, some care and say nothing.
    stated = receptivity + rng.gauss(0, 0.25)
    prefs: dict = {}
    if stated > 0.55:
        prefs["min_epc_band"] = "B" if stated > 0.8 else "C"
        if rng.random() < 0.5:
            prefs["required_certifications"] = [SCHEME_BY_COUNTRY[targets[0]]]
        if jurisdiction not in ("US", "AU"):
            prefs["sfdr_target"] = "article_9" if stated > 0.85 else "article_8"
        if jurisdiction == "GB" and rng.random() < 0.5:
            prefs["uk_sdr_label"] = "sustainability_improvers" if stated < 0.8 else "sustainability_focus"
        prefs["max_climate_risk"] = 50
    elif stated > 0.35 and rng.random() < 0.5:
        prefs["min_epc_band"] = "D"
    if rng.random() < 0.15:
        prefs["excluded_asset_classes"] = [rng.choice(("data_centre", "hotel", "retail"))]
    consents = {
        "email": pick(rng, (("opted_in", 0.6), ("soft_opt_in", 0.15), ("none", 0.2),
                            ("opted_out", 0.05))),
        "phone": pick(rng, (("opted_in", 0.3), ("none", 0.65), ("opted_out", 0.05))),
        "sms": pick(rng, (("opted_in", 0.1), ("none", 0.85), ("opted_out", 0.05))),
    }
    first = f"inv{index}"
    return Investor(
        investor_id=f"inv-{index:07d}",
        tenant=tenant.name,
        index=index,
        receptivity=receptivity,
        intent=intent,
        investor_type=itype,
        subscriber_type=subscriber,
        jurisdiction=jurisdiction,
        utc_offset=UTC_OFFSET.get(jurisdiction, 0),
        target_countries=targets,
        target_asset_classes=assets,
        ticket_min=round(ticket_max * rng.uniform(0.1, 0.5), -4),
        ticket_max=ticket_max,
        risk_tolerance=pick(rng, (("low", 0.3), ("medium", 0.5), ("high", 0.2))),
        preferences=prefs,
        consents=consents,
        do_not_call=rng.random() < 0.15,
        has_profile=rng.random() < 0.9,
        arrival_day=0.0 if rng.random() < 0.3 else rng.uniform(0, days * 0.8),
        decision_delay_days=min(45.0, max(3.0, rng.lognormvariate(math.log(12), 0.5))),
        erase_day=rng.uniform(days * 0.3, days) if rng.random() < 0.003 else None,
        name=f"Investor {first.title()}",
        email=f"{first}@example.org",
        phone=f"+44 20 7946 {index % 10000:04d}",
    )


def _clip(value: float) -> int:
    return int(min(100, max(0, round(value))))
