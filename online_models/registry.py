"""The serving model of a tenant and its generation.

The champion learns every label of its tenant. Which model is champion changes only
through :class:`operators.model_lifecycle.ModelGovernor`: a configured challenger, a
command, or the challenger a drift detection starts (fitted at once on the tenant's
recent labels and promoted only by the paired test on labels it did not learn). Each
change is one generation; generation ``g`` of a model built here is seeded with the
tenant's seed plus ``g``.

>>> registry = ModelRegistry(lambda generation: BaggedLogisticRegression(2, seed=generation))
>>> registry.learn_one({"a": 1.0}, True)
>>> registry.generation, registry.champion.n_learned
(0, 1)
"""

from __future__ import annotations

from collections.abc import Callable

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression

#: What a snapshot taken before drift retraining moved to the governor may still hold:
#: an online challenger learning from scratch and its running losses. Dropped on resume
#: (the next drift detection starts a warm-started challenger instead).
_RETIRED_FIELDS = ("challenger", "_champion_loss", "_challenger_loss", "_shared", "min_labels",
                   "max_labels", "frozen")


class ModelRegistry:
    """Holds the serving model of a tenant."""

    def __init__(self, factory: Callable[[int], BaggedLogisticRegression]) -> None:
        self.factory = factory
        self.generation = 0
        self.champion = factory(0)

    def __setstate__(self, state: dict) -> None:
        for name in _RETIRED_FIELDS:
            state.pop(name, None)
        self.__dict__.update(state)

    def learn_one(self, x: dict, y: bool) -> None:
        """The champion learns one label."""
        self.champion.learn_one(x, y)
