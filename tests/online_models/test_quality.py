"""roc_auc and RollingQuality against hand-computed values."""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.online_models.quality import RollingQuality, roc_auc


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


# ------------------------------------- pinned figures (issue 20, part 8: river.metrics)

def quality_stream(seed=20, n=3000):
    """Seeded (probability, label) pairs with ties and certain predictions."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = rng.betavariate(2, 3)
        if i % 4 == 0:
            p = round(p, 1)  # ties, as a calibrator's flat stretches make
        if i % 97 == 0:
            p = 0.0 if i % 2 else 1.0  # a certain prediction, clamped
        out.append((p, rng.random() < p))
    return out


#: (labels seen, AUC, log loss) over a 500-label window, as computed by the hand-written
#: version (sorted Mann-Whitney ranks, mean over a deque) before RollingQuality moved to
#: River's metrics: the replacement must give the same figures.
PINNED = [
    (1, None, 9.999778782803785e-13), (2, 1.0, 0.15871223686845712),
    (3, 1.0, 0.20632428617103038), (150, 0.791033434650456, 0.524585031761152),
    (300, 0.770764442715425, 0.5355516015850481), (450, 0.7521850079744816, 0.5587108919944972),
    (600, 0.7369786402533522, 0.5761586609488004), (750, 0.7243303571428571, 0.5879014924561891),
    (900, 0.7546176105828855, 0.5696534204845286), (1050, 0.7637814273116025, 0.5602170506619377),
    (1200, 0.7591534321217357, 0.5680845362815695), (1350, 0.7435965274906986, 0.5850830734789925),
    (1500, 0.7402035036880927, 0.588523039693472), (1650, 0.7373663275952008, 0.5940785469970664),
    (1800, 0.7596385640958363, 0.5687537609016758), (1950, 0.7631152770280218, 0.5678344012988962),
    (2100, 0.7720166666666667, 0.5595444781555934), (2250, 0.7683899262409463, 0.5628231190628051),
    (2400, 0.762970824068459, 0.5594057642944189), (2550, 0.756469615543613, 0.567857807341318),
    (2700, 0.7510897562908658, 0.5791439526285493), (2850, 0.7337060516813924, 0.5895726443093732),
    (3000, 0.7441013499071014, 0.5858791343065894),
]


def test_rolling_quality_gives_the_pinned_figures_on_a_seeded_stream():
    q = RollingQuality(500)
    seen = []
    for i, (p, y) in enumerate(quality_stream(), 1):
        q.add(p, y)
        if i % 150 == 0 or i in (1, 2, 3):
            seen.append((i, q.auc(), q.log_loss()))
    assert [i for i, _, _ in seen] == [i for i, _, _ in PINNED]
    for (i, auc, loss), (_, pinned_auc, pinned_loss) in zip(seen, PINNED):
        # AUC to the last bits; the log loss is a running mean with reverts (drift ~1e-14).
        assert (auc is None) == (pinned_auc is None), i
        if auc is not None:
            assert auc == pytest.approx(pinned_auc, abs=1e-12), i
        assert loss == pytest.approx(pinned_loss, rel=1e-12, abs=1e-15), i
    assert len(q) == 500


@settings(deadline=None)
@given(st.integers(1, 12), st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=60))
def test_rolling_auc_is_the_pairwise_definition_over_the_window(window, pairs):
    q = RollingQuality(window)
    for step, (s, y) in enumerate(pairs, 1):
        q.add(s / 6, y)
        recent = pairs[max(0, step - window):step]
        pos = [s for s, y in recent if y]
        neg = [s for s, y in recent if not y]
        if not pos or not neg:
            assert q.auc() is None
            continue
        wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
        assert q.auc() == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)


def test_a_snapshot_of_the_hand_written_version_resumes():
    # Pickled by the deque-based RollingQuality (window 8, quality_stream(5, 11)): a recovery
    # snapshot taken before the move to River must restore with the same figures and go on.
    blob = (Path(__file__).parent / "snapshots" / "rolling_quality_v1.pickle").read_bytes()
    q = pickle.loads(blob)
    assert len(q) == 8
    assert q.auc() == pytest.approx(0.6, abs=1e-12)
    assert q.log_loss() == pytest.approx(0.6683386890584964, rel=1e-12)
    fresh = RollingQuality(8)
    for p, y in quality_stream(5, 11):
        fresh.add(p, y)
    for p, y in quality_stream(6, 20):
        q.add(p, y)
        fresh.add(p, y)
        assert (q.auc(), q.log_loss()) == pytest.approx((fresh.auc(), fresh.log_loss()), abs=1e-12)


def test_a_snapshot_round_trip_keeps_the_window():
    q = RollingQuality(50)
    for p, y in quality_stream(9, 80):
        q.add(p, y)
    back = pickle.loads(pickle.dumps(q))
    assert (back.auc(), back.log_loss(), len(back)) == (q.auc(), q.log_loss(), len(q))
    for p, y in quality_stream(10, 30):
        q.add(p, y)
        back.add(p, y)
    assert (back.auc(), back.log_loss()) == (q.auc(), q.log_loss())
