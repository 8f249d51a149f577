"""Offline training (``esg-leads train``), the registry commands, and warm start.

Two worlds from the same generator, seeds A and B: tenant models are trained on A
by the flow itself (a replay) and registered; B is then scored cold and warm.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from esg_leads.connectors.parquet_sink import read_records
from esg_leads.cli.main import main
from esg_leads.flows.config import load_settings
from esg_leads.online_models.model_store import ModelStore, encode
from esg_leads.online_models.quality import roc_auc
from esg_leads.operators.features import FEATURE_NAMES, FEATURE_RANGES, FEATURE_SET_VERSION
from esg_leads.operators.scoring import TenantScorer
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from esg_leads.replay.train import fit, log_loss, register
from esg_leads.schemas.settings import Settings

#: No reviewers, no profile answers: no replay while generating.
LOOP_OFF = dict(reviewers=False, profile_answers=False)
WORLD_A = WorldSpec(tenants=1, investors=2000, properties=200, days=30, seed=21, **LOOP_OFF)
WORLD_B = WorldSpec(tenants=1, investors=2000, properties=200, days=30, seed=22, **LOOP_OFF)
SMALL = WorldSpec(tenants=1, investors=300, properties=40, days=6, seed=23, **LOOP_OFF)
FIRST_LABELS = 1000
#: World B's 1,000th label is learned on 29 January (1,041 labels before the 30th, 1,340
#: in all): training B only on what comes before is the same first 1,000 predictions,
#: without replaying the rest of the world twice (about 2.5 CPU-s).
FIRST_LABELS_BY = datetime(2026, 1, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("train")
    world = root / "a"
    generate(WORLD_A, world)
    settings = load_settings(world / "config.toml")
    scorers = fit(world, settings)
    registry = root / "registry"
    (result,) = register(scorers, registry, settings, source=world)
    return {"root": root, "world": world, "settings": settings, "scorers": scorers,
            "registry": registry, "version": result.version, "tenant": result.tenant}


def warm(settings: Settings, registry: Path, version: str) -> Settings:
    return settings.model_copy(update={"registry": settings.registry.model_copy(
        update={"directory": str(registry), "models": {"*": version}})})


def vectors(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{name: rng.uniform(*FEATURE_RANGES[name]) if FEATURE_RANGES[name][1] < 100
             else rng.uniform(0, 5) for name in FEATURE_NAMES} for _ in range(n)]


def errors(capsys) -> list[str]:
    """stderr's lines that are not progress or notes: the error, without a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if ": error: " in line]


def test_train_list_load_gives_identical_predictions(trained: dict) -> None:
    store = ModelStore(trained["registry"])
    (entry,) = store.entries()
    assert entry["version"] == trained["version"]
    assert entry["feature_set_version"] == FEATURE_SET_VERSION
    original = trained["scorers"][trained["tenant"]]
    assert entry["labels"] == original.labels > 500
    # A scorer started from the registered version holds the very same model.
    started = TenantScorer(trained["tenant"], warm(trained["settings"], trained["registry"],
                                                   trained["version"]))
    assert started.origin == trained["version"]
    for x in vectors(200, seed=1):
        assert (started.registry.champion.predict_proba_one(x)
                == original.registry.champion.predict_proba_one(x))
    grid = [i / 99 for i in range(100)]
    assert [started.calibrator.transform(p) for p in grid] == \
        [original.calibrator.transform(p) for p in grid]
    # Registering what was learned again is the same version (deterministic training).
    again = register(trained["scorers"], trained["registry"], trained["settings"],
                     source=trained["world"])
    assert [t.version for t in again] == [trained["version"]]


def test_warm_start_beats_cold_start_on_the_first_labels_of_a_new_world(trained: dict) -> None:
    world = trained["root"] / "b"
    generate(WORLD_B, world)
    settings = load_settings(world / "config.toml")
    cold = fit(world, settings, until=FIRST_LABELS_BY)
    warmed = fit(world, warm(settings, trained["registry"], trained["version"]),
                 until=FIRST_LABELS_BY)
    results = {}
    for name, scorers in (("cold", cold), ("warm", warmed)):
        pairs = [pair for s in scorers.values() for pair in s.predictions][:FIRST_LABELS]
        assert len(pairs) == FIRST_LABELS, f"fewer labels before {FIRST_LABELS_BY}: move it"
        results[name] = (log_loss(pairs), roc_auc([p for p, _ in pairs], [y for _, y in pairs]))
    # Both judged test-then-train on the same 1,000 labels (the flow's own prequential check).
    assert results["warm"][0] < results["cold"][0], results
    assert results["warm"][1] > results["cold"][1], results


def test_cli_train_until_models_list_show_diff(trained: dict, capsys) -> None:
    registry = trained["registry"]
    # Nine days of world A: 99 labels of its 1,292, at a third of a whole training's CPU.
    until = datetime(2026, 1, 14, tzinfo=timezone.utc)
    assert main(["train", str(trained["world"]), "--out", str(registry),
                 "--until", "2026-01-14T00:00:00Z"]) == 0
    entries = ModelStore(registry).entries()
    early = next(e for e in entries if e["version"] != trained["version"])
    # Only labels before the cut-off, fewer than the whole recording's.
    assert datetime.fromisoformat(early["window_end"]) < until
    assert 0 < early["labels"] < trained["scorers"][trained["tenant"]].labels
    capsys.readouterr()
    assert main(["models", "list", "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert trained["version"] in out and early["version"] in out
    assert main(["models", "show", early["version"][:8], "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "checksum verified" in out and "2026-01-14" in out and FEATURE_SET_VERSION in out
    assert main(["models", "diff", early["version"], trained["version"],
                 "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "mean weights that moved most" in out and trained["version"] in out


def test_replay_from_a_model_names_it_and_refuses_a_bad_one(trained: dict, tmp_path: Path,
                                                             capsys) -> None:
    world = tmp_path / "small"
    generate(SMALL, world)
    registry = trained["registry"]
    assert main(["replay", str(world), "--out", str(tmp_path / "out"),
                 "--model", trained["version"], "--registry", str(registry)]) == 0
    leads = read_records(tmp_path / "out" / "leads.parquet")
    assert leads and all(r["model"]["model_version"].endswith(f":from-{trained['version']}")
                         for r in leads)
    # A model of another feature set: one line, exit 2, before anything runs.
    artifact = ModelStore(registry).load(trained["version"])
    old = artifact.model_copy(update={"card": artifact.card.model_copy(
        update={"feature_set_version": "fs-0"})})
    old_version = ModelStore(registry).register(old, datetime.now(timezone.utc))
    capsys.readouterr()
    assert main(["replay", str(world), "--out", str(tmp_path / "o2"),
                 "--model", old_version, "--registry", str(registry)]) == 2
    (error,) = errors(capsys)
    assert f"feature set fs-0, this build computes {FEATURE_SET_VERSION}" in error
    assert not (tmp_path / "o2" / "leads.parquet").exists()
    # A corrupt artifact: one line, exit 2 (replay and models show alike).
    broken = tmp_path / "broken"
    (broken / "models").mkdir(parents=True)
    data = encode(artifact)
    store = ModelStore(broken)
    version = store.register(artifact, datetime.now(timezone.utc))
    (broken / "models" / f"{version}.json").write_bytes(data[:-100])
    for argv in (["replay", str(world), "--out", str(tmp_path / "o3"), "--model",
                  f"acme-capital={version}", "--registry", str(broken)],
                 # several processes: refused once, before any of them starts
                 ["replay", str(world), "--out", str(tmp_path / "o4"), "--processes", "2",
                  "--model", f"acme-capital={version}", "--registry", str(broken)],
                 ["models", "show", version, "--registry", str(broken)]):
        assert main(argv) == 2
        (error,) = errors(capsys)
        assert f"model {version} is corrupt" in error
