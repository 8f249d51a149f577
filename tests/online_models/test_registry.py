"""ModelRegistry: one challenger at a time, promoted on a concept change, else rolled back."""

from __future__ import annotations

import pickle
import random

import pytest

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.online_models.registry import ModelRegistry


class Factory:
    """Picklable model factory that records the generations it built."""

    def __init__(self) -> None:
        self.built: list[int] = []

    def __call__(self, generation: int) -> BaggedLogisticRegression:
        self.built.append(generation)
        return BaggedLogisticRegression(n_models=4, seed=generation)


def labels(rng: random.Random, n: int, flipped: bool):
    """``y = a > 0`` (or its opposite once the concept has flipped); ``b`` is noise."""
    for _ in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
        yield x, (x["a"] > 0) != flipped


def trained_registry(rng: random.Random, **kwargs) -> ModelRegistry:
    registry = ModelRegistry(Factory(), **kwargs)
    for x, y in labels(rng, 2000, flipped=False):
        assert registry.learn_one(x, y) is None  # no challenger: no events
    return registry


def test_starts_with_generation_zero_and_no_challenger():
    factory = Factory()
    registry = ModelRegistry(factory)
    assert registry.generation == 0 and registry.challenger is None
    assert factory.built == [0]
    assert registry.shadow_log_losses() is None


def test_challenger_is_started_once():
    factory = Factory()
    registry = ModelRegistry(factory)
    assert registry.start_challenger() == "retraining_triggered"
    challenger = registry.challenger
    assert registry.start_challenger() is None
    assert registry.challenger is challenger
    assert factory.built == [0, 1]  # built from scratch, as the next generation


def test_challenger_is_promoted_after_a_concept_change():
    rng = random.Random(11)
    registry = trained_registry(rng)
    registry.start_challenger()
    challenger = registry.challenger
    events = []
    for i, (x, y) in enumerate(labels(rng, 1000, flipped=True), start=1):
        event = registry.learn_one(x, y)
        if event:
            events.append((i, event))
    assert events == [(200, "model_promoted")]  # as soon as it has min_labels and is better
    assert registry.champion is challenger
    assert registry.generation == 1 and registry.challenger is None
    assert registry.champion.predict_proba_one({"a": 2.0, "b": 0.0})[True] < 0.3  # learned the new rule


def test_challenger_is_rolled_back_when_it_is_not_better():
    rng = random.Random(11)
    registry = trained_registry(rng, min_labels=50, max_labels=300)
    champion = registry.champion
    registry.start_challenger()
    events = []
    for i, (x, y) in enumerate(labels(rng, 400, flipped=False), start=1):
        if i == 300:
            champion_loss, challenger_loss = registry.shadow_log_losses()
            assert challenger_loss > champion_loss
        event = registry.learn_one(x, y)
        if event:
            events.append((i, event))
    assert events == [(300, "model_rolled_back")]
    assert registry.champion is champion and registry.generation == 0
    assert registry.challenger is None
    # A later drift may start a new challenger.
    assert registry.start_challenger() == "retraining_triggered"


def test_both_models_are_judged_before_learning():
    registry = ModelRegistry(Factory(), min_labels=1000)
    registry.start_challenger()
    x, y = {"a": 1.0}, True
    # Both untrained: both say 0.5, so each loses log(2) on the first shared label.
    registry.learn_one(x, y)
    assert registry.shadow_log_losses() == pytest.approx((0.6931471805599453, 0.6931471805599453))


def test_champion_keeps_learning_while_a_challenger_runs():
    rng = random.Random(2)
    registry = trained_registry(rng)
    before = registry.champion.n_learned
    registry.start_challenger()
    for x, y in labels(rng, 10, flipped=False):
        registry.learn_one(x, y)
    assert registry.champion.n_learned == before + 10
    assert registry.challenger.n_learned == 10


def test_registry_pickles_mid_shadow():
    rng = random.Random(5)
    registry = trained_registry(rng, min_labels=20, max_labels=100)
    registry.start_challenger()
    stream = list(labels(rng, 150, flipped=True))
    for x, y in stream[:10]:
        registry.learn_one(x, y)
    copy = pickle.loads(pickle.dumps(registry))
    a = [registry.learn_one(x, y) for x, y in stream[10:]]
    b = [copy.learn_one(x, y) for x, y in stream[10:]]
    assert a == b and "model_promoted" in a
    assert registry.generation == copy.generation == 1
