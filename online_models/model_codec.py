"""Live models to plain numbers and back, exactly.

:func:`bagged_state` / :func:`bagged_model` and :func:`calibrator_state` /
:func:`calibrator` convert between the online models and the explicit states of
:mod:`schemas.model_artifact`. The round trip is exact: the rebuilt model predicts
the same floats and, given the same labels, keeps learning the same way (its
bagging draws resume from the saved random state). Nothing here pickles: see
:mod:`schemas.model_artifact` for why.

>>> model = BaggedLogisticRegression(n_models=3, seed=5)
>>> for i in range(60):
...     model.learn_one({"a": i % 7 / 7, "b": i % 3}, i % 4 == 0)
>>> copy = bagged_model(bagged_state(model))
>>> copy.predict_proba_one({"a": 0.5, "b": 1.0}) == model.predict_proba_one({"a": 0.5, "b": 1.0})
True
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np
from river.utils import VectorDict

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.schemas.model_artifact import BaggedLogisticState, CalibratorState, MemberState, Named


def _named(mapping: dict) -> Named:
    return Named(names=tuple(mapping), values=tuple(float(v) for v in mapping.values()))


def bagged_state(model: BaggedLogisticRegression) -> BaggedLogisticState:
    """The complete state of ``model`` (raises ``ValidationError`` on a NaN weight)."""
    members = []
    for member in model.members:
        if member.optimizer.lr.learning_rate != model.lr or member.l2 != model.l2:
            raise ValueError("a member's hyper-parameters differ from the ensemble's")
        members.append(MemberState(weights=_named(member._weights.to_dict()),  # noqa: SLF001
                                   intercept=float(member.intercept),
                                   iterations=member.optimizer.n_iterations))
    scaler = model.scaler
    version, words, gauss = model._rng.getstate()  # noqa: SLF001
    return BaggedLogisticState(
        n_models=model.n_models, lr=float(model.lr), l2=float(model.l2), seed=model.seed,
        n_learned=model.n_learned,
        scaler_counts=tuple((name, int(count)) for name, count in scaler.counts.items()),
        scaler_means=_named(scaler.means), scaler_vars=_named(scaler.vars),
        members=tuple(members), rng_state=(version, tuple(words), gauss))


def bagged_model(state: BaggedLogisticState) -> BaggedLogisticRegression:
    """A model equal to the one ``state`` was taken from."""
    model = BaggedLogisticRegression(state.n_models, state.lr, state.l2, seed=state.seed)
    model.n_learned = state.n_learned
    model.scaler.counts = Counter(dict(state.scaler_counts))
    model.scaler.means = defaultdict(float, zip(state.scaler_means.names,
                                                state.scaler_means.values, strict=True))
    model.scaler.vars = defaultdict(float, zip(state.scaler_vars.names,
                                               state.scaler_vars.values, strict=True))
    for member, saved in zip(model.members, state.members, strict=True):
        # As River keeps them between learning steps: no initializer (reads do not insert).
        member._weights = VectorDict(  # noqa: SLF001
            dict(zip(saved.weights.names, saved.weights.values, strict=True)))
        member.intercept = saved.intercept
        member.optimizer.n_iterations = saved.iterations
    rng = random.Random()
    version, words, gauss = state.rng_state
    rng.setstate((version, words, gauss))
    model._rng = rng  # noqa: SLF001
    return model


def calibrator_state(cal: OnlineCalibrator) -> CalibratorState:
    return CalibratorState(
        bins=cal.bins, prior_weight=float(cal.prior_weight), decay=float(cal.decay),
        positives=tuple(cal.positives.tolist()), totals=tuple(cal.totals.tolist()),
        curve=tuple(cal._map.tolist()), stale=cal._stale,  # noqa: SLF001
        n_learned=cal.n_learned)


def calibrator(state: CalibratorState) -> OnlineCalibrator:
    cal = OnlineCalibrator(state.bins, state.prior_weight, state.decay)
    cal.positives = np.array(state.positives, dtype=float)
    cal.totals = np.array(state.totals, dtype=float)
    cal._map = np.array(state.curve, dtype=float)  # noqa: SLF001
    cal._stale = state.stale  # noqa: SLF001
    cal.n_learned = state.n_learned
    return cal


__all__ = ["bagged_model", "bagged_state", "calibrator", "calibrator_state"]
