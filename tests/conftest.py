"""Test-wide fixtures."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# `make test` draws the same examples on every run: a property test there must never
# pass or fail by luck (a flaky test is a defect). `make fuzz` explores new examples
# (HYPOTHESIS_PROFILE=explore); what it finds becomes an explicit example or a fix.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings layer ESG_LEADS_* variables: keep a developer's shell out of the tests."""
    for name in list(os.environ):
        if name.startswith("ESG_LEADS_"):
            monkeypatch.delenv(name)
