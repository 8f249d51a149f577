"""roc_auc and RollingQuality against hand-computed values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.quality import RollingQuality, roc_auc


@pytest.mark.parametrize(("scores", "labels", "expected"), [
    ([0.9, 0.8, 0.2, 0.1], [True, True, False, False], 1.0),
    ([0.1, 0.2, 0.8, 0.9], [True, True, False, False], 0.0),
    # Pairs (pos, neg): (0.8, 0.5) win, (0.8, 0.9) loss, (0.3, 0.5) loss, (0.3, 0.9) loss.
    ([0.8, 0.3, 0.5, 0.9], [True, True, False, False], 0.25),
    # 2 positives x 3 negatives; wins: 0.7 beats 0.2, 0.6 and 0.4 (3); 0.5 beats 0.2, 0.4 (2).
    ([0.7, 0.5, 0.2, 0.6, 0.4], [True, True, False, False, False], 5 / 6),
])
def test_hand_computed_auc(scores, labels, expected):
    assert roc_auc(scores, labels) == pytest.approx(expected)


def test_ties_count_half():
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    # pos 0.6 vs negs 0.6 (tie, 1/2) and 0.2 (win, 1); pos 0.2 vs 0.6 (loss), 0.2 (tie, 1/2).
    assert roc_auc([0.6, 0.2, 0.6, 0.2], [True, True, False, False]) == pytest.approx(2 / 4)
    # Three-way tie across classes, plus a clear win.
    assert roc_auc([0.4, 0.4, 0.4, 0.9], [True, False, False, True]) == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)


@pytest.mark.parametrize("labels", [[], [True], [True, True], [False, False, False]])
def test_none_without_both_classes(labels):
    assert roc_auc([0.5] * len(labels), labels) is None


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=30))
def test_auc_equals_the_pairwise_definition(pairs):
    scores = [s / 5 for s, _ in pairs]
    labels = [y for _, y in pairs]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        assert roc_auc(scores, labels) is None
        return
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert roc_auc(scores, labels) == pytest.approx(wins / (len(pos) * len(neg)))


def test_rolling_quality_log_loss_and_auc():
    q = RollingQuality(window=10)
    assert q.log_loss() is None and q.auc() is None and len(q) == 0
    for p, y in [(0.9, True), (0.2, False), (0.6, False)]:
        q.add(p, y)
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3
    assert q.log_loss() == pytest.approx(expected)
    assert q.auc() == 1.0
    assert len(q) == 3


def test_rolling_window_forgets_the_oldest():
    q = RollingQuality(window=2)
    q.add(0.1, True)  # a bad prediction, soon forgotten
    q.add(0.8, True)
    q.add(0.3, False)
    assert len(q) == 2
    assert q.log_loss() == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert q.auc() == 1.0


def test_log_loss_is_finite_for_certain_mistakes():
    q = RollingQuality()
    q.add(0.0, True)
    q.add(1.0, False)
    assert q.log_loss() == pytest.approx(-math.log(1e-12))
