"""Every feature's value, checked against a deliberately naive reference.

A small fixture — three properties, one investor with a stated profile, nine
engagements in two windows a day apart — goes through the real path (window
aggregate, investor state, ``compute_features``). ``reference_features`` below
computes the same 43 features straight from the list of engagements, one feature at a
time, from the meanings documented in ``operators/features.py`` (and the half-lives,
depth weights and shrinkage stated there): no running counters, no shared code with
the module under test. ESG alignment, its six components, intent and readiness are
written out the same way. A few values are also stated as plain numbers, worked out
by hand in the comments, so the reference cannot drift with the module.

Then monotonicity properties (hypothesis): more verified certifications never lower
``certification``, lower climate risk never lowers ``climate_resilience``, a stated
SDR label never lowers ``stated_commitment``, and more recent engagement never lowers
readiness.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.features import (
    FEATURE_NAMES,
    compute_features,
    engagement_readiness,
    esg_alignment,
    intent_score,
)
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.investor_window import WindowAggregate
from esg_leads.schemas.codec import decode_event
from esg_leads.schemas.records import CatalogMix, EnrichedEngagement, Ingested, PropertyFacts

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
HALF_LIVES = (1.0, 7.0, 30.0)  # eng_1d, eng_7d, eng_30d; content decays over 30 days
CONTENT_HALF_LIFE = 30.0
PRIOR = 3.0  # pseudo-views that shrink shares towards neutral
DEPTH = {"brochure_download": 1.0, "esg_report_download": 1.5, "webinar_attended": 1.0,
         "reply": 2.0, "meeting_booked": 4.0, "call": 2.0}
EPC_RANK = {"A+": 0, "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7}
MIX = CatalogMix(10, high_epc=0.2, certified=0.1, low_climate_risk=0.3, log_value=math.log(4e6))


def prop(pid, *, band, country, asset, value, data_days_before_t0, high=False, certified=False,
         low_risk=False, third_party=True, climate_risk=None) -> PropertyFacts:
    return PropertyFacts(
        property_id=pid, tenant="acme", effective=T0 - 90 * DAY, country=country,
        asset_class=asset, value_eur=value, epc_band=band, epc_rank=EPC_RANK[band],
        energy_star_score=None, certified=certified, certified_verified=certified,
        certification="BREEAM excellent" if certified else None, energy_intensity=None,
        carbon_intensity=None, max_climate_risk=climate_risk, third_party=third_party,
        data_as_of_ordinal=T0.toordinal() - data_days_before_t0, high_epc=high,
        low_climate_risk=low_risk)


GREEN = prop("green", band="A", country="GB", asset="office", value=3e6, data_days_before_t0=30,
             high=True, certified=True, low_risk=True, climate_risk=20)
BROWN = prop("brown", band="F", country="DE", asset="retail", value=9e6, data_days_before_t0=400,
             third_party=False, climate_risk=70)
SAFE = prop("safe", band="D", country="GB", asset="office", value=None, data_days_before_t0=100,
            low_risk=True)


class Touch(NamedTuple):
    window: int  # 0 or 1
    minutes_before_end: int
    action: str
    facts: PropertyFacts | None = None
    duration: float | None = None
    campaign: str | None = None


WINDOW_ENDS = (T0, T0 + DAY)
TOUCHES = (
    Touch(0, 50, "property_view", GREEN, 60.0),
    Touch(0, 40, "property_view", BROWN, 20.0),
    Touch(0, 30, "esg_report_download"),
    Touch(0, 20, "email_open"),
    Touch(1, 50, "property_view", GREEN, 40.0),
    Touch(1, 45, "property_view", SAFE, 30.0),
    Touch(1, 40, "brochure_download", SAFE),
    Touch(1, 30, "meeting_booked"),
    Touch(1, 20, "reply"),
)
PROFILE = {
    "investor_type": "pension_fund", "subscriber_type": "corporate", "jurisdiction": "GB",
    "consents": [{"channel": "email", "status": "opted_in"}], "ticket_max_eur": 5e6,
    "target_countries": ["GB"], "target_asset_classes": ["office"],
    "preferences": {"min_epc_band": "C", "required_certifications": ["BREEAM"],
                    "sfdr_target": "article_8", "uk_sdr_label": "sustainability_focus",
                    "max_climate_risk": 40},
}
_offsets = iter(range(10**9))


def engagement(t: Touch, mix: CatalogMix = MIX) -> EnrichedEngagement:
    offset = next(_offsets)
    at = WINDOW_ENDS[t.window] - t.minutes_before_end * MINUTE
    payload = {"tenant": "acme", "event_id": f"v{offset}", "event_time": at.isoformat(),
               "source": "web", "investor_id": "inv-1", "action": t.action, "channel": "web"}
    if t.facts is not None:
        payload["property_id"] = t.facts.property_id
    if t.duration is not None:
        payload["duration_s"] = t.duration
    if t.campaign is not None:
        payload["campaign_id"] = t.campaign
    value = orjson.dumps(payload)
    ingested = Ingested(decode_event("investor.engagements", value), "investor.engagements", 0,
                        offset, 1_772_000_000_000 + offset, b"inv-1", value)
    return EnrichedEngagement(ingested, t.facts, mix)


def profile_event(**overrides):
    payload = {"tenant": "acme", "event_id": f"p{next(_offsets)}", "event_time": T0.isoformat(),
               "source": "crm", "investor_id": "inv-1", **PROFILE, **overrides}
    return decode_event("investor.profiles", orjson.dumps(payload))


def build_state(touches=TOUCHES, profile=True, mix=MIX, **profile_overrides) -> InvestorProfileState:
    """The module's own path: windows aggregated, applied to the investor state."""
    state = InvestorProfileState(HALF_LIVES)
    if profile:
        state.apply_profile(profile_event(**profile_overrides), "ref-1")
    for window, end in enumerate(WINDOW_ENDS):
        items = [engagement(t, mix) for t in touches if t.window == window]
        if items:
            aggregate = WindowAggregate()
            for item in items:
                aggregate.add(item, stale_days=365)
            state.apply_window(aggregate, end, HALF_LIVES)
    return state


def module_features(as_of: datetime, **kwargs) -> tuple[InvestorProfileState, dict[str, float]]:
    state = build_state(**kwargs)
    state.decay_to(as_of, HALF_LIVES)
    return state, compute_features(state, as_of)


# ----------------------------------------------------------- the naive reference

def reference_features(touches, profile: dict | None, as_of: datetime, mix=MIX) -> dict[str, float]:
    """Each feature from its documented meaning, recomputed from scratch per feature."""
    days = lambda a, b: (a - b).total_seconds() / 86_400  # noqa: E731
    ends = sorted({WINDOW_ENDS[t.window] for t in touches})

    def decay(t: Touch, half_life: float) -> float:  # counters decay from their window's end
        return 0.5 ** (days(as_of, WINDOW_ENDS[t.window]) / half_life)

    def decayed_count(half_life, which=lambda t: True, weight=lambda t: 1.0):
        return sum(weight(t) * decay(t, half_life) for t in touches if which(t))

    depth = lambda t: DEPTH.get(t.action, 0.0)  # noqa: E731
    viewed = lambda t: t.action == "property_view"  # noqa: E731
    with_facts = [t for t in touches if t.facts is not None]
    w = {t: decay(t, CONTENT_HALF_LIFE) for t in with_facts}  # content weights
    n = sum(w.values())
    catalog = lambda share: sum(w[t] * share for t in with_facts) / n  # noqa: E731
    share = lambda flag, expected: (sum(w[t] for t in with_facts if flag(t.facts))  # noqa: E731
                                    + PRIOR * expected) / (n + PRIOR)
    e_high, e_cert, e_low = catalog(mix.high_epc), catalog(mix.certified), catalog(mix.low_climate_risk)
    high = share(lambda f: f.high_epc, e_high)
    cert = share(lambda f: f.certified, e_cert)
    low = share(lambda f: f.low_climate_risk, e_low)
    ranked = [t for t in with_facts if t.facts.epc_rank is not None]
    rank_n = sum(w[t] for t in ranked)
    mean_rank = sum(w[t] * t.facts.epc_rank for t in ranked) / rank_n
    ages = sum(w[t] * (WINDOW_ENDS[t.window].toordinal() - t.facts.data_as_of_ordinal)
               for t in with_facts)

    def preference(key, targets):
        table = {}
        for t in with_facts:
            k = getattr(t.facts, key)
            table[k] = table.get(k, 0.0) + w[t]
        total = sum(table.values())
        on = sum(v for k, v in table.items() if k in targets)
        return (on + PRIOR * 0.5) / (total + PRIOR), sum((v / total) ** 2 for v in table.values())

    prefs = (profile or {}).get("preferences", {})
    stated = 0.0
    if profile:
        stated += {"A+": .35, "A": .35, "B": .3, "C": .2, "D": .1}.get(prefs.get("min_epc_band"), 0)
        stated += 0.2 if prefs.get("required_certifications") else 0
        stated += {"article_9": 0.3, "article_8": 0.2}.get(prefs.get("sfdr_target"), 0)
        stated += 0.15 if prefs.get("uk_sdr_label") else 0
        stated += 0.1 if prefs.get("max_climate_risk") is not None else 0
        stated = min(1.0, stated)
    min_rank = EPC_RANK.get(prefs.get("min_epc_band"))
    pref_epc = ((sum(w[t] for t in ranked if t.facts.epc_rank <= min_rank) + PRIOR * 0.5)
                / (rank_n + PRIOR)) if min_rank is not None else 0.0
    geo, geo_conc = preference("country", (profile or {}).get("target_countries", ()))
    asset, asset_conc = preference("asset_class", (profile or {}).get("target_asset_classes", ()))
    ticket = (profile or {}).get("ticket_max_eur")
    valued = [t for t in with_facts if t.facts.value_eur]
    mean_log_value = sum(w[t] * math.log(t.facts.value_eur) for t in valued) / sum(w[t] for t in valued)
    green_dwell = [t.duration for t in touches if viewed(t) and t.duration is not None
                   and (t.facts.high_epc or t.facts.certified)]
    other_dwell = [t.duration for t in touches if viewed(t) and t.duration is not None
                   and not (t.facts.high_epc or t.facts.certified)]
    first = min(WINDOW_ENDS[t.window] - t.minutes_before_end * MINUTE for t in touches)
    before = [e for e in ends if e < as_of] if as_of in ends else ends
    tenure = min(90.0, days(as_of, first))
    windows = len(ends)
    consents = {c["channel"]: c["status"] for c in (profile or {}).get("consents", [])}
    # seek_dwell: the views no campaign led to, with 3 pseudo-views of a minute.
    sought = [math.log1p(t.duration) for t in touches
              if viewed(t) and t.duration is not None and t.campaign is None]
    # known_days: the profile (stated at T0 in these fixtures) or the first touch.
    known_since = min([first] + ([T0] if profile else []))
    # thesis_fit and risk_fit: each property once, weighted by its decayed touches.
    by_property: dict[str, list] = {}
    for t in with_facts:
        by_property.setdefault(t.facts.property_id, [0.0, t.facts])[0] += w[t]
    targets_c = (profile or {}).get("target_countries") or ()
    targets_a = (profile or {}).get("target_asset_classes") or ()
    excluded = prefs.get("excluded_asset_classes") or ()
    fit_sum = fit_w = 0.0
    for weight, facts in by_property.values():
        checks = []
        if targets_a or excluded:
            checks.append(1.0 if facts.asset_class in targets_a and facts.asset_class not in excluded
                          else 1.0 if not targets_a and facts.asset_class not in excluded else 0.0)
        if targets_c:
            checks.append(1.0 if facts.country in targets_c else 0.0)
        if ticket and facts.value_eur:
            checks.append(math.exp(-abs(math.log(facts.value_eur) - math.log(ticket)) / 2))
        if checks:
            fit_sum += weight * sum(checks) / len(checks)
            fit_w += weight
    limit = prefs.get("max_climate_risk")
    if limit is None:
        limit = {"low": 33, "medium": 66, "high": 100}.get((profile or {}).get("risk_tolerance"))
    rated = [(weight, f) for weight, f in by_property.values() if f.max_climate_risk is not None]
    risk = (0.5 if limit is None else
            (sum(weight for weight, f in rated if f.max_climate_risk <= limit) + PRIOR * 0.5)
            / (sum(weight for weight, _ in rated) + PRIOR))
    known = [profile and k in profile for k in ("investor_type", "jurisdiction", "consents",
                                                "ticket_max_eur", "target_countries",
                                                "target_asset_classes", "risk_tolerance")]
    return {
        "eng_1d": math.log1p(decayed_count(1.0)),
        "eng_7d": math.log1p(decayed_count(7.0)),
        "eng_30d": math.log1p(decayed_count(30.0)),
        "depth_7d": math.log1p(decayed_count(7.0, weight=depth)),
        "depth_30d": math.log1p(decayed_count(30.0, weight=depth)),
        "views_30d": math.log1p(decayed_count(30.0, viewed)),
        "esg_reports_30d": math.log1p(decayed_count(30.0, lambda t: t.action == "esg_report_download")),
        "meetings": float(min(5, sum(t.action == "meeting_booked" for t in touches))),
        "replies": float(min(10, sum(t.action == "reply" for t in touches))),
        "active_windows_30d": math.log1p(sum(0.5 ** (days(as_of, e) / 30) for e in ends)),
        "recency_days": min(60.0, days(as_of, before[-1])) if before else 60.0,
        "tenure_days": tenure,
        "windows_per_day": windows / max(1.0, tenure),
        "events_per_window": math.log1p(len(touches) / windows),
        "views_per_window": math.log1p(sum(map(viewed, touches)) / windows),
        "depth_per_window": math.log1p(sum(map(depth, touches)) / windows),
        "esg_report_rate": sum(t.action == "esg_report_download" for t in touches) / windows,
        "dwell_per_view": math.log1p(sum(green_dwell + other_dwell) / len(green_dwell + other_dwell)),
        "green_dwell_ratio": math.log((sum(green_dwell) / len(green_dwell) + 10)
                                      / (sum(other_dwell) / len(other_dwell) + 10)),
        "high_epc_lift": high - e_high,
        "epc_quality": 1 - mean_rank / 7,
        "certified_lift": cert - e_cert,
        "low_risk_lift": low - e_low,
        "esg_content_lift": ((high - e_high) + (cert - e_cert) + (low - e_low)) / 3,
        "verified_share": share(lambda f: f.third_party, 0.5),
        "data_freshness": math.exp(-(ages / n) / 365),
        "pref_match_epc": pref_epc,
        "pref_match_geo": geo,
        "pref_match_asset": asset,
        "stated_esg": stated,
        "stated_gap": stated - (high + cert + low) / 3 if stated else 0.0,
        "geo_concentration": geo_conc,
        "asset_concentration": asset_conc,
        "ticket_fit": math.exp(-abs(mean_log_value - math.log(ticket)) / 2) if ticket else 0.0,
        "ticket_catalog_fit": math.exp(-abs(math.log(ticket) - mix.log_value) / 2) if ticket else 0.0,
        "ticket_known": float(bool(ticket)),
        "profile_completeness": (sum(bool(k) for k in known) + bool(profile)) / 8 if profile else 0.0,
        "contactable": float(consents.get("email") in ("opted_in", "soft_opt_in")
                             or consents.get("phone") == "opted_in"),
        "institutional": float((profile or {}).get("investor_type") in
                               ("asset_manager", "pension_fund", "insurer", "reit", "sovereign_wealth")),
        "seek_dwell": (sum(sought) + PRIOR * math.log1p(60)) / (len(sought) + PRIOR),
        "known_days": min(90.0, days(as_of, known_since)),
        "thesis_fit": (fit_sum + PRIOR * 0.5) / (fit_w + PRIOR),
        "risk_fit": risk,
    }


def reference_alignment(f: dict[str, float], has_min_epc: bool) -> tuple[float, dict[str, float]]:
    clip = lambda v: min(100.0, max(0.0, v))  # noqa: E731
    parts = {
        "energy_efficiency": clip(50 + 125 * f["high_epc_lift"]),
        "certification": clip(50 + 125 * f["certified_lift"]),
        "climate_resilience": clip(50 + 125 * f["low_risk_lift"]),
        "esg_research": clip(100 * (1 - math.exp(-1.5 * f["esg_reports_30d"]))),
        "stated_commitment": clip(100 * f["stated_esg"]),
        "preference_fit": clip(100 * f["pref_match_epc"]) if has_min_epc else 50.0,
    }
    weights = {"energy_efficiency": .25, "certification": .15, "climate_resilience": .1,
               "esg_research": .2, "stated_commitment": .15, "preference_fit": .15}
    return sum(weights[k] * v for k, v in parts.items()), parts


# ----------------------------------------------------------------- the fixture

AS_OF = T0 + DAY  # scored at the close of the second window
RESCORE = T0 + 3 * DAY  # re-scored after two silent days


@pytest.mark.parametrize("as_of", [AS_OF, RESCORE], ids=["on-activity", "re-score"])
def test_every_feature_matches_the_naive_reference(as_of):
    _, features = module_features(as_of)
    expected = reference_features(TOUCHES, PROFILE, as_of)
    assert tuple(features) == FEATURE_NAMES and set(expected) == set(FEATURE_NAMES)
    wrong = {name: (features[name], expected[name]) for name in FEATURE_NAMES
             if features[name] != pytest.approx(expected[name], rel=1e-9, abs=1e-12)}
    assert wrong == {}


def test_hand_worked_values_of_the_fixture():
    _, f = module_features(AS_OF)
    d30 = 0.5 ** (1 / 30)  # the first window's weight one day later
    # Nine events: four a day ago (1-day half-life: worth 2), five now.
    assert f["eng_1d"] == pytest.approx(math.log1p(4 * 0.5 + 5))
    assert f["eng_7d"] == pytest.approx(math.log1p(4 * 0.5 ** (1 / 7) + 5))
    # Depth: esg report 1.5 a day ago; brochure 1 + meeting 4 + reply 2 now.
    assert f["depth_7d"] == pytest.approx(math.log1p(1.5 * 0.5 ** (1 / 7) + 7))
    assert f["meetings"] == 1.0 and f["replies"] == 1.0
    assert f["recency_days"] == pytest.approx(1.0) and f["tenure_days"] == pytest.approx(1 + 50 / 1440)
    assert f["windows_per_day"] == pytest.approx(2 / (1 + 50 / 1440))
    assert f["events_per_window"] == pytest.approx(math.log1p(4.5))
    assert f["esg_report_rate"] == pytest.approx(0.5)
    # Dwell: green 60 + 40 over two views, other 20 + 30 over two.
    assert f["dwell_per_view"] == pytest.approx(math.log1p(150 / 4))
    assert f["green_dwell_ratio"] == pytest.approx(math.log((50 + 10) / (25 + 10)))
    # Five engagements with facts: green x2, brown, safe x2 (two of them a day old).
    n = 2 * d30 + 3
    assert f["high_epc_lift"] == pytest.approx((1 + d30 + 3 * 0.2) / (n + 3) - 0.2)
    assert f["certified_lift"] == pytest.approx((1 + d30 + 3 * 0.1) / (n + 3) - 0.1)
    assert f["low_risk_lift"] == pytest.approx((3 + d30 + 3 * 0.3) / (n + 3) - 0.3)
    assert f["verified_share"] == pytest.approx((3 + d30 + 1.5) / (n + 3))  # brown is not verified
    # EPC ranks: A (1) x2, F (6), D (4) x2; C or better: the two green views.
    assert f["epc_quality"] == pytest.approx(1 - (d30 * 1 + d30 * 6 + 1 + 4 + 4) / n / 7)
    assert f["pref_match_epc"] == pytest.approx((d30 + 1 + 1.5) / (n + 3))
    # Data ages in days: green 30 then 31, brown 400, safe 101 twice.
    assert f["data_freshness"] == pytest.approx(math.exp(-(d30 * 430 + 31 + 202) / n / 365))
    # Stated: band C 0.2 + certifications 0.2 + SFDR art. 8 0.2 + SDR label 0.15 + risk limit 0.1.
    assert f["stated_esg"] == pytest.approx(0.85)
    assert f["stated_gap"] == pytest.approx(0.85 - ((1 + d30 + 0.6) + (1 + d30 + 0.3)
                                                    + (3 + d30 + 0.9)) / (n + 3) / 3)
    # Countries: GB 4 (one a day old), DE 1 a day old.
    gb, de = d30 + 3, d30
    assert f["pref_match_geo"] == pytest.approx((gb + 1.5) / (n + 3))
    assert f["geo_concentration"] == pytest.approx((gb**2 + de**2) / n**2)
    # Values: green (3M) twice, brown (9M) once a day ago; ticket 5M; catalog lot 4M.
    mean_log = (d30 * math.log(3e6) + d30 * math.log(9e6) + math.log(3e6)) / (2 * d30 + 1)
    assert f["ticket_fit"] == pytest.approx(math.exp(-abs(mean_log - math.log(5e6)) / 2))
    assert f["ticket_catalog_fit"] == pytest.approx(math.exp(-math.log(5 / 4) / 2))
    assert (f["ticket_known"], f["contactable"], f["institutional"]) == (1.0, 1.0, 1.0)
    assert f["profile_completeness"] == 7 / 8  # no risk tolerance


def test_esg_alignment_and_every_component_match_the_reference():
    state, f = module_features(AS_OF)
    score, components = esg_alignment(f, state)
    expected_score, expected = reference_alignment(f, has_min_epc=True)
    assert components == {k: round(v, 2) for k, v in expected.items()}
    assert score == round(expected_score, 2)
    # By hand for the fixture: a green-seeking investor in a brown catalog.
    assert components["stated_commitment"] == 85.0
    assert components["esg_research"] == round(100 * (1 - math.exp(-1.5 * math.log1p(0.5 ** (1 / 30)))), 2)
    assert components["energy_efficiency"] > 50 and components["climate_resilience"] > 50
    without_minimum = reference_alignment(f, has_min_epc=False)[1]["preference_fit"]
    state.min_epc_rank = None
    assert esg_alignment(f, state)[1]["preference_fit"] == without_minimum == 50.0


@pytest.mark.parametrize("component, feature", [
    ("energy_efficiency", "high_epc_lift"), ("certification", "certified_lift"),
    ("climate_resilience", "low_risk_lift")])
@pytest.mark.parametrize("lift, value", [(0.2, 75.0), (-0.2, 25.0), (0.5, 100.0), (-0.5, 0.0), (0.0, 50.0)])
def test_a_behaviour_component_is_50_plus_125_times_its_lift_clipped(component, feature, lift, value):
    f = dict.fromkeys(("high_epc_lift", "certified_lift", "low_risk_lift", "esg_reports_30d",
                       "stated_esg", "pref_match_epc"), 0.0)
    f[feature] = lift
    assert esg_alignment(f, InvestorProfileState(HALF_LIVES))[1][component] == value


@pytest.mark.parametrize("reports, value", [(0.0, 0.0), (math.log1p(1), 64.64), (10.0, 100.0)])
def test_esg_research_grows_with_reports_read(reports, value):
    f = dict.fromkeys(("high_epc_lift", "certified_lift", "low_risk_lift", "stated_esg",
                       "pref_match_epc"), 0.0)
    f["esg_reports_30d"] = reports
    assert esg_alignment(f, InvestorProfileState(HALF_LIVES))[1]["esg_research"] == value


def test_preference_fit_rises_with_matching_views_and_is_clipped():
    state = InvestorProfileState(HALF_LIVES)
    state.min_epc_rank = 3
    base = dict.fromkeys(("high_epc_lift", "certified_lift", "low_risk_lift", "esg_reports_30d",
                          "stated_esg"), 0.0)
    fits = [esg_alignment({**base, "pref_match_epc": m}, state)[1]["preference_fit"]
            for m in (0.0, 0.3, 0.8, 1.0, 1.4)]
    assert fits == [0.0, 30.0, 80.0, 100.0, 100.0]


def test_intent_and_readiness_of_the_fixture():
    _, f = module_features(AS_OF)
    raw = (0.6 * f["depth_7d"] + 0.3 * f["depth_30d"] + 0.25 * f["eng_7d"] + 0.5 * f["meetings"]
           + 0.15 * f["replies"] + 0.3 * f["geo_concentration"] * f["views_30d"])
    intent = intent_score(f)
    assert intent == round(100 * (1 - math.exp(-raw / 2.5)), 2)
    readiness = engagement_readiness(f, intent)
    assert readiness == round(100 * (0.35 + 0.65 * intent / 100) * (0.4 + 0.6 * math.exp(-1 / 21)), 2)


# ---------------------------------------- single features that used to be unpinned

def test_an_empty_history_with_a_bare_profile():
    state = InvestorProfileState(HALF_LIVES)
    state.apply_profile(profile_event(preferences={}, consents=[], ticket_max_eur=None,
                                      target_countries=[], target_asset_classes=[],
                                      investor_type="family_office"), None)
    f = compute_features(state, T0)
    assert f["stated_esg"] == 0.0 and f["stated_gap"] == 0.0
    assert f["ticket_known"] == 0.0 and f["institutional"] == 0.0 and f["contactable"] == 0.0
    assert f["profile_completeness"] == 2 / 8  # type and jurisdiction
    assert f["ticket_fit"] == 0.0 and f["ticket_catalog_fit"] == 0.0 and f["pref_match_epc"] == 0.0
    assert f["data_freshness"] == pytest.approx(math.exp(-1.0))  # no facts: a year old
    assert f["geo_concentration"] == 0.0 and f["pref_match_geo"] == 0.0


@pytest.mark.parametrize("prefs, stated", [
    ({"sfdr_target": "article_8"}, 0.2), ({"sfdr_target": "article_9"}, 0.3),
    ({"sfdr_target": "article_6"}, 0.0),
    ({"uk_sdr_label": "sustainability_improvers"}, 0.15), ({"max_climate_risk": 0}, 0.1),
    ({"required_certifications": ["LEED"]}, 0.2),
    ({"min_epc_band": "A+"}, 0.35), ({"min_epc_band": "A"}, 0.35), ({"min_epc_band": "B"}, 0.3),
    ({"min_epc_band": "C"}, 0.2), ({"min_epc_band": "D"}, 0.1), ({"min_epc_band": "E"}, 0.0),
    ({"min_epc_band": "A", "required_certifications": ["BREEAM"], "sfdr_target": "article_9",
      "uk_sdr_label": "sustainability_focus", "max_climate_risk": 10}, 1.0),  # capped: 1.1
])
def test_stated_esg_adds_each_stated_commitment(prefs, stated):
    state = InvestorProfileState(HALF_LIVES)
    state.apply_profile(profile_event(preferences=prefs), None)
    assert compute_features(state, T0)["stated_esg"] == pytest.approx(stated)


def test_a_stale_count_is_not_an_age():
    # Brown's data is 400 days old, beyond the 365-day stale limit: freshness reads the ages.
    _, f = module_features(AS_OF, touches=(Touch(1, 10, "property_view", BROWN),))
    assert f["data_freshness"] == pytest.approx(math.exp(-401 / 365))


def test_pref_match_epc_counts_only_views_at_or_above_the_stated_minimum():
    # SAFE is band D, one band below the stated C: it must not count as a match.
    only_d = (Touch(1, 10, "property_view", SAFE),)
    _, f = module_features(AS_OF, touches=only_d)
    assert f["pref_match_epc"] == pytest.approx(1.5 / 4)
    _, f = module_features(AS_OF, touches=only_d, preferences={"min_epc_band": "D"})
    assert f["pref_match_epc"] == pytest.approx(2.5 / 4)


@pytest.mark.parametrize("ticket", [1e6, 5e6, 3e7])
def test_ticket_fit_depends_on_the_stated_ticket(ticket):
    one_view = (Touch(1, 10, "property_view", GREEN),)
    _, f = module_features(AS_OF, touches=one_view, ticket_max_eur=ticket)
    assert f["ticket_fit"] == pytest.approx(math.exp(-abs(math.log(3e6 / ticket)) / 2))
    assert f["ticket_catalog_fit"] == pytest.approx(math.exp(-abs(math.log(ticket / 4e6)) / 2))


def test_concentration_of_an_even_spread_and_of_one_country():
    even = (Touch(1, 10, "property_view", GREEN), Touch(1, 9, "property_view", BROWN))
    _, f = module_features(AS_OF, touches=even)
    assert f["geo_concentration"] == pytest.approx(0.5) and f["asset_concentration"] == pytest.approx(0.5)
    assert f["pref_match_geo"] == pytest.approx((1 + 1.5) / 5)
    one = (Touch(1, 10, "property_view", GREEN), Touch(1, 9, "property_view", SAFE))
    _, f = module_features(AS_OF, touches=one)
    assert f["geo_concentration"] == pytest.approx(1.0) and f["pref_match_asset"] == pytest.approx(3.5 / 5)


# -------------------------------------------------------------- monotonicity

flags = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans())  # high, cert, low, 3rd


def views_of(spec) -> tuple[Touch, ...]:
    touches = []
    for i, (high, cert, low, third) in enumerate(spec):
        facts = prop(f"p{i}", band="B" if high else "E", country="GB", asset="office", value=2e6,
                     data_days_before_t0=10, high=high, certified=cert, low_risk=low,
                     third_party=third)
        touches.append(Touch(i % 2, 30 - i, "property_view", facts, 20.0))
    return tuple(touches)


def components(touches, **kwargs) -> dict[str, float]:
    state, f = module_features(AS_OF, touches=touches, **kwargs)
    return esg_alignment(f, state)[1]


@settings(max_examples=30, deadline=None)
@given(st.lists(flags, min_size=1, max_size=5), st.data())
def test_more_verified_certifications_never_lower_certification(spec, data):
    i = data.draw(st.integers(0, len(spec) - 1))
    high, _, low, third = spec[i]
    without = [*spec[:i], (high, False, low, third), *spec[i + 1:]]
    with_cert = [*spec[:i], (high, True, low, third), *spec[i + 1:]]
    more, fewer = (components(views_of(with_cert))["certification"],
                   components(views_of(without))["certification"])
    assert more > fewer or more == fewer == 100.0  # equal only when clipped at the top


@settings(max_examples=30, deadline=None)
@given(st.lists(flags, min_size=1, max_size=5), st.data())
def test_lower_climate_risk_never_lowers_climate_resilience(spec, data):
    i = data.draw(st.integers(0, len(spec) - 1))
    high, cert, _, third = spec[i]
    risky = [*spec[:i], (high, cert, False, third), *spec[i + 1:]]
    safe = [*spec[:i], (high, cert, True, third), *spec[i + 1:]]
    safer, riskier = (components(views_of(safe))["climate_resilience"],
                      components(views_of(risky))["climate_resilience"])
    assert safer > riskier or safer == riskier == 100.0  # equal only when clipped at the top


preferences = st.fixed_dictionaries({}, optional={
    "min_epc_band": st.sampled_from(list(EPC_RANK)),
    "required_certifications": st.sampled_from([["BREEAM"], ["LEED", "NABERS"]]),
    "sfdr_target": st.sampled_from(["article_6", "article_8", "article_9"]),
    "max_climate_risk": st.integers(0, 100),
})


@settings(max_examples=40, deadline=None)
@given(preferences, st.sampled_from(["sustainability_focus", "sustainability_improvers",
                                     "sustainability_impact", "sustainability_mixed_goals"]))
def test_a_stated_sdr_label_never_lowers_stated_commitment(prefs, label):
    touches = (Touch(1, 10, "property_view", GREEN),)
    without = components(touches, preferences=prefs)["stated_commitment"]
    labelled = components(touches, preferences={**prefs, "uk_sdr_label": label})["stated_commitment"]
    assert labelled >= without
    assert labelled > without or labelled == 100.0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 120), st.integers(1, 120))
def test_more_recent_engagement_never_lowers_readiness(hours, later):
    """Re-scored sooner after the same activity (fresher, less decayed): never less ready.

    Both are re-scores after a silence (recency counts from the last window); a score at
    the close of a window counts from the window before, as documented.
    """
    state = build_state()
    sooner = AS_OF + hours * timedelta(hours=1)
    state.decay_to(sooner, HALF_LIVES)
    f_soon = compute_features(state, sooner)
    ready_soon = engagement_readiness(f_soon, intent_score(f_soon))
    state.decay_to(sooner + later * timedelta(hours=1), HALF_LIVES)
    f_late = compute_features(state, sooner + later * timedelta(hours=1))
    ready_late = engagement_readiness(f_late, intent_score(f_late))
    assert ready_soon > ready_late > 0


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 60), st.floats(0.01, 60), st.floats(0, 100))
def test_readiness_never_falls_as_recency_shortens(recency, extra, intent):
    f = {"contactable": 1.0, "recency_days": recency}
    assert engagement_readiness(f, intent) >= engagement_readiness(
        {**f, "recency_days": recency + extra}, intent)


def test_the_fixture_dates_are_what_the_comments_say():
    assert WINDOW_ENDS[0].date() == date(2026, 3, 2)
    assert T0.toordinal() - GREEN.data_as_of_ordinal == 30


# ------------------------------------------- a second fixture: qualities apart

HIGH_ONLY = prop("high-only", band="B", country="FR", asset="logistics", value=6e6,
                 data_days_before_t0=5, high=True)
CERT_ONLY = prop("cert-only", band="E", country="GB", asset="retail", value=1.2e7,
                 data_days_before_t0=700, certified=True, third_party=False)
APART = (
    Touch(0, 30, "property_view", HIGH_ONLY, 10.0),
    Touch(0, 20, "property_view", CERT_ONLY, 90.0),
    Touch(1, 40, "property_view", HIGH_ONLY, 15.0),
    Touch(1, 30, "property_view", SAFE, 45.0),
    Touch(1, 25, "webinar_attended"),
    Touch(1, 20, "call"),
)
TWO_MARKETS = {**PROFILE, "target_countries": ["GB", "FR", "IT"],
               "target_asset_classes": ["office", "logistics"]}


@pytest.mark.parametrize("as_of", [AS_OF, RESCORE], ids=["on-activity", "re-score"])
def test_every_feature_matches_the_reference_when_qualities_come_apart(as_of):
    """High EPC, certification and low climate risk on different properties, two target
    markets (one never viewed): swapped counters or a half-counted target show up here."""
    _, features = module_features(as_of, touches=APART,
                                  target_countries=TWO_MARKETS["target_countries"],
                                  target_asset_classes=TWO_MARKETS["target_asset_classes"])
    expected = reference_features(APART, TWO_MARKETS, as_of)
    wrong = {name: (features[name], expected[name]) for name in FEATURE_NAMES
             if features[name] != pytest.approx(expected[name], rel=1e-9, abs=1e-12)}
    assert wrong == {}


def test_without_stated_targets_nothing_matches_them():
    _, f = module_features(AS_OF, target_countries=[], target_asset_classes=[])
    assert f["pref_match_geo"] == 0.0 and f["pref_match_asset"] == 0.0
    assert f["geo_concentration"] > 0 and f["asset_concentration"] > 0


def test_a_single_view_is_shrunk_not_dropped():
    _, f = module_features(AS_OF, touches=(Touch(1, 10, "property_view", GREEN),))
    assert f["pref_match_geo"] == pytest.approx((1 + 1.5) / 4)
    assert f["geo_concentration"] == 1.0


@pytest.mark.parametrize(("investor_type", "institutional"), [
    ("asset_manager", 1.0), ("pension_fund", 1.0), ("insurer", 1.0), ("reit", 1.0),
    ("sovereign_wealth", 1.0), ("family_office", 0.0), ("private_individual", 0.0)])
def test_institutional_investor_types(investor_type, institutional):
    state = InvestorProfileState(HALF_LIVES)
    state.apply_profile(profile_event(investor_type=investor_type), None)
    assert compute_features(state, T0)["institutional"] == institutional


def test_vectors_carry_feature_set_fs_3():
    from esg_leads.operators.features import FEATURE_SET_VERSION, build_vector

    state = build_state()
    version = build_vector(state, "acme", "inv-1", AS_OF).feature_set_version
    assert version == FEATURE_SET_VERSION and version.startswith("fs-3+")


# ------------------------------------------------- caps, empty parts, the vector

def test_recency_and_tenure_are_capped_at_60_and_90_days():
    _, f = module_features(AS_OF + 100 * DAY)
    assert f["recency_days"] == 60.0 and f["tenure_days"] == 90.0


def test_meetings_count_up_to_5_and_replies_up_to_10():
    many = tuple(Touch(1, 50 - i, "meeting_booked") for i in range(6)) + tuple(
        Touch(1, 40 - i, "reply") for i in range(11))
    _, f = module_features(AS_OF, touches=many)
    assert f["meetings"] == 5.0 and f["replies"] == 10.0
    _, f = module_features(AS_OF, touches=many[:4] + many[6:15])
    assert f["meetings"] == 4.0 and f["replies"] == 9.0


def test_stated_commitment_without_any_behaviour_or_view():
    # Stated preferences, no engagement at all: the gap is the whole statement.
    state = InvestorProfileState(HALF_LIVES)
    state.apply_profile(profile_event(), None)
    f = compute_features(state, T0)
    assert f["stated_gap"] == pytest.approx(0.85)
    for name in ("events_per_window", "views_per_window", "depth_per_window", "esg_report_rate",
                 "dwell_per_view", "green_dwell_ratio", "pref_match_epc"):
        assert f[name] == 0.0, name
    bare = InvestorProfileState(HALF_LIVES)
    bare.apply_profile(profile_event(preferences={}), None)
    assert esg_alignment(compute_features(bare, T0), bare)[1]["stated_commitment"] == 0.0


def test_no_preference_match_without_a_stated_minimum_band():
    _, f = module_features(AS_OF, preferences={})
    assert f["pref_match_epc"] == 0.0


def test_the_vector_carries_context_data_age_and_ingest_time():
    from esg_leads.operators.features import build_vector

    state = build_state()
    vector = build_vector(state, "acme", "inv-1", AS_OF)
    d30 = 0.5 ** (1 / 30)
    assert vector.data_freshness_days == round((d30 * 430 + 31 + 202) / (2 * d30 + 3), 1) == 131.8
    assert vector.context.jurisdiction == "GB" and vector.context.ticket_max_eur == 5e6
    assert vector.ingest_ms is not None and vector.ingest_ms > 1_772_000_000_000
    state.decay_to(RESCORE, HALF_LIVES)
    assert build_vector(state, "acme", "inv-1", RESCORE).ingest_ms is None  # a re-score
