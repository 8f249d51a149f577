"""Models to explicit numbers and back: exact, including how they go on learning."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.online_models.model_codec import bagged_model, bagged_state, calibrator, calibrator_state
from esg_leads.schemas.model_artifact import BaggedLogisticState, CalibratorState


def _rows(seed: int, n: int) -> list[tuple[dict, bool]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = {"a": rng.random(), "b": rng.gauss(0, 3)}
        if rng.random() < 0.3:
            x["c"] = rng.random()  # a feature seen only sometimes: order of first sight matters
        rows.append((x, rng.random() < 0.2 + 0.5 * x["a"]))
    return rows


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), before=st.integers(0, 150), after=st.integers(1, 80))
def test_a_restored_model_predicts_and_learns_exactly_as_the_original(seed, before, after):
    rows = _rows(seed, before + after)
    model = BaggedLogisticRegression(n_models=4, lr=0.05, l2=1e-3, seed=seed)
    for x, y in rows[:before]:
        model.learn_one(x, y)
    # Through JSON, as the registry stores it.
    state = BaggedLogisticState.model_validate_json(bagged_state(model).model_dump_json())
    copy = bagged_model(state)
    probes = [x for x, _ in _rows(seed + 1, 20)]
    assert [copy.predict_proba_one(x) for x in probes] == [model.predict_proba_one(x) for x in probes]
    for x, y in rows[before:]:  # the same bagging draws: the same future
        model.learn_one(x, y)
        copy.learn_one(x, y)
    assert [copy.member_probas_one(x) for x in probes] == [model.member_probas_one(x) for x in probes]
    assert copy.n_learned == model.n_learned


@settings(max_examples=25, deadline=None)
@given(pairs=st.lists(st.tuples(st.floats(0, 1), st.booleans()), max_size=60),
       more=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=20))
def test_a_restored_calibrator_maps_and_learns_exactly_as_the_original(pairs, more):
    cal = OnlineCalibrator(bins=10, prior_weight=2.0, decay=0.99)
    for p, y in pairs:
        cal.learn_one(p, y)
    copy = calibrator(CalibratorState.model_validate_json(calibrator_state(cal).model_dump_json()))
    grid = [i / 37 for i in range(38)]
    # transform() may use a map up to ten labels stale: the stale map must travel too.
    assert [copy.transform(p) for p in grid] == [cal.transform(p) for p in grid]
    for p, y in more:
        cal.learn_one(p, y)
        copy.learn_one(p, y)
    assert [copy.transform(p) for p in grid] == [cal.transform(p) for p in grid]
