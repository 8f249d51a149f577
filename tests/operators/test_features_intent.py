"""The fs-3 features (issue 18): dwell on sought-out pages, time known, thesis and risk fit.

Hand-worked values on the fixture of ``test_features_values.py`` (its naive reference
recomputes them too), then properties (hypothesis): a ticket closer to what the investor
looks at, or to the catalog's typical lot, never lowers the fit; a property moved into
the thesis never lowers thesis fit; a property moved within the risk limit, or a more
tolerant investor, never lowers risk fit; longer dwell never lowers ``seek_dwell``;
``known_days`` never falls as time passes. Every value stays in its documented range.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.feature_definitions import FEATURE_RANGES
from esg_leads.operators.features import RISK_TOLERANCE_LIMIT, risk_fit, thesis_fit
from esg_leads.operators.investor_profile import InvestorProfileState
from tests.operators.test_features_values import (
    AS_OF,
    BROWN,
    DAY,
    GREEN,
    HALF_LIVES,
    SAFE,
    T0,
    Touch,
    module_features,
    prop,
)

D30 = 0.5 ** (1 / 30)  # a touch in the first window, one day later (30-day content half-life)


def test_hand_worked_values_of_the_fixture():
    _, f = module_features(AS_OF)
    # Four views with dwell 60, 20, 40, 30 s, none from a campaign, plus 3 pseudo-views of 60 s.
    logs = math.log1p(60) + math.log1p(20) + math.log1p(40) + math.log1p(30)
    assert f["seek_dwell"] == pytest.approx((logs + 3 * math.log1p(60)) / 7)
    assert f["seek_dwell"] == pytest.approx(3.805082, abs=1e-6)
    # Known since the first touch, 50 minutes before the first window's end (T0); the
    # profile came at T0, after it.
    assert f["known_days"] == pytest.approx(1 + 50 / 1440)
    # Thesis GB + office, ticket 5M. Green (GB office 3M), touched twice (weights d30 + 1):
    # (1 + 1 + exp(-ln(5/3)/2)) / 3 = 0.924866; brown (DE retail 9M), once a day ago:
    # (0 + 0 + exp(-ln(9/5)/2)) / 3 = 0.248452; safe (GB office, no value), twice now: 1.
    green = (2 + math.exp(-math.log(5 / 3) / 2)) / 3
    brown = math.exp(-math.log(9 / 5) / 2) / 3
    assert green == pytest.approx(0.924866, abs=1e-6) and brown == pytest.approx(0.248452, abs=1e-6)
    expected = ((D30 + 1) * green + D30 * brown + 2 * 1.0 + 1.5) / ((D30 + 1) + D30 + 2 + 3)
    assert f["thesis_fit"] == pytest.approx(expected)
    assert f["thesis_fit"] == pytest.approx(0.700422, abs=1e-6)
    # Risk: the stated cap 40; green 20 is within, brown 70 is not, safe has no rating.
    assert f["risk_fit"] == pytest.approx((D30 + 1 + 1.5) / ((D30 + 1) + D30 + 3))
    assert f["risk_fit"] == pytest.approx(0.583973, abs=1e-6)


def test_views_a_campaign_led_to_do_not_count_as_sought_out():
    own = (Touch(1, 30, "property_view", GREEN, 300.0),)
    led = (Touch(1, 30, "property_view", GREEN, 300.0, campaign="cmp-1"),)
    _, f_own = module_features(AS_OF, touches=own)
    _, f_led = module_features(AS_OF, touches=led)
    assert f_own["seek_dwell"] == pytest.approx((math.log1p(300) + 3 * math.log1p(60)) / 4)
    assert f_led["seek_dwell"] == pytest.approx(math.log1p(60))  # the prior alone
    assert f_led["dwell_per_view"] == f_own["dwell_per_view"]  # the older feature reads both


def test_only_property_views_count_as_dwell():
    touches = (Touch(1, 40, "property_view", GREEN, 30.0), Touch(1, 30, "webinar_attended", None, 3000.0),
               Touch(1, 20, "call", None, 900.0))
    _, f = module_features(AS_OF, touches=touches)
    assert f["seek_dwell"] == pytest.approx((math.log1p(30) + 3 * math.log1p(60)) / 4)


def test_known_days_runs_from_a_profile_that_came_before_any_engagement():
    touches = (Touch(1, 10, "property_view", GREEN, 30.0),)
    _, f = module_features(AS_OF, touches=touches)
    # Profile at T0, the only touch 10 minutes before T0 + 1 day: known for a day.
    assert f["known_days"] == pytest.approx(1.0)
    assert f["tenure_days"] == pytest.approx(10 / 1440)  # since the first engagement only
    _, capped = module_features(AS_OF + 200 * DAY, touches=touches)
    assert capped["known_days"] == 90.0


def test_without_thesis_or_limit_the_fits_are_neutral():
    _, f = module_features(AS_OF, target_countries=[], target_asset_classes=[],
                           ticket_max_eur=None, preferences={})
    assert f["thesis_fit"] == 0.5 and f["risk_fit"] == 0.5
    assert thesis_fit(InvestorProfileState(HALF_LIVES)) == 0.5
    assert risk_fit(InvestorProfileState(HALF_LIVES)) == 0.5


@pytest.mark.parametrize("tolerance, limit", sorted(RISK_TOLERANCE_LIMIT.items()))
def test_the_risk_tolerance_sets_the_limit_when_no_cap_is_stated(tolerance, limit):
    prefs = {"min_epc_band": "C"}  # no max_climate_risk
    _, f = module_features(AS_OF, preferences=prefs, risk_tolerance=tolerance)
    within = (D30 + 1) * (20 <= limit) + D30 * (70 <= limit)
    assert f["risk_fit"] == pytest.approx((within + 1.5) / ((D30 + 1) + D30 + 3))


def test_an_excluded_asset_class_is_no_thesis_match():
    one = (Touch(1, 10, "property_view", BROWN, 30.0),)  # DE retail 9M
    _, f = module_features(AS_OF, touches=one, target_countries=["DE"], target_asset_classes=[],
                           ticket_max_eur=None, preferences={"excluded_asset_classes": ["retail"]})
    # Checks: asset excluded (0), country targeted (1): 0.5 for a weight-1 property.
    assert f["thesis_fit"] == pytest.approx((0.5 + 1.5) / 4)
    _, f = module_features(AS_OF, touches=one, target_countries=["DE"], target_asset_classes=[],
                           ticket_max_eur=None, preferences={})
    assert f["thesis_fit"] == pytest.approx((1 + 1.5) / 4)


# -------------------------------------------------------------- properties

def _view(value: float, risk: int | None = None, country: str = "GB", asset: str = "office",
          duration: float = 30.0) -> tuple[Touch, ...]:
    facts = prop("p", band="C", country=country, asset=asset, value=value,
                 data_days_before_t0=10, climate_risk=risk)
    return (Touch(1, 20, "property_view", facts, duration), Touch(0, 20, "property_view", SAFE, 45.0))


log_values = st.floats(math.log(1e5), math.log(1e10))


@settings(max_examples=60, deadline=None)
@given(log_values, log_values, st.floats(0, 1))
def test_a_ticket_closer_to_the_viewed_value_never_lowers_ticket_or_thesis_fit(log_value, log_ticket, t):
    value = math.exp(log_value)
    far, near = math.exp(log_ticket), math.exp(log_ticket + t * (log_value - log_ticket))
    _, f_far = module_features(AS_OF, touches=_view(value), ticket_max_eur=far)
    _, f_near = module_features(AS_OF, touches=_view(value), ticket_max_eur=near)
    assert f_near["thesis_fit"] >= f_far["thesis_fit"] - 1e-12
    # With SAFE (no value) alongside, ticket_fit reads the one valued property.
    assert f_near["ticket_fit"] >= f_far["ticket_fit"] - 1e-12


@settings(max_examples=60, deadline=None)
@given(st.floats(math.log(1e5), math.log(1e10)), st.floats(0, 1))
def test_a_ticket_closer_to_the_catalog_lot_never_lowers_ticket_catalog_fit(log_ticket, t):
    lot = math.log(4e6)  # the fixture catalog's typical lot
    far, near = math.exp(log_ticket), math.exp(log_ticket + t * (lot - log_ticket))
    _, f_far = module_features(AS_OF, ticket_max_eur=far)
    _, f_near = module_features(AS_OF, ticket_max_eur=near)
    assert f_near["ticket_catalog_fit"] >= f_far["ticket_catalog_fit"] - 1e-12


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["GB", "DE", "FR"]), st.sampled_from(["office", "retail", "hotel"]),
       st.floats(1e5, 1e9))
def test_moving_a_property_into_the_thesis_never_lowers_thesis_fit(country, asset, value):
    thesis = {"target_countries": ["GB"], "target_asset_classes": ["office"]}
    outside = module_features(AS_OF, touches=_view(value, country=country, asset=asset), **thesis)[1]
    inside = module_features(AS_OF, touches=_view(value), **thesis)[1]
    assert inside["thesis_fit"] >= outside["thesis_fit"]
    assert inside["thesis_fit"] > outside["thesis_fit"] or (country, asset) == ("GB", "office")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100))
def test_lower_climate_risk_or_a_higher_limit_never_lowers_risk_fit(risk, lower, cap):
    safer = min(risk, lower)
    risky = module_features(AS_OF, touches=_view(2e6, risk), preferences={"max_climate_risk": cap})[1]
    safe = module_features(AS_OF, touches=_view(2e6, safer), preferences={"max_climate_risk": cap})[1]
    looser = module_features(AS_OF, touches=_view(2e6, risk),
                             preferences={"max_climate_risk": min(100, cap + 10)})[1]
    assert safe["risk_fit"] >= risky["risk_fit"] and looser["risk_fit"] >= risky["risk_fit"]
    assert 0.0 < risky["risk_fit"] < 1.0  # shrunk: one view never decides it


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 86_400), st.floats(0, 86_400))
def test_longer_dwell_never_lowers_seek_dwell(a, b):
    short, long_ = sorted((a, b))
    f_short = module_features(AS_OF, touches=_view(2e6, duration=short))[1]
    f_long = module_features(AS_OF, touches=_view(2e6, duration=long_))[1]
    assert f_long["seek_dwell"] >= f_short["seek_dwell"]
    low, high = FEATURE_RANGES["seek_dwell"]
    assert low <= f_short["seek_dwell"] <= f_long["seek_dwell"] <= high


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 24 * 120), st.integers(0, 24 * 120))
def test_known_days_never_falls_as_time_passes_and_stays_in_range(h1, h2):
    state, _ = module_features(AS_OF)
    from esg_leads.operators.features import compute_features

    earlier, later = sorted((h1, h2))
    values = []
    for hours in (earlier, later):
        when = AS_OF + timedelta(hours=hours)
        state.decay_to(when, HALF_LIVES)
        values.append(compute_features(state, when)["known_days"])
    assert values[0] <= values[1] <= FEATURE_RANGES["known_days"][1]
    assert T0 < AS_OF  # the fixture's profile precedes the scores


def test_a_snapshot_from_before_fs3_restores_and_scores():
    """State pickled before seek_dwell and first_known existed: no dwell seen yet (the
    prior), time known from the first engagement."""
    from esg_leads.operators.features import compute_features
    from esg_leads.operators.investor_window import WindowAggregate
    from tests.operators.test_features_values import build_state

    state = build_state()
    _, slots = state.__getstate__()
    old = {k: v for k, v in slots.items() if k != "first_known"}
    # Totals and dwell as lists of their own, no seek_dwell (stop 31 keeps the three in
    # one array: totals, then dwell, then seek_dwell).
    old["totals"], old["dwell"] = list(state.totals[:5]), list(state.dwell)
    restored = InvestorProfileState.__new__(InvestorProfileState)
    restored.__setstate__((None, old))
    f = compute_features(restored, AS_OF)
    assert f["seek_dwell"] == pytest.approx(math.log1p(60))
    assert f["known_days"] == pytest.approx(f["tenure_days"])
    window_slots = WindowAggregate().__getstate__()[1]
    window = WindowAggregate.__new__(WindowAggregate)
    window.__setstate__((None, {k: v for k, v in window_slots.items() if k != "seek_dwell"}))
    assert window.seek_dwell == [0.0, 0]
