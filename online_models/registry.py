"""Champion and challenger: how a tenant's model is retrained after concept drift.

When the error stream drifts, a *challenger* starts from scratch and learns only
from labels after the drift, in shadow (it never scores leads). Both models are
judged prequentially on the same labels; the challenger is promoted once it has
seen ``min_labels`` and its log loss is lower, or rolled back if it has not won
after ``max_labels``. Every step is reported as an event for ``ops.alerts``.

>>> registry = ModelRegistry(lambda generation: BaggedLogisticRegression(2, seed=generation),
...                          min_labels=10, max_labels=30)
>>> registry.start_challenger()
'retraining_triggered'
>>> registry.start_challenger() is None  # one challenger at a time
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression


def _log_loss(p: float, y: bool) -> float:
    p = min(1 - 1e-12, max(1e-12, p))
    return -math.log(p if y else 1 - p)


class ModelRegistry:
    """Holds the serving model of a tenant and, at times, a challenger in shadow."""

    #: Pinned by an operator (operators/model_lifecycle.py): no retraining challenger
    #: starts, so nothing is promoted automatically (a class default for old snapshots).
    frozen = False

    def __init__(self, factory: Callable[[int], BaggedLogisticRegression],
                 min_labels: int = 200, max_labels: int = 1000) -> None:
        self.factory = factory
        self.min_labels = min_labels
        self.max_labels = max_labels
        self.generation = 0
        self.champion = factory(0)
        self.challenger: BaggedLogisticRegression | None = None
        self._champion_loss = 0.0
        self._challenger_loss = 0.0
        self._shared = 0

    def start_challenger(self) -> str | None:
        if self.challenger is not None or self.frozen:
            return None
        self.challenger = self.factory(self.generation + 1)
        self._champion_loss = self._challenger_loss = 0.0
        self._shared = 0
        return "retraining_triggered"

    def learn_one(self, x: dict, y: bool) -> str | None:
        """Learn from one label; returns ``model_promoted``/``model_rolled_back`` if it happened."""
        event = None
        challenger = self.challenger
        if challenger is not None:
            # Judge both on this label before either learns from it.
            self._champion_loss += _log_loss(self.champion.predict_proba_one(x)[True], y)
            self._challenger_loss += _log_loss(challenger.predict_proba_one(x)[True], y)
            self._shared += 1
        self.champion.learn_one(x, y)
        if challenger is not None:
            challenger.learn_one(x, y)
            if self._shared >= self.min_labels and self._challenger_loss < self._champion_loss:
                self.champion, self.challenger = challenger, None
                self.generation += 1
                event = "model_promoted"
            elif self._shared >= self.max_labels:
                self.challenger = None
                event = "model_rolled_back"
        return event

    def shadow_log_losses(self) -> tuple[float, float] | None:
        """Mean log loss of champion and challenger on the labels they shared."""
        if self.challenger is None or not self._shared:
            return None
        return self._champion_loss / self._shared, self._challenger_loss / self._shared
