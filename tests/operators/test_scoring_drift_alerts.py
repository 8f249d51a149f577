"""The PSI window-drift alert a scorer emits, pinned field by field against a hand-made stream.

The stream is built so that the detector's evidence can be worked out on paper: one
value a minute for six hours, two watched features alternating 0 / 1 and intent
alternating 0 / 100 (so the published score alternates between two prior values
``p0`` / ``p1``), then after five hours every value at its high end. With a 1-hour
recent window, a 5-hour reference and a 1-hour cadence, the first tick whose
reference window is full (6 h after the first value) compares 300 reference values
(half low, half high) with 60 recent ones (all high): see
``online_models/window_drift.py`` for the PSI, its bias and the bins.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from esg_leads.operators.features import FEATURE_NAMES, investor_context
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.scoring import TenantScorer
from esg_leads.schemas.outputs import SCHEMA_VERSION
from esg_leads.schemas.records import FeatureVector
from esg_leads.schemas.settings import Settings

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)  # on the hour: ticks fall on hours
NOW = datetime(2026, 3, 20, tzinfo=timezone.utc)
CONTEXT = investor_context(InvestorProfileState((1.0, 7.0, 30.0)))
WATCHED = ("esg_content_lift", "certified_lift")


def settings(**drift) -> Settings:
    return Settings.model_validate({"scoring": {"drift": {
        "window_features": list(WATCHED), "window_score": True, "window_recent_hours": 1.0,
        "window_reference_hours": 5.0, "window_cadence_hours": 1.0, "window_min_subjects": 3,
        **drift}}})


def vector(i: int) -> FeatureVector:
    high = i >= 300 or i % 2 == 1  # alternating for five hours, then high only
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    f.update(profile_completeness=1.0, contactable=1.0, eng_30d=math.log1p(3), data_freshness=1.0,
             esg_content_lift=float(high), certified_lift=float(high))
    return FeatureVector(
        tenant="acme", investor_id=f"inv-{i}", as_of=T0 + timedelta(minutes=i),
        feature_set_version="fs-2", features=f, values=tuple(f[n] for n in FEATURE_NAMES),
        esg_alignment=50.0, esg_components={}, intent=100.0 if high else 0.0,
        engagement_readiness=10.0, data_freshness_days=12.0, context=CONTEXT, lineage=())


def prior(intent: float) -> float:
    # operators/prior.py: logit = -3.6 + 3.2 intent/100 + (alignment - 50)/50 + 0.4 c + 0.3 k
    return 1 / (1 + math.exp(-(-3.6 + 3.2 * intent / 100 + 0.4 + 0.3)))


def hand_psi(a: list[float], b: list[float]) -> float:
    return sum((bi - ai) * math.log(bi / ai) for ai, bi in zip(a, b, strict=True))


def evidence(low: float, high: float) -> dict:
    """The flattened evidence of one subject whose reference is 150 x low, 150 x high
    and whose recent window is 60 x high."""
    # Deciles of the reference: low up to the 4th, the midpoint at the 5th, high above:
    # edges (low, mid, high), four bins; a value equal to an edge falls in the bin
    # above it, so low -> bin 1, high -> bin 3; empty bins count half an observation.
    ref = [0.5 / 300, 150 / 300, 0.5 / 300, 150 / 300]
    rec = [0.5 / 60, 0.5 / 60, 0.5 / 60, 60 / 60]
    n = 1 / (1 / 300 + 1 / 60)  # 50
    return {
        "psi": round(hand_psi(ref, rec), 4),
        "psi_noise": round(3 / n, 4),  # (k - 1) / n
        "edges": " ".join(str(round(x, 4)) for x in (low, (low + high) / 2, high)),
        "reference_shares": "0.0017 0.5 0.0017 0.5",
        "recent_shares": "0.0083 0.0083 0.0083 1.0",
        "reference_n": 300,
        "recent_n": 60,
        "reference_mean": round((150 * low + 150 * high) / 300, 4),
        "recent_mean": round(high, 4),
    }


def test_a_shift_of_features_and_score_raises_one_psi_alert_with_flat_details():
    scorer = TenantScorer("acme", settings())
    records, alerts = scorer.score_many([vector(i) for i in range(361)], NOW)
    p0, p1 = round(prior(0.0), 6), round(prior(100.0), 6)
    assert records[0].record["probability"] == p0 and records[1].record["probability"] == p1
    # Equal PSIs (the same counts in every subject): ranked by name.
    subjects = ("feature:certified_lift", "feature:esg_content_lift", "score")
    details = {"tenant_labels": 0, "model_generation": 0}
    for subject in subjects:
        low, high = (p0, p1) if subject == "score" else (0.0, 1.0)
        details.update({f"{subject}.{k}": v for k, v in evidence(low, high).items()})
    assert alerts == [{
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": "alert:acme:drift_detected:psi:1",
        "tenant": "acme",
        "kind": "drift_detected",
        "detector": "PSI",
        "subject": ",".join(subjects),
        "event_time": T0 + timedelta(hours=6),  # the first tick with a full reference
        "processed_at": NOW,
        "details": details,
    }]
    assert scorer.window_drift.alerts == 1


def test_the_alert_counts_in_the_step_counters_and_names_the_model_generation():
    scorer = TenantScorer("acme", settings())
    scorer.registry.generation = 4  # a champion promoted four times
    out = scorer.process([vector(i) for i in range(361)], NOW)
    alerts = [o for o in out if isinstance(o, dict) and o.get("detector") == "PSI"]
    assert [a["details"]["model_generation"] for a in alerts] == [4]
    assert scorer.counts[("alerts", "drift_detected")] == 1


def test_the_score_is_a_watched_subject_only_when_window_score_is_set():
    # Without the score, two shifted features fall short of three subjects...
    scorer = TenantScorer("acme", settings(window_score=False))
    assert scorer.score_many([vector(i) for i in range(361)], NOW)[1] == []
    # ... and are enough when two suffice.
    scorer = TenantScorer("acme", settings(window_score=False, window_min_subjects=2))
    (alert,) = scorer.score_many([vector(i) for i in range(361)], NOW)[1]
    assert alert["subject"] == "feature:certified_lift,feature:esg_content_lift"


def test_only_the_configured_features_are_watched():
    # One watched feature plus the score: two subjects, below the three required,
    # though the unwatched certified_lift shifted as well.
    scorer = TenantScorer("acme", settings(window_features=["esg_content_lift"]))
    assert scorer.score_many([vector(i) for i in range(361)], NOW)[1] == []


def test_with_drift_disabled_there_is_no_window_detector_and_no_alert():
    scorer = TenantScorer("acme", settings(enabled=False))
    assert scorer.window_drift is None
    records, alerts = scorer.score_many([vector(i) for i in range(361)], NOW)
    assert len(records) == 361 and alerts == []
