"""The scorer's calibrator learns each score's 90-day outcome, point in time (issue 18, part 5)."""

from __future__ import annotations

import pickle
import random
from datetime import timedelta

import pytest

from esg_leads.operators.scoring import TenantScorer
from esg_leads.schemas.records import LabelledExample
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import NOW, example, separable, vector


def recording(scorer: TenantScorer) -> list[tuple[float, bool]]:
    """What the calibrator is taught, as (raw probability, label)."""
    seen: list[tuple[float, bool]] = []
    learn = scorer.calibrator.learn_one

    def spy(p: float, y: bool) -> None:
        seen.append((p, y))
        learn(p, y)

    scorer.calibrator.learn_one = spy  # type: ignore[method-assign]
    return seen


def test_every_score_of_an_investor_is_taught_once_its_outcome_is_known_not_before():
    scorer = TenantScorer("acme", Settings())
    seen = recording(scorer)
    a = [vector(i, investor="a") for i in range(3)]
    scorer.process([*a, vector(9, investor="b")], NOW)
    assert seen == [] and scorer.horizon.waiting() == 4
    scorer.process([example(a[-1], True)], NOW)
    assert [y for _, y in seen] == [True, True, True]
    assert scorer.counts[("calibration_pairs", "acme")] == 3
    assert scorer.horizon.waiting() == 1  # b's outcome is not known yet


def test_the_calibrator_learns_the_raw_probability_of_the_current_model():
    scorer = TenantScorer("acme", Settings())
    rng = random.Random(1)
    v = vector(0, rng, investor="a")
    scorer.process([v], NOW)
    stale = scorer._raw_probability_one(v)
    for i in range(1, 400):  # the model learns from other investors meanwhile
        w, y = separable(i, rng)
        scorer.learn(example(w, y), NOW)
    current = scorer._raw_probability_one(v)
    assert abs(current - stale) > 0.01
    seen = recording(scorer)
    scorer.learn(example(v, False), NOW)
    assert seen == [(pytest.approx(current, abs=1e-5), False)]


def test_a_negative_arrives_once_the_horizon_has_passed_on_the_event_clock():
    scorer = TenantScorer("acme", Settings())
    seen = recording(scorer)
    first = vector(0, investor="a")
    scorer.process([first], NOW)
    later = vector(1, investor="b")
    almost = later._replace(as_of=first.as_of + timedelta(days=89, hours=23))
    scorer.process([almost], NOW)
    assert seen == []
    scorer.process([later._replace(as_of=first.as_of + timedelta(days=91))], NOW)
    assert [y for _, y in seen] == [False]


def test_the_horizon_is_a_setting():
    settings = Settings.model_validate({"scoring": {"horizon": "P30D"}})
    scorer = TenantScorer("acme", settings)
    assert scorer.horizon.horizon_s == 30 * 86_400
    with pytest.raises(ValueError, match="positive"):
        Settings.model_validate({"scoring": {"horizon": "PT0S"}})


def test_the_published_probabilitys_calibration_error_is_a_gauge():
    # 120 investors scored alike, half of them convert: each published probability
    # meets its label, and the gauge is |mean published - 0.5| (one bin).
    scorer = TenantScorer("acme", Settings())
    vectors = [vector(i, investor=f"i{i}") for i in range(120)]
    (records, _) = scorer.score_many(vectors, NOW)
    scorer.process([example(v, i % 2 == 0) for i, v in enumerate(vectors)], NOW)
    published = [r.record["probability"] for r in records]
    assert len(set(published)) == 1
    assert scorer.gauges[("model_ece", "acme")] == pytest.approx(abs(published[0] - 0.5), abs=1e-6)


def test_a_label_without_a_waiting_score_still_teaches_its_own_vector():
    scorer = TenantScorer("acme", Settings())
    seen = recording(scorer)
    v = vector(0, investor="a")
    raw = scorer._raw_probability_one(v)
    scorer.process([LabelledExample("acme", "a", v, True, v.as_of + timedelta(hours=1), "o")], NOW)
    assert seen == [(pytest.approx(raw), True)]


def test_a_snapshot_from_before_the_horizon_resumes_with_one():
    scorer = TenantScorer("acme", Settings())
    del scorer.horizon, scorer.calibration_error
    resumed = TenantScorer.restore(pickle.loads(pickle.dumps(scorer)), Settings())
    resumed.process([vector(0, investor="a")], NOW)
    assert resumed.horizon.waiting() == 1


def test_calibration_pairs_add_up_over_labels():
    scorer = TenantScorer("acme", Settings())
    a = [vector(i, investor="a") for i in range(2)]
    b = [vector(i, investor="b") for i in range(2, 5)]
    scorer.process([*a, *b], NOW)
    scorer.process([example(a[-1], True)], NOW)
    assert scorer.counts[("calibration_pairs", "acme")] == 2
    scorer.process([example(b[-1], False)], NOW)
    assert scorer.counts[("calibration_pairs", "acme")] == 2 + 3


def test_the_calibration_error_gauge_waits_for_a_hundred_pairs():
    # 100 investors scored alike before any label: one published probability p, one
    # ECE bin, so the error is |p - share of positives| once the gauge is set.
    scorer = TenantScorer("acme", Settings())
    vectors = [vector(i, investor=f"i{i}") for i in range(100)]
    (records, _) = scorer.score_many(vectors, NOW)
    (p,) = {r.record["probability"] for r in records}
    labels = [i % 4 == 0 for i in range(100)]  # 25 positives
    scorer.process([example(v, y) for v, y in zip(vectors[:99], labels, strict=False)], NOW)
    assert ("model_ece", "acme") not in scorer.gauges  # 99 pairs
    scorer.process([example(vectors[99], labels[99])], NOW)
    assert scorer.gauges[("model_ece", "acme")] == pytest.approx(abs(p - 0.25), abs=1e-6)
