"""Online bagged logistic regression: a probability and an honest spread.

A River classifier: one shared :class:`river.preprocessing.StandardScaler` feeding
``n_models`` :class:`river.linear_model.LogisticRegression` members, each trained
with online bagging (Oza & Russell, 2001: every example is shown to each member
``k ~ Poisson(1)`` times). The members' disagreement measures how much the data
pins the model down; it shrinks as labels accumulate.

Scoring is the hot path, so besides River's ``predict_proba_one`` there is
:meth:`BaggedLogisticRegression.member_logits_many`, which evaluates the *same*
parameters for many rows at once with NumPy. Both paths are tested to agree.

>>> model = BaggedLogisticRegression(n_models=4, seed=1)
>>> for i in range(200):
...     x = {"a": i % 7 / 7, "b": (i * 3) % 5 / 5}
...     model.learn_one(x, x["a"] > 0.5)
>>> p = model.predict_proba_one({"a": 0.9, "b": 0.2})[True]
>>> p > 0.7
True
>>> p > model.predict_proba_one({"a": 0.1, "b": 0.2})[True]
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from river import base, linear_model, optim, preprocessing


def _poisson1(rng: random.Random) -> int:
    """A draw from Poisson(1) (Knuth), as online bagging needs."""
    limit, k, p = math.exp(-1.0), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class BaggedLogisticRegression(base.Classifier):
    """Online bagging of logistic regressions over standardised features.

    Parameters
    ----------
    n_models
        Number of ensemble members.
    lr
        SGD learning rate of each member.
    l2
        L2 penalty of each member.
    seed
        Seed of the bagging draws; the same seed and data give the same model.
    """

    def __init__(self, n_models: int = 8, lr: float = 0.03, l2: float = 1e-4, seed: int = 42) -> None:
        self.n_models = n_models
        self.lr = lr
        self.l2 = l2
        self.seed = seed
        self.scaler = preprocessing.StandardScaler()
        self.members = [
            linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
            for _ in range(n_models)
        ]
        self._rng = random.Random(seed)
        self.n_learned = 0
        self._cache: tuple | None = None

    # ---------------------------------------------------------- River API

    def learn_one(self, x: dict, y: bool, w: float = 1.0) -> None:
        """Learn one example; ``w`` is its sample weight (a step ``w`` times as long, for
        every member: a retraining challenger weighs recent labels up this way)."""
        self.scaler.learn_one(x)
        xs = self.scaler.transform_one(x)
        for member in self.members:
            for _ in range(_poisson1(self._rng)):
                member.learn_one(xs, y, w)
        self.n_learned += 1
        self._cache = None

    def predict_proba_one(self, x: dict) -> dict[bool, float]:
        p = sum(self.member_probas_one(x)) / self.n_models
        return {False: 1.0 - p, True: p}

    @property
    def _multiclass(self) -> bool:
        return False

    # ------------------------------------------------------------- extras

    def member_probas_one(self, x: dict) -> list[float]:
        xs = self.scaler.transform_one(x)
        return [member.predict_proba_one(xs)[True] for member in self.members]

    def _params(self, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """Parameters as arrays over ``names`` (cached until the next ``learn_one``).

        Features never seen in training get mean 0, scale 0 and weight 0: they
        contribute nothing, as in River's dict arithmetic.
        """
        cache = self._cache
        if cache is None or cache[0] != names:
            scaler = self.scaler
            seen = scaler.counts
            means = np.array([scaler.means[n] if n in seen else 0.0 for n in names], dtype=float)
            variances = np.array([scaler.vars[n] if n in seen else 0.0 for n in names], dtype=float)
            with np.errstate(divide="ignore"):
                inv_std = np.where(variances > 0, 1.0 / np.sqrt(variances), 0.0)
            columns = list(names)
            # River keeps weights in a Rust VectorDict that exports straight to NumPy.
            weights = np.array([m._weights.to_numpy(columns) for m in self.members],
                               dtype=float).reshape(self.n_models, len(names))
            intercepts = np.array([m.intercept for m in self.members], dtype=float)
            cache = self._cache = (names, means, inv_std, weights, intercepts,
                                   weights.mean(axis=0))
        return cache[1:]

    def standardise(self, X: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """Standardise a matrix whose columns are the features ``names``."""
        means, inv_std, _, _, _ = self._params(names)
        return (X - means) * inv_std

    def standardise_many(self, rows: Sequence[dict], names: tuple[str, ...]) -> np.ndarray:
        """Rows as a standardised matrix over ``names``; a missing feature counts as its mean."""
        means = self._params(names)[0].tolist()
        X = np.array([[row.get(n, m) for n, m in zip(names, means)] for row in rows],
                     dtype=float).reshape(len(rows), len(names))
        return self.standardise(X, names)

    def member_logits_many(self, Z: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """Logits of every member for standardised rows ``Z``: shape ``(rows, n_models)``.

        ``einsum``, not ``Z @ weights.T``: BLAS blocks a product by its number of rows, so
        a row's logits would change in the last bit with the rows scored beside it, and a
        decision would depend on how many leads closed at once. ``einsum``'s loop sums
        each row on its own.
        """
        _, _, weights, intercepts, _ = self._params(names)
        return np.einsum("ij,kj->ik", Z, weights) + intercepts

    def contributions_many(self, Z: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """Each feature's share of the mean member logit: shape ``(rows, features)``."""
        return Z * self._params(names)[4]


def probabilities(logits: np.ndarray) -> np.ndarray:
    """The logistic function, vectorised; logits are clipped at +-30 as River does."""
    return 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(logits, -30.0), 30.0)))


__all__ = ["BaggedLogisticRegression", "probabilities"]
