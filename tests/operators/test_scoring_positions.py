"""Scoring several input positions in one pass decides exactly as position by position.

``TenantScorer.process_positions`` (what the ordered step calls with every position
of a batch) scores runs of vector-only positions in one vectorised pass. These tests
hold it to ``process`` called once per position, on both outputs and the state left
behind, across what changes between positions: the calibrator learning when a
position lets older scores' horizons pass, labels between positions, stale feeds
(degradation), and a drift request that starts a challenger part-way through a run.
"""

from __future__ import annotations

import pickle
import random
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from esg_leads.operators.scoring import TenantScorer
from esg_leads.schemas.records import FeedStatus, SourceFeed
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import NOW, T0, example, separable, teach, vector

DAY = 86_400.0
#: A one-day horizon, so that a run of positions spanning days makes the calibrator
#: learn part-way through it (the scores of a day ago come back as negatives).
SHORT = Settings.model_validate({"scoring": {"horizon": "P1D", "calibration_memory": 100}})
STALE = FeedStatus("acme", T0.timestamp(), (SourceFeed("epc-register", DAY, T0.timestamp() - 1.5 * DAY, 1.0),))


@pytest.fixture(scope="module")
def trained_blob() -> bytes:
    scorer = TenantScorer("acme", SHORT)
    teach(scorer, 400)
    return pickle.dumps(scorer)


def positions(seed: int, sizes: list[int], labels: set[int], stale: set[int]) -> list[list]:
    """Input positions ~3 h apart: vectors (some with stale feeds), some with a label."""
    rng = random.Random(seed)
    out, i = [], 10_000
    for k, size in enumerate(sizes):
        group = []
        for _ in range(size):
            v, _ = separable(i, rng)
            v = v._replace(as_of=T0 + timedelta(hours=3 * k), feeds=STALE if k in stale else None)
            group.append(v)
            i += 1
        if k in labels:
            w, y = separable(i, rng)
            group.append(example(w._replace(as_of=T0 + timedelta(hours=3 * k)), y))
            i += 1
        out.append(group)
    return out


def outputs(results: list[list]) -> list[list]:
    return [[getattr(o, "record", o) for o in group] for group in results]


def state(scorer: TenantScorer) -> tuple:
    """What later scoring reads, compared by value."""
    cal = scorer.calibrator
    return (pickle.dumps(cal.__dict__), sorted(scorer.horizon.pending.items()),
            scorer.horizon.clock, scorer.counts, scorer.labels,
            scorer.governor.challenger is not None, scorer.governor.retrains)


@hsettings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=16), seed=st.integers(0, 99),
       labels=st.sets(st.integers(0, 15), max_size=3), stale=st.sets(st.integers(0, 15), max_size=3))
def test_positions_scored_together_decide_as_one_by_one(trained_blob, sizes, seed, labels, stale):
    groups = positions(seed, sizes, labels, stale)
    alone, together = pickle.loads(trained_blob), pickle.loads(trained_blob)
    expected = outputs([alone.process(g, NOW) for g in groups])
    assert outputs(together.process_positions(groups, NOW)) == expected
    assert state(together) == state(alone)


def test_the_calibrator_learns_part_way_through_a_run(trained_blob):
    """The case the property above must cover: a run whose later positions are
    calibrated by a calibrator that learned at an earlier one (else that branch of
    process_positions is never taken)."""
    scorer = pickle.loads(trained_blob)
    learned = []
    original = scorer.learn_calibration
    scorer.learn_calibration = lambda pairs: learned.append(original(pairs)) or learned[-1]
    scorer.process_positions(positions(1, [2] * 12, set(), set()), NOW)
    assert any(learned[:-1]), learned


def test_a_challenger_started_by_a_drift_request_scores_the_rest_of_the_run(trained_blob):
    alone, together = pickle.loads(trained_blob), pickle.loads(trained_blob)
    for scorer in (alone, together):  # a detector fired before: the next position starts it
        scorer.governor.drift_detected("PSI", "score", NOW)  # (no recent label: no look yet)
    groups = positions(5, [2, 3, 1, 2, 2], set(), set())
    expected = outputs([alone.process(g, NOW) for g in groups])
    assert alone.governor.challenger is not None
    assert outputs(together.process_positions(groups, NOW)) == expected
    assert together.governor.challenger is not None
    assert together.counts["shadow_scores", "acme"] == alone.counts["shadow_scores", "acme"] == 8


def test_a_rows_blend_does_not_depend_on_the_rows_beside_it(trained_blob):
    """Bit for bit, the arithmetic process_positions relies on: members, contributions
    and data-source shares of a row alone equal its row in any batch (the records round
    these, so the property above could miss a last-bit difference that one day rounds
    the other way)."""
    scorer = pickle.loads(trained_blob)
    rng = random.Random(2)
    vectors = [separable(i, rng)[0] for i in range(200)]
    X = np.array([v.values for v in vectors], dtype=float)
    intent = np.array([v.intent for v in vectors])
    alignment = np.array([v.esg_alignment for v in vectors])
    together = scorer._members(X, intent, alignment)  # noqa: SLF001
    for size in (1, 3, 16):
        apart = [scorer._members(X[i:i + size], intent[i:i + size], alignment[i:i + size])  # noqa: SLF001
                 for i in range(0, len(X), size)]
        for k, whole in enumerate(together):
            assert np.array_equal(whole, np.concatenate([part[k] for part in apart])), (size, k)


def test_a_challenger_promoted_at_once_scores_the_rest_of_the_run():
    """A drift retraining whose held-out labels already decide its test replaces the
    champion (and calibrator) within the position that started it: the run's later
    positions must be scored by the new champion, as position by position."""
    from tests.operators.test_model_lifecycle_retraining import example as outcome, trained
    scorer = trained(flip_after=100)
    when = outcome(*separable(699, random.Random(0))).outcome_time
    scorer.governor.drift_detected("PSI", "score,feature:depth_7d", when)
    blob = pickle.dumps(scorer)
    rng = random.Random(7)
    groups = [[separable(20_000 + 2 * k + j, rng)[0] for j in range(2)] for k in range(4)]
    alone, together = pickle.loads(blob), pickle.loads(blob)
    expected = outputs([alone.process(g, NOW) for g in groups])
    assert alone.registry.generation == 1  # promoted while the first position was scored
    assert outputs(together.process_positions(groups, NOW)) == expected
