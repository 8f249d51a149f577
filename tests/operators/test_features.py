"""Investor features, ESG alignment, intent and engagement readiness."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.features import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    FEATURE_SOURCES,
    SOURCES,
    build_vector,
    clamp_features,
    compute_features,
    engagement_readiness,
    esg_alignment,
    intent_score,
    risk_fit,
    risk_limit,
)
from esg_leads.operators.feature_definitions import FEATURE_RANGES
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.investor_window import ACTIONS, WindowAggregate
from esg_leads.operators.top_properties import TopProperties
from esg_leads.schemas.codec import decode_event
from esg_leads.schemas.records import CatalogMix, EnrichedEngagement, Ingested, PropertyFacts

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
HALF_LIVES = (1.0, 7.0, 30.0)
BROWN = CatalogMix(10, high_epc=0.2, certified=0.1, low_climate_risk=0.3, log_value=math.log(5e6))
GREEN = CatalogMix(10, high_epc=0.9, certified=0.9, low_climate_risk=0.9, log_value=math.log(5e6))
_offsets = iter(range(10**9))


def facts(pid: str, *, high=False, certified=False, low_risk=False, rank=3, third_party=True,
          country="GB", asset="office", value=None, age_days=30,
          climate_risk: int | None = None) -> PropertyFacts:
    return PropertyFacts(
        property_id=pid, tenant="acme", effective=T0 - 60 * DAY, country=country, asset_class=asset,
        value_eur=value, epc_band=None, epc_rank=rank, energy_star_score=None, certified=certified,
        certified_verified=certified, certification=None, energy_intensity=None,
        carbon_intensity=None, max_climate_risk=climate_risk, third_party=third_party,
        data_as_of_ordinal=T0.toordinal() - age_days, high_epc=high, low_climate_risk=low_risk,
    )


GREEN_PROP = facts("g", high=True, certified=True, low_risk=True, rank=1)
BROWN_PROP = facts("b", rank=6)


def touch(action="property_view", *, f=None, at=T0 - 30 * 60 * timedelta(seconds=1),
          duration=None, mix=BROWN) -> EnrichedEngagement:
    offset = next(_offsets)
    payload = {"tenant": "acme", "event_id": f"e{offset}", "event_time": at.isoformat(),
               "source": "web", "investor_id": "inv-1", "action": action, "channel": "web"}
    if f is not None:
        payload["property_id"] = f.property_id
    if duration is not None:
        payload["duration_s"] = duration
    value = orjson.dumps(payload)
    ingested = Ingested(decode_event("investor.engagements", value), "investor.engagements", 0,
                        offset, 0, b"inv-1", value)
    return EnrichedEngagement(ingested, f, mix)


def add_window(state: InvestorProfileState, end: datetime, items: list[EnrichedEngagement]) -> None:
    aggregate = WindowAggregate()
    for it in items:
        aggregate.add(it, stale_days=365)
    state.apply_window(aggregate, end, HALF_LIVES)


def profile(**overrides):
    payload = {"tenant": "acme", "event_id": f"p{next(_offsets)}", "event_time": T0.isoformat(),
               "source": "crm", "investor_id": "inv-1", "investor_type": "pension_fund",
               "subscriber_type": "corporate", "jurisdiction": "GB"}
    payload.update(overrides)
    return decode_event("investor.profiles", orjson.dumps(payload))


def state_with(*windows: list[EnrichedEngagement], prof=None, contact_ref=None) -> InvestorProfileState:
    state = InvestorProfileState(HALF_LIVES)
    if prof is not None:
        state.apply_profile(prof, contact_ref)
    for i, items in enumerate(windows):
        add_window(state, T0 + i * HOUR, items)
    return state


def features_of(state: InvestorProfileState, as_of: datetime | None = None) -> dict[str, float]:
    as_of = as_of or state.last_active or T0
    state.decay_to(as_of, HALF_LIVES)
    return compute_features(state, as_of)


# ------------------------------------------------------------------ the feature set

def test_feature_names_sources_and_order():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert set(FEATURE_SOURCES.values()) <= set(SOURCES)
    assert set(SOURCES) == set(FEATURE_SOURCES.values())  # every source explains something
    state = state_with([touch(f=GREEN_PROP), touch("reply")], prof=profile())
    assert tuple(features_of(state)) == FEATURE_NAMES


def test_build_vector_values_follow_feature_names():
    state = state_with([touch(f=GREEN_PROP, duration=40.0), touch("meeting_booked")],
                       [touch(f=BROWN_PROP)], prof=profile(ticket_max_eur=8e6))
    vector = build_vector(state, "acme", "inv-1", T0 + HOUR)
    assert vector.feature_set_version == FEATURE_SET_VERSION
    assert (vector.tenant, vector.investor_id, vector.as_of) == ("acme", "inv-1", T0 + HOUR)
    assert tuple(vector.features) == FEATURE_NAMES
    assert vector.values == tuple(vector.features[n] for n in FEATURE_NAMES)
    assert len(vector.lineage) == 3 and {r[1] for r in vector.lineage} == {"investor.engagements"}


def test_an_empty_state_gives_finite_neutral_features():
    f = compute_features(InvestorProfileState(HALF_LIVES), T0)
    assert all(math.isfinite(v) for v in f.values())
    assert f["recency_days"] == 60.0 and f["tenure_days"] == 0.0
    assert f["high_epc_lift"] == 0.0 and f["esg_content_lift"] == 0.0
    assert f["verified_share"] == 0.5 and f["epc_quality"] == 0.5
    assert f["contactable"] == 0.0 and f["profile_completeness"] == 0.0


# ------------------------------------------------------------------- shrinkage

def test_shares_from_few_views_shrink_towards_the_catalog_rate():
    one = features_of(state_with([touch(f=GREEN_PROP)]))
    many = features_of(state_with([touch(f=GREEN_PROP) for _ in range(20)]))
    raw_lift = 1.0 - BROWN.high_epc
    # One green view in a 20%-green catalog: (1 + 3*0.2) / (1 + 3) - 0.2.
    assert one["high_epc_lift"] == pytest.approx(0.2)
    assert many["high_epc_lift"] == pytest.approx((20 + 0.6) / 23 - 0.2)
    assert 0 < one["high_epc_lift"] < many["high_epc_lift"] < raw_lift
    # Verification share shrinks towards one half.
    assert one["verified_share"] == pytest.approx((1 + 1.5) / 4)


def test_views_matching_the_catalog_mix_have_zero_lift():
    mix = CatalogMix(10, high_epc=0.5, certified=0.5, low_climate_risk=0.5)
    half_green = facts("g", high=True, certified=True, low_risk=True)
    state = state_with([touch(f=half_green, mix=mix), touch(f=facts("b"), mix=mix)])
    f = features_of(state)
    for name in ("high_epc_lift", "certified_lift", "low_risk_lift", "esg_content_lift"):
        assert f[name] == pytest.approx(0.0, abs=1e-12)


# -------------------------------------------------------------- ESG alignment

def test_catalog_neutral_behaviour_scores_50_on_behavioural_components():
    mix = CatalogMix(10, high_epc=0.5, certified=0.5, low_climate_risk=0.5)
    state = state_with([touch(f=facts("g", high=True, certified=True, low_risk=True), mix=mix),
                        touch(f=facts("b"), mix=mix)])
    _, components = esg_alignment(features_of(state), state)
    assert components["energy_efficiency"] == 50.0
    assert components["certification"] == 50.0
    assert components["climate_resilience"] == 50.0
    assert components["preference_fit"] == 50.0  # no stated minimum EPC


def test_seeking_green_in_a_brown_catalog_says_more_than_in_a_green_one():
    in_brown = state_with([touch(f=GREEN_PROP, mix=BROWN) for _ in range(6)])
    in_green = state_with([touch(f=GREEN_PROP, mix=GREEN) for _ in range(6)])
    score_brown, comp_brown = esg_alignment(features_of(in_brown), in_brown)
    score_green, comp_green = esg_alignment(features_of(in_green), in_green)
    assert score_brown > score_green
    assert comp_brown["energy_efficiency"] > comp_green["energy_efficiency"] > 50.0


def test_avoiding_green_scores_below_50():
    state = state_with([touch(f=BROWN_PROP, mix=GREEN) for _ in range(6)])
    _, components = esg_alignment(features_of(state), state)
    assert components["energy_efficiency"] < 50.0 and components["certification"] < 50.0


def test_stated_preferences_drive_stated_commitment_and_preference_fit():
    prefs = {"min_epc_band": "B", "required_certifications": ["BREEAM"], "sfdr_target": "article_9"}
    state = state_with([touch(f=GREEN_PROP), touch(f=GREEN_PROP)],
                       prof=profile(preferences=prefs))
    f = features_of(state)
    assert f["stated_esg"] == pytest.approx(0.3 + 0.2 + 0.3)
    assert f["pref_match_epc"] == pytest.approx((2 + 1.5) / 5)  # both views meet "B or better"
    _, components = esg_alignment(f, state)
    assert components["stated_commitment"] == pytest.approx(80.0)
    assert components["preference_fit"] == pytest.approx(70.0)


feature_values = st.fixed_dictionaries({
    "high_epc_lift": st.floats(-1, 1), "certified_lift": st.floats(-1, 1),
    "low_risk_lift": st.floats(-1, 1), "esg_reports_30d": st.floats(0, 10),
    "stated_esg": st.floats(0, 1), "pref_match_epc": st.floats(0, 1),
})


@settings(deadline=None)
@given(feature_values, st.booleans())
def test_alignment_and_its_components_stay_in_0_100(f, stated_min_epc):
    state = InvestorProfileState(HALF_LIVES)
    state.min_epc_rank = 2 if stated_min_epc else None
    score, components = esg_alignment(f, state)
    assert 0.0 <= score <= 100.0
    assert set(components) == {"energy_efficiency", "certification", "climate_resilience",
                               "esg_research", "stated_commitment", "preference_fit"}
    assert all(0.0 <= v <= 100.0 for v in components.values())


# ---------------------------------------------------------------------- intent

INTENT_INPUTS = ("depth_7d", "depth_30d", "eng_7d", "meetings", "replies", "geo_concentration",
                 "views_30d")


@settings(deadline=None)
@given(base=st.fixed_dictionaries({k: st.floats(0, 5) for k in INTENT_INPUTS}),
       name=st.sampled_from(["depth_7d", "depth_30d", "meetings", "replies", "eng_7d"]),
       more=st.floats(0.01, 5))
def test_intent_is_monotone_in_engagement_depth(base, name, more):
    deeper = {**base, name: base[name] + more}
    assert intent_score(deeper) >= intent_score(base)
    assert 0.0 <= intent_score(base) <= 100.0


def test_intent_rises_with_deeper_actions():
    shallow = state_with([touch("email_open"), touch("email_open")])
    deep = state_with([touch("email_open"), touch("meeting_booked")])
    i_shallow = intent_score(features_of(shallow))
    i_deep = intent_score(features_of(deep))
    assert i_deep > i_shallow > 0
    assert intent_score({k: 0.0 for k in INTENT_INPUTS}) == 0.0


# ----------------------------------------------------------------- readiness

@pytest.mark.parametrize(("prof_kwargs", "unsubscribe", "contactable"), [
    ({}, False, False),  # no consent recorded
    ({"consents": [{"channel": "email", "status": "opted_in"}]}, False, True),
    ({"consents": [{"channel": "email", "status": "soft_opt_in"}]}, False, True),
    ({"consents": [{"channel": "email", "status": "opted_in"}]}, True, False),
    ({"consents": [{"channel": "phone", "status": "opted_in"}]}, False, True),
    # Consent to be called outranks a do-not-call listing (as in the compliance packs).
    ({"consents": [{"channel": "phone", "status": "opted_in"}], "do_not_call": True}, False, True),
    ({"consents": [{"channel": "phone", "status": "none"}], "do_not_call": True}, False, False),
    ({"consents": [{"channel": "sms", "status": "opted_in"}]}, False, False),
])
def test_contactable_and_readiness(prof_kwargs, unsubscribe, contactable):
    state = state_with([touch("meeting_booked")], prof=profile(**prof_kwargs))
    if unsubscribe:
        state.unsubscribe(datetime(2026, 1, 1, tzinfo=timezone.utc))
    f = features_of(state)
    assert f["contactable"] == float(contactable)
    intent = intent_score(f)
    readiness = engagement_readiness(f, intent)
    if contactable:
        assert 0.0 < readiness <= 100.0
    else:
        assert readiness == 0.0


def test_readiness_fades_with_recency():
    f = {"contactable": 1.0, "recency_days": 0.0}
    fresh = engagement_readiness(f, 50.0)
    stale = engagement_readiness({**f, "recency_days": 30.0}, 50.0)
    assert fresh > stale > 0
    assert engagement_readiness(f, 80.0) > fresh  # and rises with intent


# ----------------------------------------------------------- recency / tenure

def test_recency_is_measured_from_the_previous_activity():
    state = state_with([touch()])
    add_window(state, T0 + 2 * DAY, [touch(at=T0 + 2 * DAY - HOUR)])
    f = features_of(state, T0 + 2 * DAY)
    assert f["recency_days"] == pytest.approx(2.0)
    # Scored later without new activity (a re-score): measured from the last window.
    later = features_of(state, T0 + 5 * DAY)
    assert later["recency_days"] == pytest.approx(3.0)
    assert later["eng_1d"] < f["eng_1d"]  # and the counters decayed


def test_profile_completeness_counts_known_fields():
    state = state_with(prof=profile(ticket_max_eur=5e6, target_countries=["GB"],
                                        target_asset_classes=["office"], risk_tolerance="low",
                                        consents=[{"channel": "email", "status": "opted_in"}]),
                       contact_ref="ref")
    assert compute_features(state, T0)["profile_completeness"] == 1.0
    bare = state_with(prof=profile())
    assert compute_features(bare, T0)["profile_completeness"] == pytest.approx(2 / 8)


def test_data_freshness_falls_with_the_age_of_esg_data():
    fresh = state_with([touch(f=facts("p", age_days=10))])
    old = state_with([touch(f=facts("p", age_days=700))])
    assert features_of(fresh)["data_freshness"] > features_of(old)["data_freshness"]
    assert build_vector(old, "acme", "inv-1", T0).data_freshness_days == 700.0
    assert build_vector(state_with([touch("email_open")]), "acme", "inv-1", T0).data_freshness_days is None
    today = state_with([touch(f=facts("p", age_days=0))])  # data of the day: 0, not floored at 1
    assert build_vector(today, "acme", "inv-1", T0).data_freshness_days == 0.0


def test_the_context_carries_do_not_contact_and_time_zone_and_old_snapshots_default_them():
    stated = state_with([touch()], prof=profile(do_not_contact=True, time_zone="Europe/London"))
    context = build_vector(stated, "acme", "inv-1", T0).context
    assert context.do_not_contact is True and context.time_zone == "Europe/London"
    old = state_with([touch()])
    del old.do_not_contact, old.time_zone  # a snapshot from before the fields existed
    context = build_vector(old, "acme", "inv-1", T0).context
    assert context.do_not_contact is False and context.time_zone is None


# ------------------------------------------------------------------ finiteness

windows_strategy = st.lists(
    st.lists(
        st.builds(
            lambda action, f, duration, mix: touch(action, f=f, duration=duration, mix=mix),
            st.sampled_from(ACTIONS),
            st.none() | st.sampled_from([GREEN_PROP, BROWN_PROP,
                                         facts("v", value=3e6, country="DE", age_days=900),
                                         facts("x", rank=None, value=1.0)]),
            st.none() | st.floats(0, 86_400),
            st.sampled_from([BROWN, GREEN, CatalogMix(0, 0.0, 0.0, 0.0)]),
        ),
        min_size=1, max_size=6,
    ),
    max_size=5,
)
profiles = st.none() | st.builds(
    lambda ticket, prefs, consents: profile(ticket_max_eur=ticket, preferences=prefs, consents=consents),
    st.none() | st.floats(1.0, 1e11),
    st.sampled_from([{}, {"min_epc_band": "A+"}, {"min_epc_band": "G", "max_climate_risk": 0}]),
    st.sampled_from([[], [{"channel": "email", "status": "opted_in"}]]),
)


@settings(max_examples=100, deadline=None)
@given(windows_strategy, profiles, st.integers(0, 200))
def test_every_feature_is_finite_and_scores_stay_in_range(windows, prof, gap_days):
    state = InvestorProfileState(HALF_LIVES)
    if prof is not None:
        state.apply_profile(prof, None)
    for i, items in enumerate(windows):
        add_window(state, T0 + i * DAY, items)
    as_of = (state.last_active or T0) + gap_days * DAY
    state.decay_to(as_of, HALF_LIVES)
    vector = build_vector(state, "acme", "inv-1", as_of)
    assert all(math.isfinite(v) for v in vector.values), vector.features
    assert 0 <= vector.esg_alignment <= 100
    assert 0 <= vector.intent <= 100
    assert 0 <= vector.engagement_readiness <= 100


def test_a_stated_risk_tolerance_caps_climate_risk_at_a_third_two_thirds_or_the_whole_scale() -> None:
    state = InvestorProfileState(HALF_LIVES)
    assert risk_limit(state) is None
    for tolerance, limit in (("low", 33), ("medium", 66), ("high", 100)):
        state.risk_tolerance = tolerance
        assert risk_limit(state) == limit, tolerance
    state.max_climate_risk = 10  # the investor's own cap wins over the tolerance
    assert risk_limit(state) == 10


def test_risk_fit_counts_a_property_on_the_limit_as_within_it() -> None:
    state = InvestorProfileState(HALF_LIVES)
    state.top_properties = TopProperties.of({
        "on": [1.0, facts("on", climate_risk=66)], "over": [3.0, facts("over", climate_risk=67)],
        "unknown": [5.0, facts("unknown")]})  # no climate data: left out
    assert risk_fit(state) == 0.5  # no stated limit: neutral
    state.risk_tolerance = "medium"  # 66: "on" within, "over" not
    assert risk_fit(state) == pytest.approx((1.0 + 1.5) / (4.0 + 3.0))
    state.risk_tolerance = "high"  # 100: both within
    assert risk_fit(state) == pytest.approx((4.0 + 1.5) / (4.0 + 3.0))


def test_clamping_keeps_values_on_their_bounds_and_fixes_only_what_lies_outside() -> None:
    low, high = FEATURE_RANGES["recency_days"]
    for value in (low, high, (low + high) / 2):
        features = {"recency_days": value}
        assert clamp_features(features) == [] and features == {"recency_days": value}
    for value, fixed in ((low - 1, low), (high + 1, high), (math.nan, low), (math.inf, high),
                         (-math.inf, low)):
        features = {"recency_days": value}
        assert clamp_features(features) == ["recency_days"]
        assert features == {"recency_days": fixed}, value


def test_known_days_count_from_the_first_profile_or_engagement_capped_at_90() -> None:
    state = InvestorProfileState(HALF_LIVES)
    assert compute_features(state, T0)["known_days"] == 0.0  # nothing known yet
    state.first_seen = T0 - 1 * DAY  # an older snapshot: first engagement only
    assert compute_features(state, T0)["known_days"] == 1.0
    state.first_known = T0 - 20 * DAY  # the profile came before the first engagement
    assert compute_features(state, T0)["known_days"] == 20.0
    state.first_known = T0 - 200 * DAY
    assert compute_features(state, T0)["known_days"] == 90.0
    state.first_known = T0 + 2 * DAY  # a profile stamped after the window: never negative
    assert compute_features(state, T0)["known_days"] == 0.0
