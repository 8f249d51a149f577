"""pyproject.toml and requirements.lock agree: every dependency (runtime and test) is
pinned, and every pin satisfies the range pyproject.toml allows. The wheel installs one
top-level package, ``esg_leads``, that runs without the checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            found[canonicalize_name(name)] = version
    return found


def test_every_dependency_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins()
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside {requirement.specifier}")


def test_the_lock_pins_exact_versions_once():
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert all(line.count("==") == 1 and " " not in line for line in lines), lines
    assert len({canonicalize_name(line.split("==")[0]) for line in lines}) == len(lines)


PACKAGE_DIRS = ("esg_leads", "schemas", "operators", "online_models", "connectors", "flows",
                "replay")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (a build writes build/ and egg-info)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in PACKAGE_DIRS:
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(source)],
                   check=True, capture_output=True)
    [built] = out.glob("esg_leads-*.whl")
    return built


def test_the_wheel_adds_exactly_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"esg_leads"}
    for data in ("esg_leads/operators/compliance_packs/eu.toml",
                 "esg_leads/flows/templates/report.html.j2", "esg_leads/__main__.py",
                 "esg_leads/connectors/recording/reader.py"):
        assert data in names


def test_the_installed_wheel_runs_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    # Run from an empty directory with only the installed copy ahead of the dependencies:
    # the repository's folders are not importable from here.
    done = subprocess.run([sys.executable, "-m", "esg_leads", "schema", "leads.scored"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "properties" in done.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import esg_leads.cli.main as m, esg_leads.operators as o; "
                               "print(m.__file__); print(o.__path__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True,
        text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(site)) or line.startswith(f"['{site}")
               for line in probe.stdout.splitlines()), probe.stdout


def test_every_import_of_our_packages_goes_through_the_namespace() -> None:
    """``from operators import x`` works in a checkout (the folder is on sys.path) but not
    in the installed wheel, where only ``esg_leads`` exists."""
    bare = re.compile(r"^\s*(?:from|import)\s+(?:%s)\b" % "|".join(PACKAGE_DIRS[1:]), re.M)
    offenders = []
    for path in sorted(ROOT.glob("**/*.py")):
        if any(part in {".venv", "build", ".demo"} or part.startswith(".") for part in
               path.relative_to(ROOT).parts):
            continue
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}"
                      for m in bare.finditer(path.read_text())]
    assert offenders == []
