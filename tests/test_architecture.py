"""The architecture as contracts (import-linter, configured in pyproject.toml):
packages import only downwards (schemas < online_models < operators < connectors < flows
< replay < cli) and no two modules of a package import each other, directly or round a
loop. Lazy imports inside functions count: they are dependencies all the same.

import-linter (grimp) finds a package's modules by walking its directory, so it runs on
the installed layout: the folders copied under ``esg_leads/`` as the wheel places them
(in the checkout they are top-level folders the namespace package reaches by its path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["cli", "replay", "flows", "connectors", "operators", "online_models", "schemas"]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_import_contract_is_kept(tmp_path: Path) -> None:
    config = _config()
    installed = tmp_path / "esg_leads"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.toml", "*.j2")
    shutil.copytree(ROOT / "esg_leads", installed, ignore=ignore)
    for source, target in config["tool"]["setuptools"]["package-dir"].items():
        if source != "esg_leads":
            shutil.copytree(ROOT / target, tmp_path / source.replace(".", "/"), ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", "pyproject.toml", "--no-cache"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_the_layers_cover_every_package_in_the_documented_order() -> None:
    config = _config()
    linter = config["tool"]["importlinter"]
    layers = next(c for c in linter["contracts"] if c["type"] == "layers")
    assert layers["layers"] == LAYERS and layers["containers"] == ["esg_leads"]
    installed = {name.removeprefix("esg_leads.")
                 for name in config["tool"]["setuptools"]["packages"]} - {"esg_leads"}
    top = {name for name in installed if "." not in name}
    assert top == set(LAYERS)
    cycles = next(c for c in linter["contracts"] if c["type"] == "acyclic_siblings")
    assert set(cycles["ancestors"]) == {f"esg_leads.{name}" for name in LAYERS}
