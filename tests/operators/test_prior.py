"""The cold-start prior: scalar and vectorised forms agree; monotone; reasons ranked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.prior import prior_many, prior_probability

scores = st.floats(0, 100, allow_nan=False)
fractions = st.floats(0, 1, allow_nan=False)
flags = st.sampled_from([0.0, 1.0])


def test_hand_computed_values():
    # logit = -3.6 + 3.2*0.5 + 1.0*(75-50)/50 + 0.4*0.5 + 0.3*1 = -1.0
    p, reasons = prior_probability({"profile_completeness": 0.5, "contactable": 1.0},
                                   intent=50.0, esg_alignment=75.0)
    assert p == pytest.approx(1 / (1 + math.exp(1.0)))
    assert len(reasons) == 4
    # Nothing known: the base rate alone, and no reasons to give.
    p0, reasons0 = prior_probability({}, intent=0.0, esg_alignment=50.0)
    assert p0 == pytest.approx(1 / (1 + math.exp(3.6)))
    assert reasons0 == []


@settings(deadline=None)
@given(st.lists(st.tuples(fractions, flags, scores, scores), min_size=1, max_size=20))
def test_scalar_and_vectorised_forms_agree(rows):
    completeness, contactable, intent, alignment = (np.array(c, dtype=float) for c in zip(*rows))
    many = prior_many(completeness, contactable, intent, alignment)
    assert many.shape == (len(rows),)
    for i, (c, k, t, a) in enumerate(rows):
        one, _ = prior_probability({"profile_completeness": c, "contactable": k}, t, a)
        assert many[i] == pytest.approx(one, rel=1e-12, abs=1e-15)


@settings(deadline=None)
@given(fractions, flags, scores, scores, scores)
def test_monotone_in_intent(c, k, intent, other, alignment):
    f = {"profile_completeness": c, "contactable": k}
    low, high = sorted((intent, other))
    assert prior_probability(f, high, alignment)[0] >= prior_probability(f, low, alignment)[0]


@settings(deadline=None)
@given(fractions, flags, scores, scores, scores)
def test_monotone_in_alignment(c, k, intent, alignment, other):
    f = {"profile_completeness": c, "contactable": k}
    low, high = sorted((alignment, other))
    assert prior_probability(f, intent, high)[0] >= prior_probability(f, intent, low)[0]


def test_strictly_increasing_where_it_matters():
    f = {"profile_completeness": 0.5, "contactable": 1.0}
    ps = [prior_probability(f, intent, 60.0)[0] for intent in (0, 25, 50, 75, 100)]
    assert ps == sorted(ps) and len(set(ps)) == 5
    assert prior_probability(f, 50.0, 20.0)[0] < prior_probability(f, 50.0, 80.0)[0]
    # A lawful contact route and a complete profile add to it.
    assert prior_probability({"contactable": 1.0}, 50.0, 50.0)[0] > prior_probability({}, 50.0, 50.0)[0]


def _strength(reason: str, f: dict, intent: float, alignment: float) -> float:
    if reason.startswith("intent"):
        return 3.2 * intent / 100
    if reason.startswith("ESG alignment"):
        return 1.0 * (alignment - 50) / 50
    if reason == "profile completeness":
        return 0.4 * f.get("profile_completeness", 0.0)
    assert reason == "lawful contact route"
    return 0.3 * f.get("contactable", 0.0)


@settings(deadline=None)
@given(fractions, flags, scores, scores)
def test_reasons_are_the_nonzero_terms_strongest_first(c, k, intent, alignment):
    f = {"profile_completeness": c, "contactable": k}
    _, reasons = prior_probability(f, intent, alignment)
    strengths = [abs(_strength(r, f, intent, alignment)) for r in reasons]
    assert strengths == sorted(strengths, reverse=True)
    assert all(s > 0 for s in strengths)
    every = ("intent", "ESG alignment", "profile completeness", "lawful contact route")
    terms = [3.2 * intent / 100, 1.0 * (alignment - 50) / 50, 0.4 * c, 0.3 * k]
    assert len(reasons) == sum(1 for t in terms if t)
    assert [r for r in every if any(x.startswith(r) for x in reasons)] == \
        [r for r, t in zip(every, terms) if t]


def test_reasons_name_the_numbers():
    _, reasons = prior_probability({}, intent=80.0, esg_alignment=20.0)
    assert reasons == ["intent 80/100 (engagement depth and frequency)",
                       "ESG alignment 20/100 vs catalog mix"]
