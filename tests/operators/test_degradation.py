"""Stale-feed degradation and the ESG alignment and readiness intervals, worked out by hand.

Expected numbers come from the module docstring's formulas, recomputed here in plain
arithmetic: trust halves per further ``max_staleness`` of silence; ``q`` is the stale
share of the catalog; property features blend to their reference values by ``q``; the
stale share of a lead's evidence ``s = q * m`` moves to the prior and adds ``s`` to the
logit variance. The scorer-level tests compare with the prior's rule
(``tests/operators/test_scoring_values.py``) and, for a trained model, with the same
scorer scoring hand-degraded features without any feed status.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.degradation import (
    alignment_sd,
    degrade_components,
    degrade_features,
    silence,
    stale_share,
    trust,
)
from esg_leads.operators.features import FEATURE_NAMES
from esg_leads.operators.scoring import TenantScorer
from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.schemas.records import FeedStatus, SourceFeed
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import NOW, T0, check_lead, separable, teach, vector
from tests.operators.test_scoring_values import hand_prior

DAY = 86_400.0
Z90 = NormalDist().inv_cdf(0.95)


# ------------------------------------------------------------ silence, trust, share

FEED = SourceFeed("epc-register", DAY, 10 * DAY, 0.4, gaps=((2 * DAY, 5 * DAY),))


@pytest.mark.parametrize(("t", "read_at", "silent", "trusted"), [
    (12 * DAY, math.inf, 2 * DAY, 0.5),  # 1 day past the limit: half
    (13 * DAY, math.inf, 3 * DAY, 0.25),  # 2 days past: a quarter
    (10.5 * DAY, math.inf, 0.5 * DAY, 1.0),  # within the limit: fully trusted
    (3.5 * DAY, math.inf, 1.5 * DAY, 2 ** -0.5),  # inside a recorded outage
    (6 * DAY, math.inf, 0.0, 1.0),  # between signals after the outage
    (13 * DAY, 11.5 * DAY, 3 * DAY, 0.25),  # stale when read: still silent since
    (13 * DAY, 10.5 * DAY, 0.0, 1.0),  # not stale when read: well (a change is sent)
])
def test_silence_and_trust(t, read_at, silent, trusted):
    assert silence(FEED, t, read_at) == silent
    assert trust(silent, DAY) == pytest.approx(trusted, abs=1e-12)


def test_stale_share_sums_each_source_share_times_its_distrust():
    other = SourceFeed("owner-portal", 2 * DAY, 9 * DAY, 0.25)
    status = FeedStatus("acme", 13 * DAY, (FEED, other))
    # epc-register: 3 days silent, limit 1 -> trust 1/4; owner-portal: 4 days, limit 2 -> 1/2
    assert stale_share(status, 13 * DAY) == pytest.approx(0.4 * 0.75 + 0.25 * 0.5)
    assert stale_share(None, 13 * DAY) == 0.0
    assert stale_share(status, 10.5 * DAY) == 0.0


def test_property_features_blend_to_their_reference_values():
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f.update(high_epc_lift=0.4, epc_quality=0.9, verified_share=1.0, data_freshness=0.9,
             eng_30d=2.0, pref_match_epc=0.8, green_dwell_ratio=-2.0)
    X = np.array([[f[n] for n in FEATURE_NAMES], [f[n] for n in FEATURE_NAMES]])
    out = degrade_features(X, np.array([0.5, 0.0]))
    got = dict(zip(FEATURE_NAMES, out[0].tolist(), strict=True))
    assert got["high_epc_lift"] == pytest.approx(0.2)
    assert got["epc_quality"] == pytest.approx(0.5 * 0.9 + 0.5 * 0.5)
    assert got["verified_share"] == pytest.approx(0.75)
    assert got["data_freshness"] == pytest.approx(0.45 + 0.5 * math.exp(-1))
    assert got["green_dwell_ratio"] == pytest.approx(-1.0)
    # Engagement and profile features are not the stale source's: untouched.
    assert got["eng_30d"] == 2.0 and got["pref_match_epc"] == 0.8
    assert out[1].tolist() == X[1].tolist()


def test_property_components_move_to_neutral_and_the_alignment_with_them():
    components = {"energy_efficiency": 90.0, "certification": 20.0, "climate_resilience": 50.0,
                  "esg_research": 40.0, "stated_commitment": 60.0, "preference_fit": 30.0}
    alignment, out = degrade_components(components, 55.0, 0.25)
    # 0.75 * 90 + 0.25 * 50 = 80; 0.75 * 20 + 12.5 = 27.5; research, stated, fit stay.
    assert out == {**components, "energy_efficiency": 80.0, "certification": 27.5}
    assert alignment == round(55.0 + 0.25 * (80 - 90) + 0.15 * (27.5 - 20), 2)  # published to 2 places


# ---------------------------------------------------------------- the scorer

def _status(share: float = 1.0, silent_days: float = 2.0, limit_days: float = 1.0) -> FeedStatus:
    as_of = T0.timestamp()
    return FeedStatus("acme", as_of, (
        SourceFeed("epc-register", limit_days * DAY, as_of - silent_days * DAY, share),))


def _cold_vector(feeds: FeedStatus | None):
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f.update(profile_completeness=0.75, contactable=1.0, eng_30d=math.log1p(4),
             views_30d=math.log1p(4), data_freshness=0.9, recency_days=7.0, high_epc_lift=0.32)
    components = {"energy_efficiency": 90.0, "certification": 70.0, "climate_resilience": 30.0,
                  "esg_research": 0.0, "stated_commitment": 50.0, "preference_fit": 50.0}
    v = vector(0, intent=60.0, alignment=51.0)
    return v._replace(features=f, values=tuple(f[n] for n in FEATURE_NAMES),
                      esg_components=components, engagement_readiness=40.0, feeds=feeds)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_a_cold_lead_with_a_stale_source_scores_with_the_degraded_prior_and_a_wider_interval():
    """Share 1, silent 2 days over a 1-day limit: trust 1/2, q = 1/2; cold scorer: the
    prior's source shares, so m = 0.15 + 0.09 + 0.06 = 0.3 and s = 0.15."""
    scorer = TenantScorer("acme", Settings())
    (fresh,), _ = scorer.score_many([_cold_vector(None)], NOW)
    (stale,), _ = scorer.score_many([_cold_vector(_status())], NOW)
    fresh, stale = fresh.record, stale.record
    lead = check_lead(stale, _cold_vector(_status()))  # the record validates as published
    assert lead.explanation.stale_sources[0].source == "epc-register"
    # Components: 0.5 c + 25 -> efficiency 70, certification 60, climate 40;
    # alignment 51 + 0.25 (-20) + 0.15 (-10) + 0.1 (+10) = 45.5.
    assert stale["esg_alignment"]["score"] == 45.5
    assert stale["esg_alignment"]["components"] == {
        "energy_efficiency": 70.0, "certification": 60.0, "climate_resilience": 40.0,
        "esg_research": 0.0, "stated_commitment": 50.0, "preference_fit": 50.0}
    # Prior weight 1 with or without the shift: the probability is the prior of 45.5.
    assert stale["probability"] == round(hand_prior(60.0, 45.5, 0.75, 1.0), 6)
    assert fresh["probability"] == round(hand_prior(60.0, 51.0, 0.75, 1.0), 6)
    # Logit variance: 1/4 (no labels) + 0.55^2 + 0.6/(1+4) + 0.5 (1-0.9)^2, plus s = 0.15.
    base = 0.25 + 0.55 ** 2 + 0.6 / 5 + 0.5 * 0.1 ** 2
    for record, variance in ((fresh, base), (stale, base + 0.15)):
        p, lo, hi = record["probability"], record["interval"]["low"], record["interval"]["high"]
        assert lo < p < hi
        assert (_logit(hi) - _logit(lo)) / 2 == pytest.approx(Z90 * math.sqrt(variance), abs=1e-4)
    explanation = stale["explanation"]
    assert explanation["stale_evidence_share"] == 0.15
    assert explanation["stale_sources"] == [{
        "source": "epc-register", "last_signal": T0 - timedelta(days=2),
        "stale_since": T0 - timedelta(days=1), "trust": 0.5, "catalog_share": 1.0}]
    assert (fresh["explanation"]["stale_sources"], fresh["explanation"]["stale_evidence_share"]) \
        == ([], 0.0)
    # Alignment: n = 4 views, freshness 0.9; each property component's variance
    # 50^2 (1/5 + 0.1^2 + q) weighed by 0.25^2 + 0.15^2 + 0.1^2 (no stated minimum EPC).
    for record, q, centre in ((fresh, 0.0, 51.0), (stale, 0.5, 45.5)):
        sd = math.sqrt(0.095 * 2500 * (0.2 + 0.01 + q))
        assert record["esg_alignment"]["interval"] == {
            "low": round(centre - Z90 * sd, 2), "high": round(centre + Z90 * sd, 2), "level": 0.9}
    # Readiness reads no property data: the same interval either way,
    # sd = 0.65 (0.4 + 0.6 e^(-7/21)) 25 / sqrt(1 + 4).
    sd = 0.65 * (0.4 + 0.6 * math.exp(-1 / 3)) * 25 / math.sqrt(5)
    expected = {"low": round(40 - Z90 * sd, 2), "high": round(40 + Z90 * sd, 2), "level": 0.9}
    assert fresh["engagement_readiness_interval"] == expected
    assert stale["engagement_readiness_interval"] == expected


def test_a_source_within_its_limit_changes_nothing():
    scorer = TenantScorer("acme", Settings())
    (fresh,), _ = scorer.score_many([_cold_vector(None)], NOW)
    (watched,), _ = scorer.score_many([_cold_vector(_status(silent_days=0.9))], NOW)
    assert watched.record == fresh.record


@pytest.fixture(scope="module")
def warm() -> TenantScorer:
    """A trained scorer (prior weight below 1) with an identity calibration map, so the
    probability is the mean of the blended members."""
    scorer = TenantScorer("acme", Settings.model_validate(
        {"scoring": {"prior_labels": 40, "ensemble_size": 4, "seed": 7}}))
    teach(scorer, 160)
    scorer.calibrator = OnlineCalibrator(bins=scorer.s.calibration_bins)
    return scorer


def test_a_trained_lead_moves_the_stale_share_of_its_evidence_to_the_prior(warm):
    """Expected: the same scorer on features degraded by hand (no feed status), then
    ``(1 - s) p + s prior(A')`` with ``s = q m``, ``m`` the property share of the fresh
    lead's source weights."""
    q = 0.5 * 0.75  # share 0.5, silent 3 days over a 1-day limit: trust 1/4
    v = vector(3, random.Random(5), high_epc_lift=0.3, epc_quality=0.8, certified_lift=-0.2,
               verified_share=0.9, data_freshness=0.7, green_dwell_ratio=1.5)
    (fresh,), _ = warm.score_many([v], NOW)
    (stale,), _ = warm.score_many([v._replace(feeds=_status(0.5, 3.0))], NOW)
    fresh, stale = fresh.record, stale.record
    shares = fresh["explanation"]["source_weights"]
    m = shares["property_epc"] + shares["certifications"] + shares["climate_risk"]
    s = q * m
    assert 0 < m < 1 and fresh["model"]["prior_weight"] < 1
    reference = {"green_dwell_ratio": 0.0, "high_epc_lift": 0.0, "epc_quality": 0.5,
                 "certified_lift": 0.0, "low_risk_lift": 0.0, "esg_content_lift": 0.0,
                 "verified_share": 0.5, "data_freshness": math.exp(-1), "risk_fit": 0.5}
    f = {n: (1 - q) * x + q * reference[n] if n in reference else x for n, x in v.features.items()}
    # vector(): efficiency 60, certification 50; alignment 55 -> 55 + 0.25 * (-10 q)
    efficiency = round((1 - q) * 60 + q * 50, 2)
    alignment = round(55 + 0.25 * (efficiency - 60), 2)
    by_hand = v._replace(features=f, values=tuple(f[n] for n in FEATURE_NAMES),
                         esg_alignment=alignment,
                         esg_components={"energy_efficiency": efficiency, "certification": 50.0})
    (hand,), _ = warm.score_many([by_hand], NOW)
    prior = hand_prior(40.0, alignment, v.features["profile_completeness"], v.features["contactable"])
    expected = (1 - s) * hand.record["probability"] + s * prior
    assert stale["probability"] == pytest.approx(expected, abs=1e-4)
    assert stale["probability"] != pytest.approx(fresh["probability"], abs=1e-4)
    assert stale["explanation"]["stale_evidence_share"] == pytest.approx(s, abs=1e-4)
    assert stale["esg_alignment"]["score"] == alignment


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), share=st.floats(0.01, 1.0),
       limit_days=st.floats(0.1, 5.0), ages=st.lists(st.floats(0.0, 30.0), min_size=2, max_size=5))
def test_intervals_are_monotone_in_staleness_and_contain_the_estimate(warm, seed, share,
                                                                     limit_days, ages):
    rng = random.Random(seed)
    v, _ = separable(seed, rng)
    f = dict(v.features, views_30d=rng.uniform(0, 4), data_freshness=rng.uniform(0, 1),
             contactable=float(rng.random() < 0.7), recency_days=rng.uniform(0, 60),
             eng_30d=rng.uniform(0, 4))
    v = v._replace(features=f, values=tuple(f[n] for n in FEATURE_NAMES),
                   engagement_readiness=rng.uniform(0, 100) if f["contactable"] else 0.0,
                   esg_components={"energy_efficiency": rng.uniform(0, 100),
                                   "certification": rng.uniform(0, 100),
                                   "climate_resilience": rng.uniform(0, 100)})
    widths, sds = [], []
    for age in sorted(ages):
        (scored,), _ = warm.score_many([v._replace(feeds=_status(share, age, limit_days))], NOW)
        r = scored.record
        lo, p, hi = r["interval"]["low"], r["probability"], r["interval"]["high"]
        assert lo <= p <= hi
        for name in ("esg_alignment", "engagement_readiness"):
            point = r[name]["score"] if name == "esg_alignment" else r[name]
            interval = r[name]["interval"] if name == "esg_alignment" else r[f"{name}_interval"]
            assert interval["low"] <= point <= interval["high"]
        # Bounds are rounded to 6 places: allow that much on the logit scale.
        slack = 5e-7 * (1 / (lo * (1 - lo)) + 1 / (hi * (1 - hi)))
        widths.append(((_logit(hi) - _logit(lo)) / 2, slack))
        sds.append(alignment_sd(f, False, stale_share(_status(share, age, limit_days),
                                                       T0.timestamp())))
    for (a, slack_a), (b, slack_b) in zip(widths, widths[1:]):
        assert b >= a - slack_a - slack_b
    assert sds == sorted(sds)
