"""One contract for every River estimator in ``online_models``.

Classes are discovered, not listed: a new model in the package is held to the same
contract (clone, pickle, unseen/missing features, seeded determinism, and agreement
of any vectorised NumPy path with River's dict path).
"""

from __future__ import annotations

import importlib
import inspect
import math
import pickle
import pkgutil
import random

import numpy as np
import pytest
from river import base
from river.checks import yield_checks

from esg_leads import online_models
from esg_leads.online_models.bagged_logistic import probabilities


def _discover() -> list[type]:
    found = {}
    for info in pkgutil.iter_modules(online_models.__path__):
        module = importlib.import_module(f"{online_models.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, base.Estimator) and cls.__module__.startswith(f"{online_models.__name__}.")
                    and not inspect.isabstract(cls)):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


MODELS = _discover()
NAMES = ("a", "b", "c", "d")


def test_discovery_finds_the_bagged_logistic_regression():
    assert "BaggedLogisticRegression" in {cls.__name__ for cls in MODELS}


def make(cls: type, **overrides) -> base.Estimator:
    params = next(iter(cls._unit_test_params()), {})
    return cls(**{**params, **overrides})


def stream(seed: int, n: int = 300):
    rng = random.Random(seed)
    for _ in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(5, 3), "c": rng.random(), "d": float(rng.random() < 0.3)}
        yield x, (x["a"] + 0.3 * (x["b"] - 5) / 3 + rng.gauss(0, 0.5)) > 0


PROBES = [{"a": 0.1, "b": 4.0, "c": 0.5, "d": 1.0}, {"a": -2.0, "b": 9.0, "c": 0.0, "d": 0.0},
          {"a": 3.0, "b": -1.0, "c": 1.0, "d": 1.0}]


def fitted(cls: type, data_seed: int = 3, **overrides) -> base.Estimator:
    model = make(cls, **overrides)
    for x, y in stream(data_seed):
        model.learn_one(x, y)
    return model


def predictions(model) -> list[float]:
    return [model.predict_proba_one(x)[True] for x in PROBES]


def _generic_river_checks() -> list:
    """River's own estimator checks that need no datasets (the rest need scikit-learn)."""
    checks = []
    for cls in MODELS:
        try:
            for check in yield_checks(make(cls)):
                checks.append(pytest.param(cls, check, id=f"{cls.__name__}-{check.__name__}"))
        except ImportError:
            pass  # dataset-driven checks follow; they need scikit-learn
    return checks


@pytest.mark.parametrize(("cls", "check"), _generic_river_checks())
def test_river_generic_checks(cls, check):
    check(make(cls))


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
class TestContract:
    def test_clone_is_unfitted_with_equal_params(self, cls):
        model = fitted(cls)
        clone = model.clone()
        assert type(clone) is cls and clone is not model
        assert clone._get_params() == model._get_params()
        assert predictions(clone) == predictions(make(cls))
        assert predictions(clone) != predictions(model)

    def test_pickle_after_learning_preserves_predictions(self, cls):
        model = fitted(cls)
        copy = pickle.loads(pickle.dumps(model))
        assert predictions(copy) == predictions(model)
        # ... and the copy goes on learning exactly like the original.
        for x, y in stream(99, 50):
            model.learn_one(x, y)
            copy.learn_one(x, y)
        assert predictions(copy) == predictions(model)

    def test_unseen_and_missing_features(self, cls):
        model = fitted(cls)
        for x in ({"a": 1.0, "zzz": 123.0}, {"zzz": 5.0}, {}, {"a": 0.5}):
            proba = model.predict_proba_one(x)
            assert set(proba) == {False, True}
            assert 0.0 <= proba[True] <= 1.0 and math.isclose(sum(proba.values()), 1.0)
        # An unseen feature adds nothing.
        assert model.predict_proba_one({"a": 1.0, "zzz": 123.0})[True] == pytest.approx(
            model.predict_proba_one({"a": 1.0})[True], abs=1e-12)
        # Learning from rows with missing or new features works too.
        model.learn_one({"a": 1.0, "new": 2.0}, True)
        model.learn_one({}, False)
        assert 0.0 <= model.predict_proba_one(PROBES[0])[True] <= 1.0

    def test_learning_is_deterministic_for_a_seed(self, cls):
        assert predictions(fitted(cls)) == predictions(fitted(cls))
        params = make(cls)._get_params()
        if "seed" in params:
            assert predictions(fitted(cls, seed=params["seed"] + 1)) != \
                predictions(fitted(cls))

    def test_the_model_learns(self, cls):
        model = fitted(cls)
        assert model.predict_proba_one({"a": 2.0, "b": 5.0})[True] > 0.8
        assert model.predict_proba_one({"a": -2.0, "b": 5.0})[True] < 0.2

    def test_vectorised_path_agrees_with_the_dict_path(self, cls):
        model = fitted(cls)
        if not hasattr(model, "member_logits_many"):
            pytest.skip("no vectorised path")
        names = NAMES + ("never_seen",)
        rows = PROBES + [{"a": 0.3}, {"never_seen": 4.0, "b": 1.0}, {}]
        Z = model.standardise_many(rows, names)
        logits = model.member_logits_many(Z, names)
        contributions = model.contributions_many(Z, names)
        assert logits.shape == (len(rows), len(model.members))
        assert contributions.shape == (len(rows), len(names))
        for i, x in enumerate(rows):
            xs = model.scaler.transform_one(x)
            dict_logits = [m._raw_dot_one(xs) for m in model.members]
            np.testing.assert_allclose(logits[i], dict_logits, rtol=0, atol=1e-9)
            np.testing.assert_allclose(probabilities(logits[i]), model.member_probas_one(x),
                                       rtol=0, atol=1e-9)
            assert probabilities(logits[i]).mean() == pytest.approx(
                model.predict_proba_one(x)[True], abs=1e-9)
            # Contributions: each feature's share of the mean member logit.
            mean_intercept = np.mean([m.intercept for m in model.members])
            assert contributions[i].sum() + mean_intercept == pytest.approx(np.mean(dict_logits), abs=1e-9)
            for j, name in enumerate(names):
                mean_weight = np.mean([m.weights.get(name, 0.0) for m in model.members])
                assert contributions[i, j] == pytest.approx(xs.get(name, 0.0) * mean_weight, abs=1e-9)
        # A matrix standardised column-wise gives the same rows as the dict rows.
        X = np.array([[x.get(n, np.nan) for n in names] for x in PROBES])
        np.testing.assert_allclose(model.standardise(X, names)[:, :4], Z[:3, :4], atol=1e-12)

    def test_vectorised_path_follows_learning(self, cls):
        model = fitted(cls)
        if not hasattr(model, "member_logits_many"):
            pytest.skip("no vectorised path")
        before = model.member_logits_many(model.standardise_many(PROBES, NAMES), NAMES)
        for x, y in stream(5, 20):
            model.learn_one(x, y)
        after = model.member_logits_many(model.standardise_many(PROBES, NAMES), NAMES)
        assert not np.allclose(before, after)  # no stale parameter cache
        for i, x in enumerate(PROBES):
            np.testing.assert_allclose(probabilities(after[i]), model.member_probas_one(x), atol=1e-9)

    def test_extreme_logits_agree_within_rivers_clipping(self, cls):
        model = fitted(cls)
        if not hasattr(model, "member_logits_many"):
            pytest.skip("no vectorised path")
        far = {"a": 1e4, "b": 5.0, "c": 0.5, "d": 0.0}
        Z = model.standardise_many([far], NAMES)
        np.testing.assert_allclose(probabilities(model.member_logits_many(Z, NAMES))[0],
                                   model.member_probas_one(far), atol=1e-9)

    def test_a_rows_logits_do_not_depend_on_the_rows_beside_it(self, cls):
        """Bit for bit: a lead scored alone and scored among others gets the same logits,
        so decisions cannot depend on how many leads a batch closes at once (BLAS's
        ``Z @ W.T`` blocks by the number of rows and fails this)."""
        model = make(cls)
        if not hasattr(model, "member_logits_many"):
            pytest.skip("no vectorised path")
        rng = random.Random(11)
        names = tuple(f"f{j}" for j in range(24))
        for _ in range(200):
            x = {n: rng.gauss(0, 1) for n in names}
            model.learn_one(x, x["f0"] + x["f1"] > 0)
        Z = model.standardise_many([{n: rng.gauss(0, 3) for n in names} for _ in range(300)], names)
        together = model.member_logits_many(Z, names)
        for size in (1, 2, 7, 64):
            apart = np.concatenate([model.member_logits_many(Z[i:i + size], names)
                                    for i in range(0, len(Z), size)])
            assert np.array_equal(together, apart), size
