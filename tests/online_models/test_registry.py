"""ModelRegistry: the serving model and its generation (changes go through the governor)."""

from __future__ import annotations

import pickle
import random

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.online_models.registry import ModelRegistry


class Factory:
    """Picklable model factory that records the generations it built."""

    def __init__(self) -> None:
        self.built: list[int] = []

    def __call__(self, generation: int) -> BaggedLogisticRegression:
        self.built.append(generation)
        return BaggedLogisticRegression(n_models=4, seed=generation)


def test_starts_with_generation_zero_and_the_champion_learns_every_label():
    factory = Factory()
    registry = ModelRegistry(factory)
    assert registry.generation == 0 and factory.built == [0]
    rng = random.Random(2)
    for _ in range(10):
        x = {"a": rng.gauss(0, 1)}
        assert registry.learn_one(x, x["a"] > 0) is None
    assert registry.champion.n_learned == 10


def test_a_snapshot_from_before_governed_retraining_resumes_without_its_challenger():
    """The old registry trained a challenger from scratch itself; such a snapshot
    resumes as a plain registry (the next drift detection starts a warm challenger)."""
    registry = ModelRegistry(Factory())
    state = dict(registry.__dict__, challenger=BaggedLogisticRegression(2), _champion_loss=1.0,
                 _challenger_loss=2.0, _shared=3, min_labels=200, max_labels=1000, frozen=True)
    old = ModelRegistry.__new__(ModelRegistry)
    old.__dict__.update(state)
    restored = pickle.loads(pickle.dumps(old))
    assert set(restored.__dict__) == {"factory", "generation", "champion"}
    restored.learn_one({"a": 1.0}, True)
    assert restored.champion.n_learned == 1
