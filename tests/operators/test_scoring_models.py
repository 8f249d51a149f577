"""How the scoring step builds its models and numerical helpers: seeds per tenant and
generation, the calibrator's memory, when the global model is active, logit clamping."""

from __future__ import annotations

import math
import random
import zlib

import numpy as np
import pytest

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.operators.scoring import (
    ModelFactory,
    TenantScorer,
    _logit,
    _row_variances,
    global_model_active,
    tenant_seed,
)
from esg_leads.schemas.settings import Settings


def trained_predictions(model: BaggedLogisticRegression) -> list[float]:
    rng = random.Random(5)
    xs = [{"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)} for _ in range(60)]
    for x in xs:
        model.learn_one(x, x["a"] + 0.3 * rng.gauss(0, 1) > 0)
    return [model.predict_proba_one(x)[True] for x in xs[:10]]


def test_the_model_of_generation_g_is_seeded_with_the_tenant_seed_plus_g():
    s = Settings().scoring
    built = trained_predictions(ModelFactory(s, 1000)(3))
    assert built == trained_predictions(
        BaggedLogisticRegression(s.ensemble_size, s.learning_rate, s.l2, seed=1003))
    # The seed matters (else the check above could not tell 1003 from 997).
    assert built != trained_predictions(
        BaggedLogisticRegression(s.ensemble_size, s.learning_rate, s.l2, seed=997))


def test_a_tenants_seed_mixes_the_configured_seed_and_the_tenant_name():
    assert tenant_seed(7, "acme") == (7 * 1_000_003 + zlib.crc32(b"acme")) % 2**31
    assert tenant_seed(7, "acme") != tenant_seed(8, "acme") != tenant_seed(8, "globex")


@pytest.mark.parametrize("memory", [100, 20_000])
def test_the_calibrator_forgets_one_part_in_calibration_memory_per_pair(memory):
    scorer = TenantScorer("acme", Settings.model_validate({"scoring": {"calibration_memory": memory}}))
    assert scorer.calibrator.decay == pytest.approx(1 - 1 / memory, abs=1e-12)


@pytest.mark.parametrize(("contributes", "uses", "active"), [
    (True, True, True), (True, False, False), (False, True, False), (False, False, False)])
def test_the_global_model_is_active_only_with_a_contributor_and_a_user(contributes, uses, active):
    settings = Settings.model_validate({"tenants": {
        "acme": {"contribute_to_global": contributes}, "globex": {"use_global_prior": uses}}})
    assert global_model_active(settings) is active


def test_logits_of_certain_probabilities_are_clamped_finite():
    edge = math.log((1 - 1e-6) / 1e-6)
    assert _logit(np.array([0.0, 1.0, 0.5])).tolist() == pytest.approx([-edge, edge, 0.0], abs=1e-9)


def test_row_variances_of_a_non_square_batch():
    a = np.array([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    # population variances: mean 3 -> (4 + 1 + 9) / 3; mean 1 -> (1 + 1 + 4) / 3
    assert _row_variances(a).tolist() == pytest.approx([14 / 3, 2.0], abs=1e-12)
