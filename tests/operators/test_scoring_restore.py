"""Resuming the scoring steps from snapshots, including snapshots older than a field.

A snapshot is the pickled operator; ``restore`` adapts it to the current settings.
Snapshots taken before a field existed are made here by deleting that field from a
fresh operator's ``__dict__`` before pickling it (what an older class would have kept).
"""

from __future__ import annotations

import pickle

import pytest

from esg_leads.operators.model_lifecycle import ModelGovernor
from esg_leads.operators.scoring import GlobalLearner, TenantScorer
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import ACME, NOW, score, vector


def snapshot(scorer: TenantScorer, *without: str) -> TenantScorer:
    for name in without:
        del scorer.__dict__[name]
    return pickle.loads(pickle.dumps(scorer))


def test_a_snapshot_from_before_the_global_opt_in_used_the_global_model():
    state = snapshot(TenantScorer("acme", Settings()), "use_global")
    assert state.use_global is True  # as scorers did then, until restore reads the opt-in
    assert TenantScorer.restore(state, Settings()).use_global is False
    assert TenantScorer.restore(snapshot(TenantScorer("acme", ACME), "use_global"), ACME).use_global


def test_restore_refuses_what_is_not_its_operator_and_names_it():
    with pytest.raises(TypeError, match=r"^cannot resume the scoring step from a dict$"):
        TenantScorer.restore({}, Settings())
    with pytest.raises(TypeError, match=r"^cannot resume the global model from a TenantScorer$"):
        GlobalLearner.restore(TenantScorer("acme", Settings()), Settings())


def test_a_snapshot_keeps_its_governor():
    state = snapshot(TenantScorer("acme", Settings()))
    governor = state.governor
    assert TenantScorer.restore(state, Settings()).governor is governor


def test_a_snapshot_from_before_governance_gets_a_governor_and_scores():
    resumed = TenantScorer.restore(snapshot(TenantScorer("acme", Settings()), "governor"), Settings())
    assert isinstance(resumed.governor, ModelGovernor)
    assert [r["state"] for r in score(resumed, [vector(0)])] == ["scored"]


def test_a_snapshot_keeps_the_scores_waiting_for_their_outcome():
    scorer = TenantScorer("acme", Settings())
    scorer.process([vector(0, investor="a"), vector(1, investor="b")], NOW)
    resumed = TenantScorer.restore(snapshot(scorer), Settings())
    assert resumed.horizon.waiting() == 2
