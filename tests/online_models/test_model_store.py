"""The registry on disk: immutable versions, an index, and clear refusals."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.online_models.model_codec import bagged_state, calibrator_state
from esg_leads.online_models.model_store import ModelStore, RegistryError, encode, registry_directory
from esg_leads.schemas.model_artifact import ModelArtifact, ModelCard, ScorerState
from esg_leads.schemas.settings import Settings

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def artifact(seed: int = 1, feature_set: str = "fs-test") -> ModelArtifact:
    rng = random.Random(seed)
    model = BaggedLogisticRegression(n_models=3, seed=seed)
    for _ in range(40):
        x = {"a": rng.random(), "b": rng.random()}
        model.learn_one(x, x["a"] > 0.5)
    card = ModelCard(name="bagged-logreg", tenant="acme-capital", feature_set_version=feature_set,
                     feature_names=("a", "b"), window_start=NOW, window_end=NOW, until=None,
                     labels=40, positives=20, validation={"log_loss": 0.5, "auc": None},
                     parent=None, created_by="test", source="memory")
    return ModelArtifact(card=card, state=ScorerState(model=bagged_state(model),
                                                      calibrator=calibrator_state(OnlineCalibrator())))


def test_registering_indexes_a_version_that_loads_back_equal(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.register(artifact(), NOW)
    assert store.register(artifact(), NOW) == version  # same content, same version, one line
    other = store.register(artifact(seed=2), NOW)
    assert [e["version"] for e in store.entries()] == [version, other]
    assert store.load(version) == artifact()
    assert store.load(version[:6]) == artifact()  # an unambiguous prefix names it
    assert store.entries()[0]["labels"] == 40


def test_a_truncated_or_modified_artifact_is_refused_in_one_line(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.register(artifact(), NOW)
    path = tmp_path / "models" / f"{version}.json"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryError, match=f"model {version} is corrupt") as error:
        store.load(version)
    assert "\n" not in str(error.value)
    # A silently different model: one weight changed, still valid JSON.
    tampered = orjson.loads(data)
    tampered["state"]["model"]["members"][0]["intercept"] += 1.0
    path.write_bytes(orjson.dumps(tampered))
    with pytest.raises(RegistryError, match="corrupt"):
        store.load(version)


def test_a_forged_artifact_with_a_matching_name_fails_validation_not_with_a_traceback(
        tmp_path: Path) -> None:
    import hashlib

    store = ModelStore(tmp_path)
    (tmp_path / "models").mkdir()
    data = b'{"format": "esg-leads-model/1", "card": {}, "state": "__import__(\'os\')"}'
    version = "m-" + hashlib.sha256(data).hexdigest()[:12]
    (tmp_path / "models" / f"{version}.json").write_bytes(data)
    with pytest.raises(RegistryError, match=f"model {version} is not a readable artifact"):
        store.load(version)


def test_a_model_of_another_feature_set_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.register(artifact(feature_set="fs-old"), NOW)
    assert store.load(version, "fs-old").card.feature_set_version == "fs-old"
    with pytest.raises(RegistryError, match="trained on feature set fs-old, this build computes "
                                            "fs-new: retrain it"):
        store.load(version, "fs-new")


def test_unknown_ambiguous_and_malformed_versions_and_a_damaged_index(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError, match="not a model version"):
        store.load("../../etc/passwd")  # never a path
    with pytest.raises(RegistryError, match="no model version m-abcdef"):
        store.load("m-abcdef")
    store.register(artifact(), NOW)
    with open(tmp_path / "index.jsonl", "ab") as index:
        for n in (1, 2):
            index.write(orjson.dumps({"version": f"m-aaaa0000000{n}", "sha256": "aaaa"}) + b"\n")
    with pytest.raises(RegistryError, match="m-aaaa is ambiguous: m-aaaa00000001, m-aaaa00000002"):
        store.load("m-aaaa")
    with open(tmp_path / "index.jsonl", "ab") as index:
        index.write(b'{"version": "m-12')  # a torn line
    with pytest.raises(RegistryError, match=r"index.jsonl:4: not an index line"):
        store.entries()


def test_the_encoding_is_canonical_json_never_pickle(tmp_path: Path) -> None:
    data = encode(artifact())
    assert data == encode(ModelArtifact.model_validate_json(data))
    assert not data.startswith(b"\x80")  # a pickle's protocol byte
    assert orjson.loads(data)["format"] == "esg-leads-model/1"


def test_the_registry_defaults_under_the_recovery_directory() -> None:
    assert registry_directory(Settings()) == Path("model-registry")
    recovering = Settings(recovery={"directory": "/var/lib/esg"})
    assert registry_directory(recovering) == Path("/var/lib/esg/registry")
    assert registry_directory(Settings(registry={"directory": "/models"})) == Path("/models")
