"""Scoring values worked out by hand: the cold-start score and interval, tiers, alerts.

A scorer without labels scores with the prior alone (``w_prior = 1``), its ensemble
members agree, and its calibration map is the identity; so the probability is the
prior's logistic rule and the interval's logit variance is the sum of the documented
evidence terms, both recomputed here from the module docstring's formulas.
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime, timedelta, timezone
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from esg_leads.operators.features import FEATURE_NAMES, investor_context
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.scoring import TenantScorer, _row_means, _row_variances, tenant_seed, tier_of
from esg_leads.online_models.drift import Detection
from esg_leads.schemas.records import FeatureVector
from esg_leads.schemas.settings import ScoringSettings, Settings

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 3, 20, tzinfo=timezone.utc)


def vector(*, intent, alignment, completeness, contactable, events, freshness) -> FeatureVector:
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f.update(profile_completeness=completeness, contactable=contactable,
             eng_30d=math.log1p(events), data_freshness=freshness)
    return FeatureVector(
        tenant="acme", investor_id="inv-7", as_of=T0, feature_set_version="fs-2", features=f,
        values=tuple(f[n] for n in FEATURE_NAMES), esg_alignment=alignment, esg_components={},
        intent=intent, engagement_readiness=10.0, data_freshness_days=12.0,
        context=investor_context(InvestorProfileState((1.0, 7.0, 30.0))), lineage=())


def hand_prior(intent, alignment, completeness, contactable) -> float:
    # operators/prior.py: logit = -3.6 + 3.2 intent/100 + (alignment - 50)/50 + 0.4 c + 0.3 k
    logit = -3.6 + 3.2 * intent / 100 + (alignment - 50) / 50 + 0.4 * completeness + 0.3 * contactable
    return 1 / (1 + math.exp(-logit))


CASES = [
    dict(intent=80.0, alignment=70.0, completeness=1.0, contactable=1.0, events=4.0, freshness=0.9),
    dict(intent=10.0, alignment=30.0, completeness=0.25, contactable=0.0, events=0.0, freshness=0.3),
    dict(intent=100.0, alignment=100.0, completeness=1.0, contactable=1.0, events=50.0, freshness=1.0),
]


@pytest.mark.parametrize("case", CASES, ids=["engaged", "cold", "keen"])
def test_a_cold_score_is_the_prior_with_the_documented_interval(case):
    (scored,), alerts = TenantScorer("acme", Settings()).score_many([vector(**case)], NOW)
    record = scored.record
    p = hand_prior(case["intent"], case["alignment"], case["completeness"], case["contactable"])
    assert alerts == []
    assert record["probability"] == round(p, 6)
    assert record["score"] == round(100 * p)
    # Logit variance: members agree (0) + 1/(4 + 0 labels) + floor 0.55^2
    # + 0.6/(1 + events) + 0.5 (1 - freshness)^2; half width z(0.95) * sd.
    variance = 0 + 1 / 4 + 0.55**2 + 0.6 / (1 + case["events"]) + 0.5 * (1 - case["freshness"]) ** 2
    half = NormalDist().inv_cdf(0.95) * math.sqrt(variance)
    centre = math.log(p / (1 - p))
    assert record["interval"] == {"low": pytest.approx(1 / (1 + math.exp(half - centre)), abs=2e-6),
                                  "high": pytest.approx(1 / (1 + math.exp(-centre - half)), abs=2e-6),
                                  "level": 0.9}
    assert record["tier"] == ("hot" if p >= 0.5 else "warm" if p >= 0.25
                              else "nurture" if p >= 0.1 else "cold")
    assert record["idempotency_key"] == f"lead:acme:inv-7:{int(T0.timestamp())}"
    assert record["model"] == {"model_version": "bagged-logreg:acme:g0:n0", "feature_set_version": "fs-2",
                               "tenant_labels": 0, "prior_weight": 1.0, "global_weight": 0.0}
    assert record["explanation"]["source_weights"] == {
        "property_epc": 0.15, "certifications": 0.09, "climate_risk": 0.06, "engagement": 0.6,
        "profile": 0.1}
    assert (record["state"], record["event_time"], record["processed_at"]) == ("scored", T0, NOW)


def test_a_wider_interval_for_fewer_events_and_staler_data():
    def width(**kw):
        case = {**CASES[0], **kw}
        (scored,), _ = TenantScorer("acme", Settings()).score_many([vector(**case)], NOW)
        return scored.record["interval"]["high"] - scored.record["interval"]["low"]
    assert width(events=0.0) > width(events=4.0) > width(events=400.0)
    assert width(freshness=0.1) > width(freshness=0.9) > width(freshness=1.0) > 0


@pytest.mark.parametrize("p, tier", [
    (0.5, "hot"), (0.4999, "warm"), (0.25, "warm"), (0.2499, "nurture"), (0.1, "nurture"),
    (0.0999, "cold"), (0.0, "cold"), (1.0, "hot")])
def test_tiers_start_at_their_thresholds(p, tier):
    assert tier_of(p, ScoringSettings()) == tier


def test_tiers_follow_configured_thresholds():
    s = ScoringSettings(hot=0.8, warm=0.6, nurture=0.3)
    assert [tier_of(p, s) for p in (0.85, 0.7, 0.4, 0.2)] == ["hot", "warm", "nurture", "cold"]


def test_tenant_seeds_differ_by_tenant_and_stay_in_31_bits():
    assert tenant_seed(7, "acme") == (7 * 1_000_003 + zlib.crc32(b"acme")) % 2**31
    assert tenant_seed(2**40, "") == 0  # wraps into 31 bits
    seeds = {tenant_seed(s, t) for s in (0, 1, 5) for t in ("acme", "globex", "initech")}
    assert len(seeds) == 9 and all(0 <= s < 2**31 for s in seeds)


def test_an_alert_names_the_detection_and_the_model_state():
    scorer = TenantScorer("acme", Settings())
    detection = Detection("ADWIN", "feature:stated_esg", 2345, 0.4567891, 200, 1.25)
    when = T0 + timedelta(hours=2)
    assert scorer.alert("drift_detected", detection, when, NOW) == {
        "schema_version": scorer.alert("x", detection, when, NOW)["schema_version"],
        "idempotency_key": "alert:acme:drift_detected:feature:stated_esg:2345",
        "tenant": "acme", "kind": "drift_detected", "detector": "ADWIN",
        "subject": "feature:stated_esg", "event_time": when, "processed_at": NOW,
        "details": {"index": 2345, "mean_after": 0.456789, "window": 200, "effect_sd": 1.25,
                    "tenant_labels": 0, "model_generation": 0},
    }


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 9)),
              elements=st.floats(-50, 50)))
def test_row_means_and_variances_equal_numpy_bit_for_bit(a):
    assert np.array_equal(_row_means(a), a.mean(axis=1))
    assert np.array_equal(_row_variances(a), a.std(axis=1) ** 2)


def test_quality_gauges_are_published_every_50_labels():
    from tests.operators.test_scoring import teach

    scorer = TenantScorer("acme", Settings())
    teach(scorer, 49)
    assert scorer.gauges == {}
    teach(scorer, 1, start=49)
    assert set(scorer.gauges) == {("model_log_loss", "acme"), ("model_auc", "acme")}
    assert 0 < scorer.gauges[("model_log_loss", "acme")] < 5
    assert 0 <= scorer.gauges[("model_auc", "acme")] <= 1


def test_a_warm_started_models_version_names_its_origin():
    scorer = TenantScorer("acme", Settings())
    case = CASES[0]
    assert scorer.score_many([vector(**case)], NOW)[0][0].record["model"]["model_version"] == \
        "bagged-logreg:acme:g0:n0"
    scorer.origin = "acme-2026-03-01"  # the registry version it started from
    assert scorer.score_many([vector(**case)], NOW)[0][0].record["model"]["model_version"] == \
        "bagged-logreg:acme:g0:n0:from-acme-2026-03-01"


def test_omitted_lineage_points_to_the_investors_audit_rows():
    scorer = TenantScorer("acme", Settings())
    v = vector(**CASES[0])
    omitted = v._replace(lineage_omitted={"count": 7, "digest": "ab12"})
    (full, cut), _ = scorer.score_many([v, omitted], NOW)
    assert full.record["lineage_omitted"] is None
    assert cut.record["lineage_omitted"] == {"count": 7, "digest": "ab12", "audit": "audit:acme:inv-7:"}
