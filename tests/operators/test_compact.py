"""Compact, shared containers for per-investor state (issue 16): exactly the values
and order of the dicts they replace, bounded sharing."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators import compact
from esg_leads.operators.compact import Weights


@given(st.lists(st.dictionaries(st.sampled_from(["DE", "FR", "GB", "NL"]), st.integers(1, 4)),
                max_size=8), st.lists(st.floats(0.01, 1.0), max_size=8))
def test_weights_are_the_dict_they_replaced(windows, factors):
    """Issue 16: the decayed country and asset tables as Weights (shared names, an array
    of doubles) hold the floats the dicts held, in the same order, after any sequence
    of windows and decays, and after a snapshot (which an earlier version's dict
    restores to)."""
    weights, table = Weights(), {}
    for i, counts in enumerate(windows):
        weights = weights.plus(counts)
        for k, n in counts.items():
            table[k] = table.get(k, 0.0) + n
        if i < len(factors):
            weights, table = weights.scaled(factors[i]), {k: v * factors[i] for k, v in table.items()}
        assert repr(list(weights.items())) == repr(list(table.items()))  # -0.0 and order too
        assert list(weights.values()) == list(table.values()) and len(weights) == len(table)
        assert all(weights.get(k) == v for k, v in table.items()) and weights.get("IT", 0.0) == 0.0
    restored = pickle.loads(pickle.dumps(weights))
    assert restored == weights == table and restored.names is weights.names  # shared names
    assert Weights.of(table) == weights and bool(weights) == bool(table)


def test_shared_dicts_are_bounded_and_exact(monkeypatch):
    monkeypatch.setattr(compact, "_SHARED", {})
    monkeypatch.setattr(compact, "_SHARED_MAX", 2)
    shared = compact.shared
    one, negative = {"x": 0.0}, {"x": -0.0}
    assert shared(one) is one and shared(negative) is negative  # -0.0 is not 0.0
    assert shared({"y": 1.0}) == {"y": 1.0} and len(compact._SHARED) == 2
    assert shared({"x": 0.0}) is one
    assert shared({"b": "1", "a": "2"}) is not shared({"a": "2", "b": "1"})  # order kept
