"""A model version as stored in the registry: what it is, where it came from, its numbers.

An artifact is plain JSON: numbers, strings and arrays, in a versioned layout
(``format``). It is never a pickle: unpickling a file is running code its author
chose, so a registry that loaded pickles would let anyone who can write a file
there execute code in the flow. Parsing JSON into these strict models can only
fail, and it fails with a :class:`pydantic.ValidationError`.

The *card* is the metadata an auditor reads (SR 11-7 inventory): feature set,
training window, label counts, validation metrics, parent version, the trigger
that created it. The *state* is what scoring needs to continue where training
stopped: the tenant's bagged logistic regression (scaler and members) and its
calibrator.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

ARTIFACT_FORMAT = "esg-leads-model/1"


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Count = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    # strict: "1" is not 1, a bool is not a number: a hand-edited artifact fails loudly.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Named(_Strict):
    """A value per feature, in the order the model met the features (River sums dicts in
    insertion order, so the order is part of the model's exact arithmetic)."""

    names: tuple[str, ...]
    values: tuple[Finite, ...]

    @model_validator(mode="after")
    def _aligned(self) -> Named:
        if len(self.names) != len(self.values):
            raise ValueError("names and values differ in length")
        if len(set(self.names)) != len(self.names):
            raise ValueError("a feature is named twice")
        return self


class MemberState(_Strict):
    weights: Named
    intercept: Finite
    #: SGD steps taken (River's optimiser counts them; kept so learning resumes exactly).
    iterations: Count


class BaggedLogisticState(_Strict):
    kind: Literal["bagged_logistic"] = "bagged_logistic"
    n_models: Annotated[int, Field(ge=1, le=64)]
    lr: Annotated[Finite, Field(gt=0)]
    l2: Annotated[Finite, Field(ge=0)]
    seed: int
    n_learned: Count
    scaler_counts: tuple[tuple[str, Count], ...]
    scaler_means: Named
    scaler_vars: Named
    members: tuple[MemberState, ...]
    #: ``random.Random.getstate()`` of the bagging draws: (version, 625 words, gauss).
    rng_state: tuple[int, tuple[int, ...], Finite | None]

    @model_validator(mode="after")
    def _consistent(self) -> BaggedLogisticState:
        if len(self.members) != self.n_models:
            raise ValueError(f"{len(self.members)} members for n_models={self.n_models}")
        if len(self.rng_state[1]) != 625 or any(not 0 <= w < 2**32 for w in self.rng_state[1]):
            raise ValueError("rng_state is not a Mersenne Twister state")
        return self


class CalibratorState(_Strict):
    bins: Annotated[int, Field(ge=2, le=1000)]
    prior_weight: Annotated[Finite, Field(gt=0)]
    decay: Annotated[Finite, Field(gt=0, le=1)]
    positives: tuple[Finite, ...]
    totals: tuple[Annotated[Finite, Field(gt=0)], ...]
    curve: tuple[Finite, ...]
    stale: Count
    n_learned: Count

    @model_validator(mode="after")
    def _bins(self) -> CalibratorState:
        if not len(self.positives) == len(self.totals) == len(self.curve) == self.bins:
            raise ValueError("positives, totals and curve must have one value per bin")
        return self


class ScorerState(_Strict):
    model: BaggedLogisticState
    calibrator: CalibratorState


class ModelCard(_Strict):
    """Who, what, when, how well: the part of an artifact people read."""

    name: str  #: the algorithm (``bagged-logreg``)
    tenant: str  #: the tenant whose labels trained it
    feature_set_version: str
    feature_names: tuple[str, ...]
    #: Event times of the first and last labels learned (None: no label).
    window_start: datetime | None
    window_end: datetime | None
    #: Input cut-off of the training run (``--until``), None: the whole recording.
    until: datetime | None
    labels: Count
    positives: Count
    #: Prequential (test-then-train) metrics over the last labels before the cut-off:
    #: every label was predicted before the model learned from it.
    validation: dict[str, Finite | int | None]
    parent: str | None  #: the version training started from, if any
    created_by: str  #: the trigger: ``train <recording>``, …
    source: str  #: the recording (its path as given)


class ModelArtifact(_Strict):
    format: Literal["esg-leads-model/1"] = ARTIFACT_FORMAT
    card: ModelCard
    state: ScorerState


__all__ = ["ARTIFACT_FORMAT", "BaggedLogisticState", "CalibratorState", "MemberState",
           "ModelArtifact", "ModelCard", "Named", "ScorerState"]
