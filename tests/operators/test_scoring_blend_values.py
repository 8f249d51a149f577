"""Scoring values of a trained tenant model blended with a global model, worked out by hand.

The oracle below rebuilds a lead record from the formula of the module docstring of
:mod:`operators.scoring` and the models' own parameters, read from River's objects
(each scaler's means and variances, each member's weights and intercept), in plain
Python loops; nothing in it calls ``operators.scoring``. The calibration map is the
scorer's own (:mod:`online_models.calibration` is tested on its own); the prior is
the rule of ``tests/operators/test_scoring_values.py``.

Settings are spelled out in every scenario (the global model on or off, the label
counts of the blend), so the expected values do not move with a default.
"""

from __future__ import annotations

import math
import pickle
import random
import zlib
from collections import Counter
from statistics import NormalDist

import numpy as np
import pytest

from esg_leads.operators.features import FEATURE_NAMES, FEATURE_SOURCES, SOURCES
from esg_leads.operators.scoring import GlobalLearner, TenantScorer
from esg_leads.online_models.drift import Detection
from esg_leads.schemas.records import GlobalModelUpdate
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import NOW, example, separable, vector
from tests.operators.test_scoring_values import hand_prior

TENANT_LABELS = 80
GLOBAL_LABELS = 100
PRIOR_SHARES = {"property_epc": 0.15, "certifications": 0.09, "climate_risk": 0.06,
                "engagement": 0.6, "profile": 0.1}


#: The global model is opt-in per tenant (isolation by default): acme uses and feeds it.
OPTED_IN = {"use_global_prior": True, "contribute_to_global": True}


def settings(global_model: bool, **scoring) -> Settings:
    """Small, fast-learning models; every number the oracle uses is set here."""
    return Settings.model_validate({"tenants": {"acme": OPTED_IN}, "scoring": {
        "global_model": global_model, "prior_labels": 40, "tenant_labels_for_trust": 60,
        "ensemble_size": 4, "learning_rate": 0.05, "seed": 7, "interval_level": 0.9,
        "interval_floor": 0.55, "hot": 0.5, "warm": 0.25, "nurture": 0.1, **scoring}})


def global_update(s: Settings, labels: int = GLOBAL_LABELS) -> tuple[bytes, int]:
    """A global model of ``labels`` labels, learnt with the global model switched on (a
    scorer whose own setting is off may still be sent one: it must ignore it)."""
    on = s.model_copy(update={"scoring": s.scoring.model_copy(update={"global_model": True})})
    learner = GlobalLearner(on, publish_every=labels)
    rng = random.Random(32)
    (update,) = learner.process([example(*separable(1000 + i, rng)) for i in range(labels)], NOW)
    return update


def build(global_model: bool, with_global: bool) -> TenantScorer:
    s = settings(global_model)
    scorer = TenantScorer("acme", s)
    rng = random.Random(31)
    for i in range(TENANT_LABELS):
        scorer.learn(example(*separable(i, rng)), NOW)
    if with_global:
        scorer.process([GlobalModelUpdate("acme", *global_update(s))], NOW)
    return scorer


#: name -> (global_model setting, a global model received, w_prior, w_tenant, evidence):
#: w_prior = 40 / (40 + 80 tenant labels + half the 100 global ones, if used),
#: w_tenant = 80 / (80 + 60) against a global model, evidence = 80 (+ 50 global).
SCENARIOS = {
    "tenant+global": (True, True, 40 / 170, 80 / 140, 130.0),
    "tenant, no global yet": (True, False, 40 / 120, 1.0, 80.0),
    "global received but off": (False, True, 40 / 120, 1.0, 80.0),
}


@pytest.fixture(scope="module")
def blobs() -> dict[str, bytes]:
    return {name: pickle.dumps(build(on, received))
            for name, (on, received, *_) in SCENARIOS.items()}


# ------------------------------------------------------------------- the oracle

def hand_model(model, f: dict[str, float]) -> tuple[list[float], dict[str, float]]:
    """Member probabilities and per-feature contributions (z x mean member weight)."""
    z = {}
    for n in FEATURE_NAMES:
        var = model.scaler.vars.get(n, 0.0)
        z[n] = (f[n] - model.scaler.means.get(n, 0.0)) / math.sqrt(var) if var > 0 else 0.0
    weights = [dict(m._weights) for m in model.members]
    probas = []
    for m, w in zip(model.members, weights):
        logit = sum(w.get(n, 0.0) * z[n] for n in FEATURE_NAMES) + m.intercept
        probas.append(1 / (1 + math.exp(-min(30.0, max(-30.0, logit)))))  # River clips at 30
    contrib = {n: z[n] * sum(w.get(n, 0.0) for w in weights) / len(weights) for n in FEATURE_NAMES}
    return probas, contrib


def logit(q: float) -> float:
    """Log-odds, taken at 1e-6 from 0 and 1 at most (a certain lead is not infinitely so)."""
    q = min(1 - 1e-6, max(1e-6, q))
    return math.log(q / (1 - q))


def hand_raw(scorer, v, w_prior: float, w_tenant: float) -> float:
    """The blended raw probability: mean of the blended member probabilities."""
    tenant, _ = hand_model(scorer.registry.champion, v.features)
    model = sum(tenant) / len(tenant)
    if w_tenant < 1:
        glob, _ = hand_model(scorer.global_model, v.features)
        model = w_tenant * model + (1 - w_tenant) * sum(glob) / len(glob)
    prior = hand_prior(v.intent, v.esg_alignment, v.features["profile_completeness"],
                       v.features["contactable"])
    return w_prior * prior + (1 - w_prior) * model


def hand_lead(scorer, v, w_prior: float, w_tenant: float, evidence: float) -> dict:
    f = v.features
    cal = lambda q: float(scorer.calibrator.transform_many(np.array([q]))[0])  # noqa: E731
    tenant, t_contrib = hand_model(scorer.registry.champion, f)
    if w_tenant < 1:
        glob, g_contrib = hand_model(scorer.global_model, f)
    else:
        glob, g_contrib = [0.0] * len(tenant), dict.fromkeys(FEATURE_NAMES, 0.0)
    prior = hand_prior(v.intent, v.esg_alignment, f["profile_completeness"], f["contactable"])
    members = [w_prior * prior + (1 - w_prior) * (w_tenant * t + (1 - w_tenant) * g)
               for t, g in zip(tenant, glob)]
    p = cal(sum(members) / len(members))
    logits = [logit(cal(m)) for m in members]
    mean = sum(logits) / len(logits)
    spread = sum((x - mean) ** 2 for x in logits) / len(logits)
    events, stale = math.expm1(f["eng_30d"]), 1 - f["data_freshness"]
    variance = (spread + 1 / (4 + evidence * p * (1 - p)) + 0.55**2 + 0.6 / (1 + events)
                + 0.5 * stale**2)
    half, centre = NormalDist().inv_cdf(0.95) * math.sqrt(variance), logit(p)
    contrib = {n: (1 - w_prior) * (w_tenant * t_contrib[n] + (1 - w_tenant) * g_contrib[n])
               for n in FEATURE_NAMES}
    by_source = dict.fromkeys(SOURCES, 0.0)
    for n, c in contrib.items():
        by_source[FEATURE_SOURCES[n]] += abs(c)
    total = sum(by_source.values())
    # A lead the model cannot tell from its means gives the model's share evenly.
    model_share = {s: by_source[s] / total if total else 0.2 for s in SOURCES}
    shares = {s: w_prior * PRIOR_SHARES[s] + (1 - w_prior) * model_share[s] for s in SOURCES}
    norm = sum(shares.values())

    def entry(n):
        return {"feature": n, "value": f[n], "contribution": round(contrib[n], 4)}
    positive = sorted((n for n in FEATURE_NAMES if contrib[n] > 0), key=lambda n: -contrib[n])
    negative = sorted((n for n in FEATURE_NAMES if contrib[n] < 0), key=lambda n: contrib[n])
    prob = round(p, 6)
    return {
        "probability": prob, "score": round(100 * prob),
        "interval": {"low": round(1 / (1 + math.exp(half - centre)), 6),
                     "high": round(1 / (1 + math.exp(-(centre + half))), 6), "level": 0.9},
        "tier": "hot" if p >= 0.5 else "warm" if p >= 0.25 else "nurture" if p >= 0.1 else "cold",
        "top_positive": [entry(n) for n in positive[:3]],
        "top_negative": [entry(n) for n in negative[:3]],
        "source_weights": {s: round(shares[s] / norm, 4) for s in SOURCES},
        "prior_weight": round(w_prior, 4),
        "global_weight": round((1 - w_prior) * (1 - w_tenant), 4),
    }


def probes() -> list:
    rng = random.Random(44)
    return [vector(200 + i, rng, intent=rng.uniform(5, 95), alignment=rng.uniform(20, 90),
                   depth_7d=rng.gauss(0, 1.2), eng_30d=math.log1p(rng.choice((0, 2, 9, 40))),
                   data_freshness=rng.uniform(0.2, 1.0)) for i in range(6)]


# ----------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_trained_lead_record_equals_the_hand_blend(blobs, name):
    """Probability, interval (member spread + evidence term + floor + events + staleness),
    tier, top-3 explanations, source shares and blend weights, to the published digits."""
    _, _, w_prior, w_tenant, evidence = SCENARIOS[name]
    scorer = pickle.loads(blobs[name])
    assert scorer.labels == TENANT_LABELS
    vectors = probes()
    out = scorer.process(vectors, NOW)
    assert len(out) == len(vectors)  # no alert: drift detectors are still warming up
    tiers = Counter()
    for scored, v in zip(out, vectors, strict=True):
        record, hand = scored.record, hand_lead(scorer, v, w_prior, w_tenant, evidence)
        explanation = record["explanation"]
        got = {"probability": record["probability"], "score": record["score"],
               "interval": record["interval"], "tier": record["tier"],
               "top_positive": explanation["top_positive"],
               "top_negative": explanation["top_negative"],
               "source_weights": explanation["source_weights"],
               "prior_weight": record["model"]["prior_weight"],
               "global_weight": record["model"]["global_weight"]}
        assert got == hand, v.investor_id
        # Every explanation slot is used: the lengths are the cap, not the data.
        assert len(hand["top_positive"]) == len(hand["top_negative"]) == 3
        assert record["model"]["model_version"] == "bagged-logreg:acme:g0:n80"
        assert record["model"]["tenant_labels"] == TENANT_LABELS
        # The prior still weighs more than a fifth (0.24 or 0.33): its reasons are shown.
        reason = f"intent {v.intent:.0f}/100 (engagement depth and frequency)"
        assert reason in explanation["prior_reasons"]
        tiers[record["tier"]] += 1
    # Six leads over four tiers: some tier is counted more than once.
    assert max(tiers.values()) > 1
    assert {t: n for (kind, t), n in scorer.counts.items() if kind == "leads"} == dict(tiers)


def test_a_global_model_takes_its_share_only_when_enabled(blobs):
    """The same probe and the same received global model: switched on, it takes
    (1 - 40/170) x (1 - 80/140) of the blend; switched off, none, and the score moves."""
    v = probes()[0]
    on = pickle.loads(blobs["tenant+global"])
    off = pickle.loads(blobs["global received but off"])
    (a,), _ = on.score_many([v], NOW)
    (b,), _ = off.score_many([v], NOW)
    assert a.record["model"]["global_weight"] == round((1 - 40 / 170) * (1 - 80 / 140), 4) == 0.3277
    assert b.record["model"]["global_weight"] == 0.0
    assert a.record["probability"] != b.record["probability"]


def test_source_shares_of_leads_at_and_next_to_the_models_means(blobs):
    """Standardised at the scaler's means, every contribution is 0: the model part of the
    source shares is 1/5 per source, mixed with the prior's shares by w_prior = 1/3."""
    scorer = pickle.loads(blobs["tenant, no global yet"])
    means = scorer.registry.champion.scaler.means
    v = vector(300, **{n: means[n] for n in FEATURE_NAMES})
    (scored,), _ = scorer.score_many([v], NOW)
    explanation = scored.record["explanation"]
    assert explanation["top_positive"] == explanation["top_negative"] == []
    assert explanation["source_weights"] == {
        s: round(PRIOR_SHARES[s] / 3 + 2 / 3 * 0.2, 4) for s in SOURCES}
    # A hair off the mean in one engagement feature (a contribution far below 1): the
    # model's whole share goes to engagement.
    at_means = {n: means[n] for n in FEATURE_NAMES}
    nudged = vector(301, **{**at_means, "depth_7d": means["depth_7d"] + 0.01})
    (scored,), _ = scorer.score_many([nudged], NOW)
    explanation = scored.record["explanation"]
    assert [c["feature"] for c in explanation["top_positive"]] == ["depth_7d"]
    assert 0 < explanation["top_positive"][0]["contribution"] < 0.1
    assert explanation["source_weights"] == {
        s: round(PRIOR_SHARES[s] / 3 + 2 / 3 * (s == "engagement"), 4) for s in SOURCES}


@pytest.mark.parametrize("label", [True, False])
def test_the_error_stream_gets_the_squared_error_of_the_calibrated_blend(blobs, label):
    """Drift watches (y - p)^2 with p the calibrated blend (global share included) the
    scorer gave the labelled features before learning from them."""
    scorer = pickle.loads(blobs["tenant+global"])
    seen = []
    scorer.drift.update_error = lambda error: seen.append(error) or []
    v = probes()[1]
    # The scalar calibration path, as labels use (its map may lag by up to ten labels).
    p = scorer.calibrator.transform(hand_raw(scorer, v, 40 / 170, 80 / 140))
    assert scorer.learn(example(v, label), NOW) == []
    assert seen == [pytest.approx((float(label) - p) ** 2, rel=1e-9)]
    # The next label sees one more tenant label in both weights.
    v2 = probes()[2]
    p2 = scorer.calibrator.transform(hand_raw(scorer, v2, 40 / 171, 81 / 141))
    scorer.learn(example(v2, not label), NOW)
    assert seen[1] == pytest.approx((float(not label) - p2) ** 2, rel=1e-9)


@pytest.mark.parametrize("prior_labels, shown", [(25, False), (26, True)])
def test_prior_reasons_are_shown_only_while_the_prior_weighs_more_than_a_fifth(prior_labels, shown):
    """No tenant labels, a global model of 200: w_prior = 25 / (25 + 100) = 0.2 exactly
    (no reasons), 26 / 126 = 0.206 (reasons)."""
    s = settings(True, prior_labels=prior_labels)
    scorer = TenantScorer("acme", s)
    scorer.set_global(*global_update(s, 200))
    (scored,), _ = scorer.score_many([vector(1, intent=40.0, alignment=55.0)], NOW)
    record = scored.record
    assert record["model"]["prior_weight"] == round(prior_labels / (prior_labels + 100), 4)
    assert record["model"]["global_weight"] == round(1 - prior_labels / (prior_labels + 100), 4)
    # Terms: intent 3.2 x 0.4 = 1.28, contact 0.3, completeness 0.4 x 0.5 = 0.2, ESG 0.1.
    assert record["explanation"]["prior_reasons"] == ([
        "intent 40/100 (engagement depth and frequency)", "lawful contact route",
        "profile completeness", "ESG alignment 55/100 vs catalog mix"] if shown else [])


def test_the_global_learner_publishes_every_50_labels_by_default_under_its_own_seed():
    s = Settings.model_validate({"tenants": {"acme": OPTED_IN},
                                 "scoring": {"global_model": True, "seed": 11}})
    learner = GlobalLearner(s)
    assert learner.model.seed == (11 * 1_000_003 + zlib.crc32(b"*global*")) % 2**31
    rng = random.Random(12)
    updates = learner.process([example(*separable(i, rng)) for i in range(120)], NOW)
    assert [n for _, n in updates] == [50, 100]
    assert pickle.loads(updates[0][0]).n_learned == 50


def test_feature_drift_alerts_are_counted_per_kind():
    scorer = TenantScorer("acme", settings(False))
    scorer.drift.update_features = lambda f: [
        Detection("ADWIN", "feature:stated_esg", int(f["depth_7d"]), 0.5, 200, 1.0)]
    out = scorer.process([vector(1, depth_7d=1.0), vector(2, depth_7d=2.0)], NOW)
    alerts = [o for o in out if isinstance(o, dict)]
    assert [(a["kind"], a["details"]["index"], a["event_time"]) for a in alerts] == [
        ("drift_detected", 1, vector(1).as_of), ("drift_detected", 2, vector(2).as_of)]
    assert scorer.counts[("alerts", "drift_detected")] == 2


@pytest.mark.parametrize("depth, probability", [(-60.0, 0.0), (60.0, 1.0)])
def test_a_near_certain_lead_has_its_interval_taken_1e6_from_0_or_1(depth, probability):
    """A global model that has "seen" ten million labels (the count its broadcast
    carries) leaves the prior a weight of 2e-7, and a probe far out on depth_7d drives
    every member's logit to River's clip of 30: the probability is within 1e-6 of 0 or 1,
    and the interval is built around logit(1e-6) or logit(1 - 1e-6), not an infinity."""
    s = settings(True, prior_labels=1, learning_rate=0.5)
    scorer = TenantScorer("acme", s)
    model, _ = global_update(s)
    scorer.process([GlobalModelUpdate("acme", model, 10**7)], NOW)
    v = vector(7, depth_7d=depth)
    (scored,), _ = scorer.score_many([v], NOW)
    record = scored.record
    assert record["probability"] == probability
    hand = hand_lead(scorer, v, 1 / (1 + 5 * 10**6), 0.0, 5 * 10**6)
    assert record["interval"] == hand["interval"]
    # Open only on the side away from the certainty: 4e-6 from it (logit 13.8 - 1.6 sd).
    assert record["interval"] == ({"low": 0.0, "high": 4e-06, "level": 0.9} if probability == 0
                                  else {"low": 0.999996, "high": 1.0, "level": 0.9})
