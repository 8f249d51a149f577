"""Drift retraining through the governor: a challenger warm-started from the champion,
fitted at the detection on recent labels, judged on held-out ones and at planned looks;
promoted (alert + audit row with the paired test's figures) only when it is better."""

from __future__ import annotations

import math
import pickle
import random
from datetime import timedelta

import orjson
import pytest

from esg_leads.operators.model_lifecycle import MODEL_SUBJECT
from esg_leads.operators.scoring import TenantScorer
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.records import Emitted, InvestorNotice
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import NOW, example, separable

#: Recent = the last 100 labels of a stream with one label a minute (up to and including
#: the one at the detection).
RETRAINING = {"lookback": 100 * 60 - 30, "look_labels": 40, "looks": 3}


def settings(**retraining) -> Settings:
    """The scorer's own detectors off: here detections come from :func:`detect` alone."""
    return Settings.model_validate({"tenants": {"acme": {}, "beta": {}},
                                    "scoring": {"drift": {"enabled": False}},
                                    "models": {"retraining": {**RETRAINING, **retraining}}})


def stream(scorer: TenantScorer, start: int, n: int, seed: int, flipped: bool) -> list:
    """``n`` labels, one a minute from label ``start``: the separable rule, or its
    opposite once the concept has flipped."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        v, y = separable(i, rng)
        out += scorer.process([example(v, y != flipped)], NOW)
    return out


def lifecycle(out: list) -> tuple[list[dict], list[dict]]:
    alerts = [o for o in out if isinstance(o, dict) and o.get("detector") == "model_lifecycle"]
    rows = [o.record for o in out if isinstance(o, Emitted) and o.kind == "audit"]
    return alerts, rows


def detect(scorer: TenantScorer, label_index: int) -> list:
    """A PSI detection at the outcome time of label ``label_index``; the challenger starts
    at the scorer's next step (here: scoring one vector)."""
    when = example(*separable(label_index, random.Random(0))).outcome_time
    scorer.governor.drift_detected("PSI", "score,feature:depth_7d", when)
    return scorer.process([separable(10_000, random.Random(1))[0]], NOW)


def trained(flip_after: int | None) -> TenantScorer:
    scorer = TenantScorer("acme", settings())
    stream(scorer, 0, 600, seed=3, flipped=False)
    if flip_after is not None:
        stream(scorer, 600, flip_after, seed=4, flipped=True)
    return scorer


def test_after_a_concept_change_the_fitted_challenger_is_promoted_with_its_evidence():
    scorer = trained(flip_after=100)
    champion = scorer.registry.champion
    out = detect(scorer, 699)
    alerts, rows = lifecycle(out)
    assert [a["kind"] for a in alerts] == ["retraining_triggered", "model_promoted"]
    started, promoted = alerts
    assert started["subject"] == "score,feature:depth_7d"
    assert started["details"]["trigger"] == "drift:PSI"
    # Fitted on the recent labels of investors not held out; judged on the others.
    fitted, held = started["details"]["fitted_labels"], started["details"]["held_out_labels"]
    assert fitted + held == 100 and 30 < held < 70
    d = promoted["details"]
    assert d["trigger"] == "drift:PSI" and d["previous"] == "online-g0"
    assert promoted["subject"] == "online-g1" and d["model_generation"] == 1
    assert d["shared_labels"] == held and d["look"] == 1 and d["looks"] == 3
    assert d["confidence"] == pytest.approx(1 - 0.05 / 3)
    assert d["lower_bound"] > 0 and d["mean_loss_difference"] > d["lower_bound"]
    # Each alert is also an audit row naming its trigger and the test's figures.
    assert [r["decision"] for r in rows] == ["retraining_triggered", "model_promoted"]
    assert {r["investor_id"] for r in rows} == {MODEL_SUBJECT}
    assert orjson.loads(rows[1]["output"])["lower_bound"] == d["lower_bound"]
    for alert in alerts:
        validate_record("ops.alerts", alert)
    # The new champion serves; the old one is watched in shadow for a rollback.
    assert scorer.registry.champion is not champion and scorer.registry.generation == 1
    assert scorer.governor.predecessor is not None and scorer.governor.challenger is None
    # ... and it has learned the new concept: the flipped labels that follow cost it less.
    # (Log loss under the flipped concept: a count of probabilities past 0.5 depended on
    # how many features the feature set has, not on what the model learned.)
    rng = random.Random(9)
    test = [separable(i, rng) for i in range(700, 800)]

    def flipped_log_loss(model) -> float:
        return sum(-math.log(model.predict_proba_one(v.features)[not y])
                   for v, y in test) / len(test)

    assert flipped_log_loss(scorer.registry.champion) < flipped_log_loss(champion) - 0.05


def test_without_a_concept_change_the_challenger_is_retired_with_its_evidence():
    scorer = trained(flip_after=None)
    champion = scorer.registry.champion
    out = detect(scorer, 599)
    out += stream(scorer, 600, 200, seed=5, flipped=False)
    alerts, rows = lifecycle(out)
    assert [a["kind"] for a in alerts] == ["retraining_triggered", "challenger_retired"]
    retired = alerts[1]["details"]
    assert retired["wins"] == "false" and retired["look"] == retired["looks"] == 3
    assert retired["shared_labels"] >= 120 and retired["lower_bound"] <= 0
    assert [r["decision"] for r in rows] == ["retraining_triggered", "challenger_retired"]
    assert scorer.registry.champion is champion and scorer.registry.generation == 0
    assert scorer.governor.challenger is None
    assert scorer.counts[("alerts", "model_promoted")] == 0


def test_a_challenger_is_judged_only_at_its_planned_looks():
    """Look 1 at the detection (the held-out labels are enough), look 2 after 40 more
    shared labels; between looks nothing is decided, however the running test stands."""
    scorer = trained(flip_after=None)
    detect(scorer, 599)
    challenger = scorer.governor.challenger
    seed = len(scorer.governor.challenger_test)
    assert seed >= 40 and challenger.looks_done == 1 and challenger.next_look == seed + 40
    alerts = []
    for n in range(1, 41):
        out = stream(scorer, 600 + n, 1, seed=n, flipped=False)
        alerts += lifecycle(out)[0]
        assert challenger.looks_done == (1 if n < 40 else 2)
    assert scorer.governor.challenger is challenger and not alerts  # no win, not the last look


def test_a_pin_stops_drift_retraining_until_unpinned(tmp_path):
    from tests.operators.test_model_lifecycle import KEY, command
    s = Settings.model_validate({"tenants": {"acme": {"control_signing_key": KEY}},
                                 "registry": {"directory": str(tmp_path)},
                                 "scoring": {"drift": {"enabled": False}},
                                 "models": {"retraining": RETRAINING}})
    scorer = TenantScorer("acme", s)
    stream(scorer, 0, 600, seed=3, flipped=False)  # a champion the challenger cannot beat at once
    detect(scorer, 599)
    assert scorer.governor.challenger is not None
    scorer.process([command("unpin", None, "c-0")], NOW)  # unpinning nothing changes nothing
    assert scorer.governor.challenger is not None
    scorer.governor.pinned = True  # as a pin command sets it (the command needs a registry version)
    scorer.governor.challenger = None
    assert lifecycle(detect(scorer, 599))[0] == [] and scorer.governor.challenger is None
    scorer.process([command("unpin", None, "c-1")], NOW)
    assert [a["kind"] for a in lifecycle(detect(scorer, 599))[0]] == ["retraining_triggered"]


def test_an_erased_investors_labels_are_neither_fitted_nor_judged_nor_kept():
    scorer = trained(flip_after=100)
    rng = random.Random(4)
    recent = [separable(i, rng)[0].investor_id for i in range(600, 700)]
    blob = pickle.dumps(scorer)
    for investor in recent[:50]:
        scorer.process([InvestorNotice("acme", investor, "erasure", NOW, ("investor.erasure", "", 0, 0))], NOW)
    assert len(scorer.governor.recent.since(0.0)) == 650
    started = lifecycle(detect(scorer, 699))[0][0]["details"]
    assert started["fitted_labels"] + started["held_out_labels"] == 50
    # A snapshot holds the kept examples under digests: no investor id, before or after.
    assert b"inv-650" not in blob and b"inv-650" not in pickle.dumps(scorer)


def test_a_tenants_labels_never_reach_another_tenants_challenger():
    s = settings()
    acme, beta = TenantScorer("acme", s), TenantScorer("beta", s)
    stream(acme, 0, 200, seed=3, flipped=False)
    assert len(acme.governor.recent) == 200 and len(beta.governor.recent) == 0
    beta.governor.drift_detected("PSI", "score", NOW - timedelta(days=30))
    beta.process([separable(1, random.Random(1))[0]._replace(tenant="beta")], NOW)
    assert beta.governor.challenger is not None and beta.governor.challenger_test.total == 0


def test_the_retraining_is_the_same_after_a_snapshot_mid_test():
    a = trained(flip_after=None)
    detect(a, 599)
    stream(a, 600, 30, seed=5, flipped=False)
    b = pickle.loads(pickle.dumps(a))
    out_a = stream(a, 630, 120, seed=6, flipped=False)
    out_b = stream(b, 630, 120, seed=6, flipped=False)
    assert lifecycle(out_a)[0] == lifecycle(out_b)[0] != []
