"""Test-wide fixtures."""

from __future__ import annotations

import importlib.abc
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

#: The folders the wheel installs under the one namespace (esg_leads.<name>).
_OUR_PACKAGES = frozenset({"schemas", "operators", "online_models", "connectors", "flows",
                           "replay"})


class _OnlyThroughTheNamespace(importlib.abc.MetaPathFinder):
    """Refuse ``import flows`` (and a package name given as a string, as Jinja2's
    ``PackageLoader("flows", ...)`` was) in the test process, as the installed wheel
    would: in a checkout the repository root is on sys.path, so the bare name would import
    here and the bug would show only in an installed ``esg-leads``."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name in _OUR_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r}: import esg_leads.{name}",
                                      name=name)
        return None


sys.meta_path.insert(0, _OnlyThroughTheNamespace())

# `make test` draws the same examples on every run: a property test there must never
# pass or fail by luck (a flaky test is a defect). `make fuzz` explores new examples
# (HYPOTHESIS_PROFILE=explore); what it finds becomes an explicit example or a fix.
# Nor by the machine's load: Hypothesis's 200 ms deadline per example and its "input
# generation is slow" health check are wall-clock bounds (both failed `make test` on a
# loaded 2-core machine: test_retry_after_is_a_floor at 403 ms, an ops-alerts property
# at 6 examples in 1.15 s). A slow example is found by `make fuzz`, not by a failure here.
settings.register_profile("repeatable", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings layer ESG_LEADS_* variables: keep a developer's shell out of the tests."""
    for name in list(os.environ):
        if name.startswith("ESG_LEADS_"):
            monkeypatch.delenv(name)


#: Where the end-to-end tests live (real processes, brokers, replays of generated worlds),
#: in the order they go first: tests/replay/ holds the longest modules (training, reviewers).
_END_TO_END = ("tests/replay/", "tests/flows/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """End-to-end modules first, the rest in collection order after them.

    `make test` hands whole modules to its workers (pytest-xdist, --dist loadscope,
    --no-loadscope-reorder) in this order: the long modules started first leave the many
    short ones to fill the gaps, so no worker is left alone with a long module at the end.
    Every order must pass: no test relies on another having run.
    """
    root = config.rootpath

    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        return next((i for i, prefix in enumerate(_END_TO_END) if path.startswith(prefix)),
                    len(_END_TO_END))

    items.sort(key=rank)  # stable: the collection order is kept within each part
