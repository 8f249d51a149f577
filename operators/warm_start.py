"""A tenant scorer's model as a registry artifact, and a scorer started from one.

:func:`scorer_artifact` takes what a :class:`~operators.scoring.TenantScorer` has
learned (its serving model, calibrator and label count) with the card that says
where it came from. :func:`warm_start` is the other way: a scorer whose tenant
has a model in ``registry.models`` starts from that model and calibrator instead
of from nothing (the prior still fades with the tenant's own labels, as for a
cold start) — only its *first* state, so a run resuming from a recovery snapshot keeps
what it has learned since. Drift monitors and rolling quality start afresh: they
describe the stream being scored, not the one the model was trained on.

A model computed on another feature set would read every column with another
meaning: :func:`check_warm_start` refuses it before the flow starts.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.online_models.model_codec import bagged_model, bagged_state, calibrator, calibrator_state
from esg_leads.online_models.model_store import ModelStore, RegistryError, registry_directory
from esg_leads.online_models.registry import ModelRegistry
from esg_leads.operators.features import FEATURE_NAMES, FEATURE_SET_VERSION
from esg_leads.schemas.model_artifact import ModelArtifact, ModelCard, ScorerState
from esg_leads.schemas.settings import Settings


class Scorer(Protocol):
    """What :func:`scorer_artifact` reads and :func:`warm_start` sets on a scorer
    (``operators.scoring.TenantScorer``, which imports this module: a protocol, not an
    import back, keeps the dependency one way)."""

    tenant: str
    registry: ModelRegistry
    calibrator: OnlineCalibrator
    origin: str | None


def scorer_artifact(scorer: Scorer, *, name: str, labels: int, positives: int,
                    window: tuple[datetime | None, datetime | None], until: datetime | None,
                    validation: dict, parent: str | None, created_by: str,
                    source: str) -> ModelArtifact:
    """The registry artifact of what ``scorer`` has learned so far (``labels`` and
    ``positives``: behind the model, its parent's included)."""
    return ModelArtifact(
        card=ModelCard(
            name=name, tenant=scorer.tenant, feature_set_version=FEATURE_SET_VERSION,
            feature_names=FEATURE_NAMES, window_start=window[0], window_end=window[1],
            until=until, labels=labels, positives=positives, validation=validation,
            parent=parent, created_by=created_by, source=source),
        state=ScorerState(model=bagged_state(scorer.registry.champion),
                          calibrator=calibrator_state(scorer.calibrator)))


def start_version(settings: Settings, tenant: str) -> str | None:
    """The model version ``tenant`` starts from (``registry.models``), if any."""
    models = settings.registry.models
    return models.get(tenant, models.get("*"))


@lru_cache(maxsize=64)
def _load(directory: Path, version: str) -> tuple[str, ModelArtifact]:
    """(full version, artifact); artifacts are immutable and content-addressed, so
    caching them by version cannot go stale."""
    store = ModelStore(directory)
    version = store.resolve(version)
    artifact = store.load(version, FEATURE_SET_VERSION)
    if artifact.card.feature_names != FEATURE_NAMES:
        raise RegistryError(f"model {version} was trained on other feature columns than this "
                            f"build's (same version {FEATURE_SET_VERSION}): retrain it")
    return version, artifact


def load_version(directory: Path, version: str) -> tuple[str, ModelArtifact]:
    """(full version, verified artifact) of ``version`` (or a prefix) in ``directory``;
    :class:`RegistryError` for a missing, corrupt or incompatible model."""
    return _load(directory, version)


def check_warm_start(settings: Settings) -> dict[str, str]:
    """Load (and verify) every model the settings start a tenant from; tenant -> version.

    Raises :class:`RegistryError` (one line) for a missing, corrupt or incompatible model.
    """
    directory = registry_directory(settings)
    chosen = {}
    for tenant in settings.tenants:
        version = start_version(settings, tenant)
        if version is not None:
            chosen[tenant] = _load(directory, version)[0]
    return chosen


def warm_start(scorer: Scorer, settings: Settings) -> None:
    """Start ``scorer`` from its tenant's configured model (no-op without one)."""
    version = start_version(settings, scorer.tenant)
    if version is None:
        return
    version, artifact = _load(registry_directory(settings), version)
    state = artifact.state
    scorer.registry.champion = bagged_model(state.model)
    scorer.calibrator = calibrator(state.calibrator)
    # ``scorer.labels`` stays 0: the prior's weight fades with the tenant's *own* labels.
    # The model's labels came from another stream (another tenant, world or period);
    # counting them would drop the prior at once. Measured on a new world (tests/replay/
    # test_train.py): inheriting them made warm start worse than cold, not counting
    # them made it better.
    scorer.origin = version


__all__ = ["check_warm_start", "load_version", "scorer_artifact", "start_version", "warm_start"]
