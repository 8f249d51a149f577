"""Test-wide fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings layer ESG_LEADS_* variables: keep a developer's shell out of the tests."""
    for name in list(os.environ):
        if name.startswith("ESG_LEADS_"):
            monkeypatch.delenv(name)
