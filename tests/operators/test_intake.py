"""TenantIntake: the catalog and the investor windows of one tenant, in one step."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from operators.intake import TenantIntake
from operators.investor_window import InvestorWindows
from operators.property_catalog import PropertyCatalog
from schemas.records import Ingested, InvestorWindow
from schemas.settings import Settings
from tests.operators.test_property_catalog import NOW, T0, engagement, signal

SETTINGS = Settings(windows={"length": "PT1H", "allowed_lateness": "PT15M", "stagger": False})
HOUR = timedelta(hours=1)


def stream() -> list[Ingested]:
    return [
        signal("s-1", "p-1", T0, epc_band="A"),
        engagement("e-1", T0 + timedelta(minutes=5), "p-1"),
        engagement("e-1", T0 + timedelta(minutes=6), "p-1"),  # a duplicate
        engagement("e-2", T0 + timedelta(minutes=7), investor_id="inv-2", action="unsubscribe"),
        engagement("e-3", T0 + timedelta(minutes=80), "p-1", investor_id="inv-3"),  # closes 9:00
    ]


def test_engagements_go_through_the_catalog_into_the_windows():
    intake = TenantIntake(SETTINGS)
    out = intake.process(stream(), NOW)
    dead = [x for x in out if isinstance(x, dict)]
    assert [d["reason"] for d in dead] == ["duplicate"]
    (unsubscribe,) = [x for x in out if isinstance(x, Ingested)]
    assert unsubscribe.event.action == "unsubscribe"
    (window,) = [x for x in out if isinstance(x, InvestorWindow)]
    assert (window.tenant, window.investor_id, window.window_start) == ("acme", "inv-1", T0)
    assert window.aggregate.with_facts == 1  # enriched by the catalog on the way
    (last,) = intake.flush(NOW)
    assert (last.investor_id, last.window_start) == ("inv-3", T0 + HOUR)
    # Both agents' counts and timings surface through the one step.
    assert intake.counts[("used", "esg.property-signals")] == 1
    assert intake.counts[("used", "investor.engagements")] == 2
    assert {stage for stage, _, _ in intake.stage_times} == {"catalog", "investor_windows"}


def test_the_same_as_the_catalog_then_the_windows():
    catalog, windows = PropertyCatalog(SETTINGS), InvestorWindows("acme", SETTINGS)
    enriched = [x for x in catalog.process(stream(), NOW)
                if not isinstance(x, dict) and x.ingested.event.action != "unsubscribe"]
    expected = windows.process(enriched, NOW) + windows.flush(NOW)
    intake = TenantIntake(SETTINGS)
    got = [x for x in intake.process(stream(), NOW) if isinstance(x, InvestorWindow)]
    got += intake.flush(NOW)
    assert [(w.investor_id, w.window_start, w.aggregate.n) for w in got] == \
        [(w.investor_id, w.window_start, w.aggregate.n) for w in expected]


def test_a_snapshot_resumes_and_a_catalog_saved_before_the_merge_is_kept():
    intake = TenantIntake(SETTINGS)
    intake.process(stream()[:2], NOW)
    resumed = TenantIntake.restore(pickle.loads(pickle.dumps(intake)), SETTINGS)
    assert resumed.stage_times == [] and resumed.windows is not None
    (window,) = resumed.flush(NOW)
    assert window.aggregate.n == 1

    catalog = PropertyCatalog(SETTINGS)
    catalog.process(stream()[:1], NOW)  # knows p-1
    upgraded = TenantIntake.restore(pickle.loads(pickle.dumps(catalog)), SETTINGS)
    upgraded.process(stream()[1:2], NOW)
    (window,) = upgraded.flush(NOW)
    assert window.aggregate.with_facts == 1
    with pytest.raises(TypeError, match="cannot resume"):
        TenantIntake.restore({"not": "a catalog"}, SETTINGS)
