"""TenantIntake: the catalog and the investor windows of one tenant, in one step."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from esg_leads.operators.intake import TenantIntake
from esg_leads.operators.investor_window import InvestorWindows
from esg_leads.operators.property_catalog import PropertyCatalog
from esg_leads.schemas.records import Ingested, InvestorWindow
from esg_leads.schemas.settings import Settings
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


def test_a_resumed_intake_follows_the_current_settings_for_new_windows_and_idle_closing():
    from datetime import datetime, timezone

    # A snapshot from before a settings field existed: its pickled settings lack it.
    old = TenantIntake(SETTINGS.model_copy(deep=True))
    old.catalog.process([signal("s-1", "p-1", T0, epc_band="A")], NOW)
    del old._settings.windows.__dict__["idle_close_after"]
    idle = Settings(windows={"length": "PT1H", "allowed_lateness": "PT15M", "stagger": False,
                             "idle_close_after": "PT10M"})
    intake = TenantIntake.restore(pickle.loads(pickle.dumps(old)), idle)
    wall = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    intake.process([engagement("e-1", T0 + timedelta(minutes=50), "p-1")], wall)
    assert intake.notify_at() is not None
    (window,) = intake.on_notify(wall + timedelta(minutes=26))
    assert window.aggregate.with_facts == 1  # the catalog came through the snapshot
    # ... and turning idle closing off again takes effect on the next resume.
    resumed = TenantIntake.restore(pickle.loads(pickle.dumps(intake)), SETTINGS)
    resumed.process([engagement("e-2", T0 + timedelta(minutes=70), "p-1")], wall)
    assert resumed.notify_at() is None


def test_snapshots_hold_no_review_signing_key() -> None:
    key = "intake-must-not-keep-this-signing-key-0001"
    settings = Settings.model_validate({"tenants": {"acme": {"review_signing_key": key}}})
    intake = TenantIntake(settings)
    snapshot = pickle.dumps(intake)
    assert key.encode() not in snapshot
    assert TenantIntake.restore(pickle.loads(snapshot), settings)._settings is settings


def test_a_source_going_stale_or_recovering_sends_the_status_to_the_shards_first():
    """The intake watches every event's time (a CRM outcome too, which the catalog never
    takes), and a feed alert is followed by the tenant's FeedStatus before the items the
    same event releases, so the investor stage judges them with it."""
    from esg_leads.schemas.records import FeedStatus
    from tests.operators.test_property_catalog import ingest

    settings = SETTINGS.model_copy(update={"sources": Settings.model_validate(
        {"sources": {"*": {"max_staleness": 3600}}}).sources})
    intake = TenantIntake(settings)
    assert intake.process([signal("s-1", "p-1", T0), signal("s-2", "p-2", T0, epc_band="B"),
                           signal("s-3", "p-3", T0 + timedelta(minutes=10),
                                  source="owner-portal")], NOW) == []
    outcome = ingest("crm.outcomes", {"tenant": "acme", "event_id": "o-1", "source": "crm",
                                      "event_time": (T0 + 2 * HOUR).isoformat(),
                                      "investor_id": "inv-1", "kind": "qualified"})
    out = intake.process([outcome], NOW)
    assert [x["kind"] if isinstance(x, dict) else type(x).__name__ for x in out] == \
        ["feed_stale", "feed_stale", "FeedStatus", "Ingested"]
    status = out[2]
    assert status.tenant == "acme" and status.read_at_s == (T0 + 2 * HOUR).timestamp()
    assert [(f.source, f.last_signal_s, f.catalog_share, f.gaps) for f in status.sources] == [
        ("epc-register", T0.timestamp(), 2 / 3, ()),
        ("owner-portal", (T0 + timedelta(minutes=10)).timestamp(), 1 / 3, ())]
    # The recovering signal restates p-3: epc-register's share grows to all three.
    back = T0 + 3 * HOUR
    out = intake.process([signal("s-4", "p-3", back)], NOW)
    assert [x["kind"] if isinstance(x, dict) else type(x).__name__ for x in out] == \
        ["feed_recovered", "FeedStatus"]
    (epc, portal) = out[1].sources
    assert (epc.last_signal_s, epc.gaps) == (back.timestamp(), ((T0.timestamp(), back.timestamp()),))
    assert (epc.catalog_share, portal.catalog_share) == (1.0, 0.0)
    assert isinstance(out[1], FeedStatus)
