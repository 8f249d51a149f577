"""TenantScorer and GlobalLearner: valid records, blending, intervals, learning, snapshots.

Lead records are checked the way a consumer sees them: their JSON (the sink's
``schemas.codec.encode``) against :class:`ScoredLead`; strict Python-mode
``model_validate`` would want enum instances where records carry strings.
"""

from __future__ import annotations

import math
import pickle
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pytest

from esg_leads.online_models.quality import roc_auc
from esg_leads.operators.features import FEATURE_NAMES, SOURCES, build_vector, investor_context
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.investor_window import WindowAggregate
from esg_leads.operators.scoring import GlobalLearner, TenantScorer
from esg_leads.schemas.codec import decode_event, encode
from esg_leads.schemas.outputs import Alert, ScoredLead
from esg_leads.schemas.records import (
    CatalogMix,
    EnrichedEngagement,
    FeatureVector,
    GlobalModelUpdate,
    Ingested,
    LabelledExample,
    PropertyFacts,
)
from esg_leads.schemas.settings import Settings

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 3, 20, tzinfo=timezone.utc)
HALF_LIVES = (1.0, 7.0, 30.0)
CONTEXT = investor_context(InvestorProfileState(HALF_LIVES))
PRIOR_SHARES = {"property_epc": 0.15, "certifications": 0.09, "climate_risk": 0.06,
                "engagement": 0.6, "profile": 0.1}
BASE = {name: 0.0 for name in FEATURE_NAMES}
BASE.update(eng_30d=math.log1p(5), data_freshness=0.9, contactable=1.0, profile_completeness=0.5)
#: Features the prior reads; kept fixed so that the prior is the same for every vector.
PRIOR_INPUTS = ("contactable", "profile_completeness")
#: Settings whose tenant "acme" opted in to the global model both ways (isolation is
#: the default: see test_isolated_tenant_ignores_the_global_model).
ACME = Settings.model_validate(
    {"tenants": {"acme": {"contribute_to_global": True, "use_global_prior": True}}})


# ------------------------------------------------------------------ builders

def vector(i: int, rng: random.Random | None = None, *, investor: str | None = None,
           intent: float = 40.0, alignment: float = 55.0, **features: float) -> FeatureVector:
    """A vector with all FEATURE_NAMES: BASE plus noise (if ``rng``) plus ``features``."""
    f = dict(BASE)
    if rng is not None:
        for name in FEATURE_NAMES:
            if name not in PRIOR_INPUTS:
                f[name] += rng.gauss(0, 0.3)
    f.update(features)
    return FeatureVector(
        tenant="acme", investor_id=investor or f"inv-{i}", as_of=T0 + timedelta(minutes=i),
        feature_set_version="fs-2", features=f, values=tuple(f[n] for n in FEATURE_NAMES),
        esg_alignment=alignment, esg_components={"energy_efficiency": 60.0, "certification": 50.0},
        intent=intent, engagement_readiness=30.0, data_freshness_days=120.0, context=CONTEXT,
        lineage=({"event_id": f"e{i}", "topic": "investor.engagements", "partition": 0, "offset": i},),
    )


def separable(i: int, rng: random.Random) -> tuple[FeatureVector, bool]:
    """Positives engage deeply (depth_7d around +1), negatives do not (around -1)."""
    y = rng.random() < 0.5
    return vector(i, rng, depth_7d=(1.0 if y else -1.0) + rng.gauss(0, 0.5)), y


def example(v: FeatureVector, y: bool) -> LabelledExample:
    return LabelledExample("acme", v.investor_id, v, y, v.as_of + timedelta(hours=1), f"o-{v.investor_id}")


def teach(scorer: TenantScorer, n: int, seed: int = 3, start: int = 0) -> list[dict]:
    rng = random.Random(seed)
    alerts = []
    for i in range(start, start + n):
        v, y = separable(i, rng)
        alerts += scorer.learn(example(v, y), NOW)
    return alerts


def leads(out: list) -> list[dict]:
    """The ScoredLead records of a process()/score_many() output (alerts are plain dicts)."""
    return [getattr(o, "record", o) for o in out
            if not (isinstance(o, dict) and "detector" in o)]


def score(scorer: TenantScorer, vectors: list[FeatureVector]) -> list[dict]:
    records, _ = scorer.score_many(vectors, NOW)
    return leads(records)


def check_lead(record: dict, v: FeatureVector, settings: Settings = Settings()) -> ScoredLead:
    lead = ScoredLead.model_validate_json(encode(record))
    s = settings.scoring
    assert lead.interval.low <= lead.probability <= lead.interval.high
    assert lead.interval.level == s.interval_level
    assert lead.score == round(100 * lead.probability)
    expected_tier = ("hot" if lead.probability >= s.hot else "warm" if lead.probability >= s.warm
                     else "nurture" if lead.probability >= s.nurture else "cold")
    assert lead.tier == expected_tier
    assert lead.event_time == v.as_of and lead.investor_id == v.investor_id
    assert lead.idempotency_key == f"lead:acme:{v.investor_id}:{int(v.as_of.timestamp())}"
    assert lead.features == v.features
    weights = lead.explanation.source_weights.model_dump()
    assert set(weights) == set(SOURCES)
    assert sum(weights.values()) == pytest.approx(1.0, abs=5e-4)
    positive = [c.contribution for c in lead.explanation.top_positive]
    negative = [c.contribution for c in lead.explanation.top_negative]
    assert all(c > 0 for c in positive) and positive == sorted(positive, reverse=True)
    assert all(c < 0 for c in negative) and negative == sorted(negative)
    for c in lead.explanation.top_positive + lead.explanation.top_negative:
        assert c.value == v.features[c.feature]
    return lead


def logit_width(interval: dict) -> float:
    lo, hi = interval["low"], interval["high"]
    return math.log(hi / (1 - hi)) - math.log(lo / (1 - lo))


@pytest.fixture(scope="module")
def trained_blob() -> bytes:
    """A scorer that has learned 1500 separable labels (pickled: each test gets a copy)."""
    scorer = TenantScorer("acme", Settings())
    teach(scorer, 1500)
    return pickle.dumps(scorer)


@pytest.fixture
def trained(trained_blob) -> TenantScorer:
    return pickle.loads(trained_blob)


# ------------------------------------------------------------- record contract

def _real_vector() -> FeatureVector:
    """A vector built the way the flow builds it: profile, windows, then build_vector."""
    profile = decode_event("investor.profiles", orjson.dumps({
        "tenant": "acme", "event_id": "p1", "event_time": T0.isoformat(), "source": "crm",
        "investor_id": "inv-real", "investor_type": "pension_fund", "subscriber_type": "corporate",
        "jurisdiction": "DE", "ticket_max_eur": 2e7, "preferences": {"min_epc_band": "B"},
        "consents": [{"channel": "email", "status": "opted_in"}]}))
    state = InvestorProfileState(HALF_LIVES)
    state.apply_profile(profile, "contact-ref")
    facts = PropertyFacts("p1", "acme", T0 - timedelta(days=9), "DE", "office", 1.5e7, "A", 1, None,
                          True, True, "DGNB gold", 80.0, 12.0, 20, True,
                          T0.toordinal() - 200, True, True)
    aggregate = WindowAggregate()
    for k, action in enumerate(["property_view", "esg_report_download", "meeting_booked"]):
        payload = {"tenant": "acme", "event_id": f"x{k}", "event_time": (T0 - timedelta(minutes=30)).isoformat(),
                   "source": "web", "investor_id": "inv-real", "action": action, "channel": "web",
                   "property_id": "p1", "duration_s": 95.0}
        value = orjson.dumps(payload)
        ingested = Ingested(decode_event("investor.engagements", value), "investor.engagements", 0, k,
                            1_772_000_000_000, b"inv-real", value)
        aggregate.add(EnrichedEngagement(ingested, facts, CatalogMix(20, 0.3, 0.2, 0.5, math.log(1e7))),
                      stale_days=365)
    state.apply_window(aggregate, T0, HALF_LIVES)
    return build_vector(state, "acme", "inv-real", T0)


def test_every_lead_record_validates_cold_and_trained(trained):
    real = _real_vector()
    rng = random.Random(8)
    vectors = [real] + [vector(i, rng) for i in range(1, 6)] + [vector(9, depth_7d=4.0, meetings=5.0)]
    for scorer in (TenantScorer("acme", Settings()), trained):
        records = score(scorer, vectors)
        assert len(records) == len(vectors)
        for record, v in zip(records, vectors, strict=True):
            check_lead(record, v)
    lead = check_lead(score(trained, [real])[0], real)
    assert lead.esg_alignment.score == real.esg_alignment
    assert [r.event_id for r in lead.lineage] == ["x0", "x1", "x2"]
    assert lead.explanation.top_positive or lead.explanation.top_negative  # a trained model explains


def test_cold_scorer_explains_with_the_prior_only():
    (record,) = score(TenantScorer("acme", Settings()), [vector(1, intent=80.0, alignment=70.0)])
    assert record["explanation"]["source_weights"] == pytest.approx(PRIOR_SHARES)
    assert record["explanation"]["top_positive"] == [] and record["explanation"]["top_negative"] == []
    assert record["explanation"]["prior_reasons"][0].startswith("intent 80/100")
    assert record["model"]["prior_weight"] == 1.0 and record["model"]["global_weight"] == 0.0


def test_alerts_validate():
    # Labels here come a minute apart: "recent" for a retraining challenger is the last 200.
    settings = Settings.model_validate({"scoring": {"drift": {"warmup": 100, "feature_delta": 0.002}},
                                        "models": {"retraining": {"lookback": 200 * 60}}})
    scorer = TenantScorer("acme", settings)
    rng = random.Random(5)
    out = []
    for i in range(600):  # a watched feature shifts by ~6 sd at 300
        out += scorer.process([vector(i, rng, esg_content_lift=(0.0 if i < 300 else 2.0) + rng.gauss(0, 0.3))], NOW)
    # The label rule flips half-way: errors jump, a challenger is trained and judged.
    for i in range(1700):
        # Other investors than those scored above: a label is matched to its own investor's scores.
        v = vector(i, rng, investor=f"labelled-{i}", depth_7d=rng.gauss(0, 1))
        y = (v.features["depth_7d"] > 0) if i < 900 else (v.features["depth_7d"] < 0)
        out += scorer.process([example(v, y)], NOW)
    alerts = [o for o in out if isinstance(o, dict) and "detector" in o]
    kinds = {a["kind"] for a in alerts}
    assert {"drift_detected", "retraining_triggered"} <= kinds
    assert kinds & {"model_promoted", "model_rolled_back"}
    for alert in alerts:
        checked = Alert.model_validate_json(encode(alert))
        assert checked.tenant == "acme"
    assert len({a["idempotency_key"] for a in alerts}) == len(alerts)
    assert sum(v for (k, _), v in scorer.counts.items() if k == "alerts") == len(alerts)


# -------------------------------------------------------------------- blending

def test_prior_weight_falls_as_labels_arrive():
    scorer = TenantScorer("acme", Settings())
    weights = []
    for n in (0, 100, 300):
        teach(scorer, n - scorer.labels, start=scorer.labels)
        weights.append(scorer.blend_weights())
    assert weights == [(1.0, 1.0), (pytest.approx(0.75), 1.0), (pytest.approx(0.5), 1.0)]
    (record,) = score(scorer, [vector(1)])
    assert record["model"]["prior_weight"] == 0.5 and record["model"]["tenant_labels"] == 300


def test_tenant_weight_rises_against_the_global_model():
    global_learner = GlobalLearner(ACME, publish_every=100)
    rng = random.Random(4)
    (update,) = global_learner.process([example(*separable(i, rng)) for i in range(100)], NOW)
    scorer = TenantScorer("acme", ACME)
    scorer.process([GlobalModelUpdate("acme", update[0], 1000)], NOW)
    w_prior, w_tenant = scorer.blend_weights()
    assert w_prior == pytest.approx(300 / (300 + 500)) and w_tenant == 0.0
    teach(scorer, 500)
    w_prior2, w_tenant2 = scorer.blend_weights()
    assert w_prior2 == pytest.approx(300 / (300 + 500 + 500))
    assert w_tenant2 == pytest.approx(500 / 5500)
    (record,) = score(scorer, [vector(1)])
    assert record["model"]["global_weight"] == pytest.approx(round((1 - w_prior2) * (1 - w_tenant2), 4))


def test_global_model_ignored_when_disabled():
    settings = ACME.model_copy(update={"scoring": ACME.scoring.model_copy(update={"global_model": False})})
    learner = GlobalLearner(ACME, publish_every=1)
    (update,) = learner.process([example(vector(1), True)], NOW)
    scorer = TenantScorer("acme", settings)
    scorer.set_global(*update)
    assert scorer.blend_weights() == (1.0, 1.0)
    assert GlobalLearner(settings, publish_every=1).process([example(vector(1), True)], NOW) == []


@pytest.mark.parametrize("opt_in", [{}, {"contribute_to_global": True}])
def test_isolated_tenant_ignores_the_global_model(opt_in):
    """Isolation by default: without ``use_global_prior`` a published global model
    changes nothing, not even a tenant's own contributions come back to it."""
    settings = Settings.model_validate({"tenants": {"acme": opt_in}})
    learner = GlobalLearner(ACME, publish_every=50)
    rng = random.Random(8)
    (update,) = learner.process([example(*separable(i, rng)) for i in range(50)], NOW)
    scorer = TenantScorer("acme", settings)
    probe = vector(1, rng, depth_7d=1.0)
    before = score(scorer, [probe])
    scorer.process([GlobalModelUpdate("acme", *update)], NOW)
    assert scorer.global_model is None and scorer.blend_weights() == (1.0, 1.0)
    assert score(scorer, [probe]) == before and before[0]["model"]["global_weight"] == 0.0


def test_resume_takes_the_opt_in_from_the_current_settings():
    learner = GlobalLearner(ACME, publish_every=50)
    rng = random.Random(9)
    (update,) = learner.process([example(*separable(i, rng)) for i in range(50)], NOW)
    scorer = TenantScorer("acme", ACME)
    scorer.set_global(*update)
    assert scorer.blend_weights()[1] < 1.0
    resumed = TenantScorer.restore(pickle.loads(pickle.dumps(scorer)), Settings.model_validate(
        {"tenants": {"acme": {}}}))  # the tenant opted out since the snapshot
    assert resumed.global_model is None and resumed.blend_weights() == (1.0, 1.0)
    withdrawn = GlobalLearner.restore(pickle.loads(pickle.dumps(learner)),
                                      Settings.model_validate({"tenants": {"acme": {}}}))
    assert withdrawn.learn(example(*separable(0, rng))) is None and withdrawn.labels == 50


def test_raw_probability_one_equals_the_mean_of_the_vectorised_members(trained):
    rng = random.Random(21)
    probes = [vector(i, rng, depth_7d=rng.gauss(0, 1.5), intent=rng.uniform(0, 100),
                     alignment=rng.uniform(0, 100)) for i in range(8)]

    def agree(scorer: TenantScorer) -> None:
        X = np.array([v.values for v in probes])
        members, _, _ = scorer._members(X, np.array([v.intent for v in probes]),
                                        np.array([v.esg_alignment for v in probes]))
        for row, v in zip(members, probes, strict=True):
            assert scorer._raw_probability_one(v) == pytest.approx(row.mean(), abs=1e-9)

    agree(TenantScorer("acme", Settings()))
    agree(trained)
    learner = GlobalLearner(ACME, publish_every=200)
    updates = learner.process([example(*separable(i, rng)) for i in range(200)], NOW)
    trained = TenantScorer.restore(trained, ACME)  # acme opts in to the global model
    trained.set_global(*updates[0])
    assert 0 < trained.blend_weights()[1] < 1  # the global model takes part
    agree(trained)


# -------------------------------------------------------------------- intervals

def test_interval_is_wide_without_labels_and_narrows_with_informative_labels(trained):
    probe = vector(1, depth_7d=1.0)
    (cold,) = score(TenantScorer("acme", Settings()), [probe])
    (warm,) = score(trained, [probe])
    assert logit_width(warm["interval"]) < logit_width(cold["interval"]) - 0.3
    assert warm["interval"]["high"] - warm["interval"]["low"] < cold["interval"]["high"] - cold["interval"]["low"]


@pytest.mark.parametrize("labels", [0, 1500])
def test_interval_is_wider_for_stale_esg_data(trained, labels):
    scorer = trained if labels else TenantScorer("acme", Settings())
    if labels:  # a model that ignores freshness, so only the interval can tell them apart
        scorer.registry.champion._cache = None
        for member in scorer.registry.champion.members:
            member._weights["data_freshness"] = 0.0
    fresh, stale = score(scorer, [vector(1, data_freshness=0.95), vector(2, data_freshness=0.2)])
    assert fresh["probability"] == pytest.approx(stale["probability"], abs=1e-6)
    assert logit_width(stale["interval"]) > logit_width(fresh["interval"])
    assert stale["interval"]["low"] < fresh["interval"]["low"]
    assert stale["interval"]["high"] > fresh["interval"]["high"]


def test_interval_is_wider_for_an_investor_with_few_events():
    busy, quiet = score(TenantScorer("acme", Settings()),
                        [vector(1, eng_30d=math.log1p(50)), vector(2, eng_30d=0.0)])
    assert busy["probability"] == quiet["probability"]
    assert logit_width(quiet["interval"]) > logit_width(busy["interval"])


# --------------------------------------------------------------------- learning

def test_the_model_learns_to_rank_positives_above_negatives():
    scorer = TenantScorer("acme", Settings())
    rng = random.Random(77)
    held_out = [separable(10_000 + i, rng) for i in range(60)]
    before = score(scorer, [v for v, _ in held_out])
    assert len({r["probability"] for r in before}) == 1  # the prior cannot tell them apart
    teach(scorer, 300)
    after = score(scorer, [v for v, _ in held_out])
    auc = roc_auc([r["probability"] for r in after], [y for _, y in held_out])
    assert auc > 0.95
    top = max(after, key=lambda r: r["probability"])
    assert top["explanation"]["top_positive"][0]["feature"] == "depth_7d"


def test_labels_between_vectors_are_learned_before_the_next_vector(trained):
    v1, v2 = vector(1), vector(2)
    out = trained.process([v1, example(vector(3, depth_7d=1.0), True), v2], NOW)
    first, second = leads(out)
    assert first["model"]["tenant_labels"] == 1500 and second["model"]["tenant_labels"] == 1501
    assert len(trained.quality) == 500


def test_counts_by_tier(trained):
    out = trained.process([vector(1, depth_7d=3.0), vector(2, depth_7d=-3.0)], NOW)
    tiers = [r["tier"] for r in leads(out)]
    assert tiers[0] == "hot" and tiers[1] in ("cold", "nurture")
    assert sum(v for (k, _), v in trained.counts.items() if k == "leads") == 2


# ------------------------------------------------------------------ snapshots

def _without_processing_time(out: list) -> list:
    return [{k: v for k, v in leads([o])[0].items() if k != "processed_at"} if not (
        isinstance(o, dict) and "detector" in o) else {k: v for k, v in o.items() if k != "processed_at"}
        for o in out]


def test_scorer_pickles_mid_stream_and_continues_identically():
    scorer = TenantScorer("acme", Settings())
    rng = random.Random(13)
    batches = []
    for b in range(6):
        batch = []
        for i in range(b * 60, b * 60 + 60):
            v, y = separable(i, rng)
            batch += [v, example(v, y)] if i % 3 else [v]
        batches.append(batch)
    scorer.process(batches[0] + batches[1], NOW)
    copy = pickle.loads(pickle.dumps(scorer))
    for batch in batches[2:]:
        a = scorer.process(batch, NOW)
        b = copy.process(batch, NOW + timedelta(hours=1))
        assert _without_processing_time(a) == _without_processing_time(b)
    assert scorer.labels == copy.labels > 0
    assert scorer.counts == copy.counts


# ----------------------------------------------------------------- global model

def test_global_learner_publishes_every_n_labels_from_contributors_only():
    settings = Settings.model_validate({"tenants": {"acme": {"contribute_to_global": True},
                                                    "solo-fund": {"contribute_to_global": False}}})
    learner = GlobalLearner(settings, publish_every=10)
    rng = random.Random(6)
    items = []
    for i in range(40):
        v, y = separable(i, rng)
        tenant = "solo-fund" if i % 2 else "acme"
        items.append(LabelledExample(tenant, v.investor_id, v, y, v.as_of, f"o{i}"))
    updates = learner.process(items, NOW)
    assert learner.labels == 20  # the solo fund's 20 labels were not used
    assert [labels for _, labels in updates] == [10, 20]
    published = pickle.loads(updates[-1][0])
    assert published.n_learned == 20
    probe = vector(99, depth_7d=1.0).features
    assert published.predict_proba_one(probe) == learner.model.predict_proba_one(probe)
    assert learner.learn(items[1]) is None  # a non-contributor never triggers a publication


def test_an_erasure_tombstones_the_shadow_scores_from_the_scorer_after_them() -> None:
    """Stop 30's review: ``leads.shadow``'s tombstone came from the lifecycle while the
    shadow scores come from the scorer; on two workers the sink could receive the
    tombstone first, and compaction keep an erased investor's shadow score. The scorer
    that makes them now deletes them, at the erasure's position: after every score it
    made before it, in one step's order."""
    from esg_leads.schemas.records import Emitted, InvestorNotice

    scorer = TenantScorer("acme", Settings())
    erasure = InvestorNotice("acme", "inv-1", "erasure", T0, ("er-1", "investor.erasure", 0, 0))
    out = scorer.process([vector(1, investor="inv-1"), erasure, vector(2, investor="inv-2")], NOW)
    tombstones = [(i, e) for i, e in enumerate(out) if type(e) is Emitted and e.kind == "tombstone"]
    assert [e for _, e in tombstones] == [Emitted("tombstone", "acme/inv-1", None, "leads.shadow")]
    scored_before = [i for i, e in enumerate(out) if type(e) is not Emitted
                     and getattr(e, "record", {}).get("investor_id") == "inv-1"]
    assert scored_before and max(scored_before) < tombstones[0][0]
