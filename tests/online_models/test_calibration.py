"""OnlineCalibrator: identity untrained, monotone always, follows and forgets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.online_models.calibration import OnlineCalibrator, _isotonic

GRID = np.linspace(0.0, 1.0, 201)


@settings(deadline=None)
@given(st.floats(0.0, 0.975), st.sampled_from([10, 20]))
def test_untrained_is_the_identity_up_to_the_last_bin_centre(p, bins):
    p = min(p, 1 - 0.5 / bins)
    cal = OnlineCalibrator(bins=bins)
    assert cal.transform(p) == pytest.approx(p, abs=1e-12)
    assert cal.transform_many(np.array([p]))[0] == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize("p", [0.99, 1.0])
def test_untrained_is_the_identity_near_one(p):
    cal = OnlineCalibrator(bins=20)
    assert cal.transform(p) == pytest.approx(p, abs=1e-9)


labelled = st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(labelled, st.sampled_from([5, 10, 20]), st.sampled_from([1.0, 0.999, 0.95]))
def test_map_is_monotone_after_any_learning(examples, bins, decay):
    cal = OnlineCalibrator(bins=bins, decay=decay)
    for p, y in examples:
        cal.learn_one(p, y)
    many = cal.transform_many(GRID.copy())
    assert np.all(np.diff(many) >= 0)
    one = np.array([cal.transform(p) for p in GRID])
    assert np.all(np.diff(one) >= 0)
    np.testing.assert_allclose(one, many)  # transform saw at most 10 labels old: rebuilt above
    assert np.all(many >= 0)


def test_calibrated_probabilities_stay_at_most_one():
    cal = OnlineCalibrator(bins=20)
    for _ in range(1000):
        cal.learn_one(0.99, True)
    assert cal.transform_many(np.array([0.99, 1.0])).max() <= 1.0


def test_learning_moves_the_map_towards_the_observed_frequency():
    cal = OnlineCalibrator(bins=10, prior_weight=2.0, decay=1.0)
    # At raw 0.45 the outcome is positive one time in five.
    for i in range(500):
        cal.learn_one(0.45, i % 5 == 0)
    assert cal.transform_many(np.array([0.45]))[0] == pytest.approx(0.2, abs=0.01)
    # Overconfident model: says 0.85, right a third of the time.
    for i in range(600):
        cal.learn_one(0.85, i % 3 == 0)
    assert cal.transform_many(np.array([0.85]))[0] == pytest.approx(1 / 3, abs=0.02)
    assert cal.n_learned == 1100


@pytest.mark.parametrize(("label", "direction"), [(True, 1), (False, -1)])
def test_direction_of_the_move(label, direction):
    cal = OnlineCalibrator(bins=20)
    before = cal.transform(0.3)
    for _ in range(50):
        cal.learn_one(0.3, label)
    after = cal.transform_many(np.array([0.3]))[0]
    assert (after - before) * direction > 0.15


def test_decay_forgets_old_behaviour():
    forgetful = OnlineCalibrator(bins=10, decay=0.99)
    stubborn = OnlineCalibrator(bins=10, decay=1.0)
    for cal in (forgetful, stubborn):
        for _ in range(500):
            cal.learn_one(0.75, False)
        for _ in range(500):
            cal.learn_one(0.75, True)
    assert forgetful.transform_many(np.array([0.75]))[0] > 0.95
    assert stubborn.transform_many(np.array([0.75]))[0] == pytest.approx(0.5, abs=0.02)


def test_bins_never_become_undefined():
    cal = OnlineCalibrator(bins=10, prior_weight=4.0, decay=0.9)
    for _ in range(2000):
        cal.learn_one(0.05, False)  # every other bin decays towards zero mass
    assert cal.totals.min() >= 4.0 * 0.5 * 0.9 - 1e-9
    assert np.all(np.isfinite(cal.transform_many(GRID.copy())))


def test_transform_may_lag_by_at_most_ten_labels():
    cal = OnlineCalibrator(bins=10, prior_weight=1.0, decay=1.0)
    cal.transform(0.5)
    for _ in range(10):
        cal.learn_one(0.55, True)
    lagging = cal.transform(0.55)
    assert lagging == pytest.approx(0.55, abs=1e-9)  # still the old map
    cal.learn_one(0.55, True)
    assert cal.transform(0.55) > 0.9  # the 11th label forces a rebuild


@pytest.mark.parametrize(("values", "weights", "expected"), [
    ([0.1, 0.2, 0.3], [1, 1, 1], [0.1, 0.2, 0.3]),
    ([0.3, 0.1], [1, 1], [0.2, 0.2]),
    ([0.3, 0.1], [3, 1], [0.25, 0.25]),
    ([0.5, 0.2, 0.1, 0.9], [1, 1, 1, 1], [0.8 / 3, 0.8 / 3, 0.8 / 3, 0.9]),
])
def test_pool_adjacent_violators(values, weights, expected):
    out = _isotonic(np.array(values, dtype=float), np.array(weights, dtype=float))
    np.testing.assert_allclose(out, expected)


def test_exact_values_by_hand_pooling_and_interpolation():
    # 5 bins (centres .1 .3 .5 .7 .9), one pseudo-count each, no decay. One positive
    # at 0.1 makes bin 0 (1.1 / 2 =) 0.55 > bin 1's 0.3: pooled, (1.1 + 0.3) / 3 = 1.4 / 3.
    # The map is 0.9999 x isotonic + 0.0001 x centre; transform interpolates linearly
    # between centres and from (0, 0).
    cal = OnlineCalibrator(bins=5, prior_weight=1.0, decay=1.0)
    cal.learn_one(0.1, True)
    pooled = 1.4 / 3
    m0, m1 = 0.9999 * pooled + 0.00001, 0.9999 * pooled + 0.00003
    assert cal.transform_many(np.array([0.1, 0.2, 0.3, 0.05, 0.0])) == pytest.approx(
        [m0, (m0 + m1) / 2, m1, m0 / 2, 0.0], abs=1e-12)
    assert cal.transform(0.5) == pytest.approx(0.9999 * 0.5 + 0.00005, abs=1e-12)


def test_exact_values_by_hand_decay_then_two_poolings():
    # decay 0.5 first halves every count (pos = centre / 2, total 0.5, at the floor),
    # then a negative at 0.9: bin 4 = 0.45 / 1.5 = 0.3 < 0.7, pooled to
    # (0.35 + 0.45) / 2 = 0.4 < 0.5, pooled again to (0.25 + 0.8) / 2.5 = 0.42.
    cal = OnlineCalibrator(bins=5, prior_weight=1.0, decay=0.5)
    cal.learn_one(0.9, False)
    np.testing.assert_allclose(cal.totals, [0.5, 0.5, 0.5, 0.5, 1.5])
    assert cal.transform_many(np.array([0.5, 0.9])) == pytest.approx(
        [0.9999 * 0.42 + 0.00005, 0.9999 * 0.42 + 0.00009], abs=1e-12)
