"""The architecture as contracts (import-linter, configured in pyproject.toml):
packages import only downwards (schemas < online_models < operators < connectors < flows
< replay) and no two modules of a package import each other, directly or round a loop.
Lazy imports inside functions count: they are dependencies all the same."""

from __future__ import annotations

import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                          no_logo=True)
    report = capsys.readouterr().out
    assert status == 0, report


def test_the_layers_cover_every_package_in_the_documented_order():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    assert layers == ["replay", "flows", "connectors", "operators", "online_models", "schemas"]
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert set(layers) == packages == set(config["root_packages"])
    cycles = next(c for c in config["contracts"] if c["type"] == "acyclic_siblings")
    assert set(cycles["ancestors"]) == packages
