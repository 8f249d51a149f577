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


#: The longest modules, longest first (wall seconds on one of three workers of a parallel
#: `make test` on 2 cores, 5 December, with children forked from tests/zygote.py): each
#: runs whole on one worker, so one started last would be the run's tail. A stale entry
#: only costs balance; a module missing here goes with its folder below.
_LONGEST = (
    "tests/flows/test_recovery.py",        # ~48 s: SIGKILLed runs, real processes
    "tests/flows/test_determinism.py",     # ~34 s: a replay per batch size and worker count
    "tests/flows/test_crm_sync.py",        # ~30 s, nearly all waiting: chaos schedules in seconds
    "tests/replay/test_train.py",          # ~30 s: warm start trains on two 2,000-investor worlds
    "tests/replay/test_quality_world.py",  # ~30 s: one 45-day replay
    "tests/connectors/test_recording.py",  # ~29 s: Parquet segments under hypothesis
    "tests/flows/test_report.py",          # ~25 s: a world, matplotlib, Chromium
    "tests/replay/test_cluster.py",        # ~25 s, mostly in spawned cluster processes
    "tests/replay/test_runner.py",         # ~21 s: six replays of one world
    "tests/replay/test_generator.py",      # ~21 s
    "tests/cli/test_main.py",              # ~21 s
    "tests/replay/test_profile_answers.py",  # ~17 s: three worlds with answer rounds
    "tests/replay/test_reviewers.py",      # ~16 s
    "tests/replay/test_runner_memory.py",  # ~16 s: four worlds' replays in fresh children
    "tests/test_zygote.py",                # ~15 s: half of its children exec'd, for comparison
    "tests/flows/test_run_kafka.py",       # ~14 s: live runs against the dev broker
)
#: Where the other end-to-end tests live (real processes, brokers, replays of generated
#: worlds), in the order they go next.
_END_TO_END = ("tests/replay/", "tests/flows/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first, then the end-to-end ones, the rest in collection order.

    `make test` hands whole modules to its workers (pytest-xdist, --dist loadscope,
    --no-loadscope-reorder) in this order: the long modules started first leave the many
    short ones to fill the gaps, so no worker is left alone with a long module at the end.
    Every order must pass: no test relies on another having run.
    """
    root = config.rootpath

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        if path in _LONGEST:
            return 0, _LONGEST.index(path)
        return 1, next((i for i, prefix in enumerate(_END_TO_END) if path.startswith(prefix)),
                       len(_END_TO_END))

    items.sort(key=rank)  # stable: the collection order is kept within each part
