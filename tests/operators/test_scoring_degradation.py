"""A lead scored while a property feed is stale, against values worked out by hand.

The rules are those of ``operators/degradation.py``'s docstring: a source silent for
1.5 times its limit is trusted ``2 ** -0.5``; stating the whole catalog, it makes a
share ``q = 1 - 2 ** -0.5`` of the property facts stale. A cold scorer explains with
the prior's source shares only, whose property part is ``m = 0.15 + 0.09 + 0.06``, so
the stale share of the evidence is ``s = q m``. The prior reads the ESG alignment,
which moves towards 50 with the property components, so the probability is the prior
at the degraded alignment; the interval's logit variance gains ``s``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from statistics import NormalDist

import pytest

from esg_leads.operators.degradation import REFERENCE
from esg_leads.operators.features import FEATURE_NAMES, investor_context
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.scoring import TenantScorer
from esg_leads.schemas.records import FeatureVector, FeedStatus, SourceFeed
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import teach

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 3, 20, tzinfo=timezone.utc)
CONTEXT = investor_context(InvestorProfileState((1.0, 7.0, 30.0)))
DAY = 86_400.0
#: Silent for 1.5 days against a one-day limit, stating the whole catalog.
FEEDS = FeedStatus("acme", T0.timestamp(), (SourceFeed("epc-register", DAY, T0.timestamp() - 1.5 * DAY, 1.0),))
Q = 1 - 2 ** -0.5
S = Q * (0.15 + 0.09 + 0.06)
COMPONENTS = {"energy_efficiency": 90.0, "certification": 70.0, "climate_resilience": 30.0,
              "esg_research": 40.0, "stated_commitment": 20.0, "preference_fit": 60.0}
#: The alignment's weights of the components read from property data, and of preference fit.
PROPERTY_WEIGHTS = {"energy_efficiency": 0.25, "certification": 0.15, "climate_resilience": 0.1}
PREFERENCE_WEIGHT = 0.15
Z = NormalDist().inv_cdf(0.95)


def vector(investor: str, *, feeds=None, context=CONTEXT, features=None, alignment=60.0,
           lineage_omitted=None) -> FeatureVector:
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f.update(profile_completeness=1.0, contactable=1.0, eng_30d=math.log1p(4), data_freshness=0.8,
             views_30d=math.log1p(3), epc_quality=0.9, high_epc_lift=0.4)
    f.update(features or {})
    return FeatureVector(
        tenant="acme", investor_id=investor, as_of=T0, feature_set_version="fs-2", features=f,
        values=tuple(f[n] for n in FEATURE_NAMES), esg_alignment=alignment,
        esg_components=dict(COMPONENTS), intent=70.0, engagement_readiness=40.0,
        data_freshness_days=30.0, context=context, lineage=(), lineage_omitted=lineage_omitted,
        feeds=feeds)


def prior(intent: float, alignment: float) -> float:
    # operators/prior.py with completeness 1 and contactable 1
    return 1 / (1 + math.exp(-(-3.6 + 3.2 * intent / 100 + (alignment - 50) / 50 + 0.4 + 0.3)))


def degraded_components() -> tuple[float, dict[str, float]]:
    out, shift = dict(COMPONENTS), 0.0
    for name, w in PROPERTY_WEIGHTS.items():
        out[name] = round((1 - Q) * COMPONENTS[name] + Q * 50.0, 2)
        shift += w * (out[name] - COMPONENTS[name])
    return round(60.0 + shift, 2), out


def alignment_interval(alignment: float, q: float, min_epc: bool) -> dict:
    n, stale = 3.0, 1 - 0.8  # views, 1 - freshness
    variance = sum(w * w for w in PROPERTY_WEIGHTS.values()) * 2500 * (1 / (1 + n) + stale**2 + q)
    if min_epc:
        variance += PREFERENCE_WEIGHT**2 * 2500 / (1 + n)
    half = Z * math.sqrt(variance)
    return {"low": round(max(0.0, alignment - half), 2), "high": round(min(100.0, alignment + half), 2),
            "level": 0.9}


def score_interval(p: float, extra: float) -> dict:
    # 0 (members agree) + 1/(4 + 0 labels) + floor^2 + 0.6/(1 + events) + 0.5 (1 - freshness)^2
    variance = 1 / 4 + 0.55**2 + 0.6 / (1 + 4) + 0.5 * 0.2**2 + extra
    half, centre = Z * math.sqrt(variance), math.log(p / (1 - p))
    return {"low": pytest.approx(1 / (1 + math.exp(half - centre)), abs=2e-6),
            "high": pytest.approx(1 / (1 + math.exp(-centre - half)), abs=2e-6), "level": 0.9}


def test_a_stale_feed_moves_the_score_to_the_prior_at_the_degraded_alignment_and_widens_it():
    scorer = TenantScorer("acme", Settings())
    stale, fresh = scorer.score_many([vector("inv-1", feeds=FEEDS), vector("inv-2")], NOW)[0]
    alignment, components = degraded_components()
    p = prior(70.0, alignment)
    record = stale.record
    assert record["probability"] == round(p, 6)
    assert record["interval"] == score_interval(p, S)  # STALE_VARIANCE x s
    assert record["esg_alignment"] == {"score": alignment, "components": components,
                                       "interval": alignment_interval(alignment, Q, False)}
    assert record["explanation"]["stale_evidence_share"] == round(S, 4) == 0.0879
    assert record["explanation"]["stale_sources"] == [{
        "source": "epc-register",
        "last_signal": T0 - timedelta(days=1.5),
        "stale_since": T0 - timedelta(days=0.5),
        "trust": 0.7071,
        "catalog_share": 1.0}]
    # The fresh lead of the same batch: its own alignment and components, nothing stale.
    p = prior(70.0, 60.0)
    record = fresh.record
    assert record["probability"] == round(p, 6)
    assert record["interval"] == score_interval(p, 0.0)
    assert record["esg_alignment"] == {"score": 60.0, "components": COMPONENTS,
                                       "interval": alignment_interval(60.0, 0.0, False)}
    assert record["explanation"]["stale_evidence_share"] == 0.0
    assert record["explanation"]["stale_sources"] == []


def test_the_esg_interval_counts_preference_fit_only_for_an_investor_who_stated_a_minimum_epc():
    banded = CONTEXT._replace(min_epc_band="B")
    scorer = TenantScorer("acme", Settings())
    records = scorer.score_many([vector("inv-1", context=banded), vector("inv-2"),
                                 vector("inv-3", context=banded, feeds=FEEDS),
                                 vector("inv-4", feeds=FEEDS)], NOW)[0]
    alignment = degraded_components()[0]
    assert [r.record["esg_alignment"]["interval"] for r in records] == [
        alignment_interval(60.0, 0.0, True), alignment_interval(60.0, 0.0, False),
        alignment_interval(alignment, Q, True), alignment_interval(alignment, Q, False)]


def test_a_stale_share_of_the_evidence_scales_a_trained_models_contributions_down():
    # A trained model explains with contributions; a stale lead's are those of its
    # degraded features, times (1 - s). A lead without feeds whose features are already
    # the degraded ones (property features moved a share q to their reference) shows
    # the unscaled contributions of the same model.
    scorer = TenantScorer("acme", Settings())
    teach(scorer, 120)
    blended = {name: (1 - Q) * vector("x").features[name] + Q * ref for name, ref in REFERENCE.items()}
    fresh, stale, moved = scorer.score_many([
        vector("inv-1"), vector("inv-2", feeds=FEEDS),
        vector("inv-3", features=blended, alignment=degraded_components()[0])], NOW)[0]
    shares = fresh.record["explanation"]["source_weights"]
    s = Q * (shares["property_epc"] + shares["certifications"] + shares["climate_risk"])
    assert 0.02 < s < 0.3
    assert stale.record["explanation"]["stale_evidence_share"] == pytest.approx(s, abs=3e-4)
    for side in ("top_positive", "top_negative"):
        got = stale.record["explanation"][side]
        want = moved.record["explanation"][side]
        assert [g["feature"] for g in got] == [w["feature"] for w in want]
        assert [g["contribution"] for g in got] == pytest.approx(
            [w["contribution"] * (1 - s) for w in want], abs=2e-4)
    assert stale.record["explanation"]["top_positive"] or stale.record["explanation"]["top_negative"]
