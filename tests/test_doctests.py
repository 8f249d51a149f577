"""The ``>>>`` examples in the docstrings of every module run, and hold.

They run here, against the modules as installed (``esg_leads.operators.scoring``), not
through pytest's ``--doctest-modules``: that imports each file a second time under its
folder's name (``operators.scoring``), a copy with its own classes and its own
module-level registrations (Prometheus metrics, pickling hooks).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import esg_leads

PACKAGES = ("cli", "schemas", "operators", "online_models", "connectors", "flows", "replay")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(f"{esg_leads.__name__}.{package}")
        names.append(module.__name__)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, f"{module.__name__}.")]
    return sorted(names)


def _with_examples(names: list[str]) -> list[str]:
    finder = doctest.DocTestFinder()
    return [name for name in names
            if any(test.examples for test in finder.find(importlib.import_module(name)))]


MODULES = _modules()
WITH_EXAMPLES = _with_examples(MODULES)


def test_every_module_of_every_package_is_found_and_imports() -> None:
    assert len(MODULES) > 100 and "esg_leads.cli.main" in MODULES
    assert len(WITH_EXAMPLES) > 20  # the examples below are the docs; they must not vanish


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_hold(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed (see output)"
