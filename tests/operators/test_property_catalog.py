"""PropertyCatalog: point-in-time enrichment, catalog mix, duplicates, erasure."""

from __future__ import annotations

import math
import pickle
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from esg_leads.operators.property_catalog import PropertyCatalog, facts_from_signal, salted_id
from esg_leads.schemas.codec import decode_event, encode
from esg_leads.schemas.outputs import DeadLetter
from esg_leads.schemas.records import CatalogMix, EnrichedEngagement, Ingested
from esg_leads.schemas.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 3, 10, tzinfo=timezone.utc)
DAY = timedelta(days=1)
_offsets = iter(range(1_000_000))


def ingest(topic: str, payload: dict) -> Ingested:
    value = orjson.dumps(payload)
    event = decode_event(topic, value)
    key_field = {"esg.property-signals": "property_id"}.get(topic, "investor_id")
    return Ingested(event, topic, 0, next(_offsets), 1_772_000_000_000,
                    payload[key_field].encode(), value)


def signal(event_id: str, property_id: str, when: datetime, **facts) -> Ingested:
    payload = {
        "tenant": "acme", "event_id": event_id, "event_time": when.isoformat(),
        "source": "epc-register", "property_id": property_id, "country": "GB",
        "asset_class": "office", "floor_area_m2": 1200.0, "verification": "third_party",
        "data_as_of": "2026-01-15",
    }
    payload.update(facts)
    return ingest("esg.property-signals", payload)


def engagement(event_id: str, when: datetime, property_id: str | None = None,
               investor_id: str = "inv-1", action: str = "property_view") -> Ingested:
    payload = {
        "tenant": "acme", "event_id": event_id, "event_time": when.isoformat(),
        "source": "web", "investor_id": investor_id, "action": action, "channel": "web",
    }
    if property_id is not None:
        payload["property_id"] = property_id
    return ingest("investor.engagements", payload)


def erasure(event_id: str, investor_id: str, when: datetime) -> Ingested:
    return ingest("investor.erasure", {"tenant": "acme", "event_id": event_id,
                                       "event_time": when.isoformat(), "source": "dpo",
                                       "investor_id": investor_id})


def dead_letter_of(record: dict) -> DeadLetter:
    return DeadLetter.model_validate_json(encode(record))


@pytest.fixture
def catalog() -> PropertyCatalog:
    return PropertyCatalog(Settings())


# ------------------------------------------------------------- facts_from_signal

LOW_RISK = {"flood": 10, "wildfire": 5, "heat": 30}


def test_facts_from_a_full_signal():
    s = signal("s1", "p1", T0, epc_band="B", value_eur=2_500_000.0, climate_risk=LOW_RISK,
               certifications=[{"scheme": "BREEAM", "level": "very_good", "verified": False},
                               {"scheme": "LEED", "level": "gold", "verified": True}],
               energy_intensity_kwh_m2=95.0, carbon_intensity_kgco2e_m2=18.5).event
    facts = facts_from_signal(s, low_risk_max=30)
    assert facts.property_id == "p1" and facts.tenant == "acme" and facts.effective == T0
    assert (facts.epc_band, facts.epc_rank, facts.high_epc) == ("B", 2, True)
    assert facts.certified and facts.certified_verified
    assert facts.certification == "BREEAM very_good"
    assert facts.max_climate_risk == 30 and facts.low_climate_risk is True
    assert facts.third_party is True
    assert facts.data_as_of_ordinal == datetime(2026, 1, 15).toordinal()
    assert (facts.energy_intensity, facts.carbon_intensity, facts.value_eur) == (95.0, 18.5, 2_500_000.0)


def test_facts_from_a_bare_signal():
    facts = facts_from_signal(signal("s1", "p1", T0, epc_band="C",
                                     verification="self_reported").event, 30)
    assert (facts.epc_rank, facts.high_epc) == (3, False)
    assert not facts.certified and facts.certification is None
    assert facts.max_climate_risk is None and facts.low_climate_risk is False
    assert facts.third_party is False


def test_nabers_label_uses_stars():
    facts = facts_from_signal(signal("s1", "p1", T0, certifications=[
        {"scheme": "NABERS", "stars": 5.5, "verified": True}]).event, 30)
    assert facts.certification == "NABERS 5.5"


@pytest.mark.parametrize(("sap", "band", "high"), [(92, "A", True), (81, "B", True),
                                                  (80, "C", False), (20, "G", False)])
def test_sap_only_signal_gets_its_band_from_the_sap_table(sap, band, high):
    facts = facts_from_signal(signal("s1", "p1", T0, sap_score=sap).event, 30)
    assert (facts.epc_band, facts.high_epc) == (band, high)


def test_stated_band_wins_over_sap_score():
    facts = facts_from_signal(signal("s1", "p1", T0, epc_band="D", sap_score=95).event, 30)
    assert facts.epc_band == "D" and not facts.high_epc


@pytest.mark.parametrize(("star", "high"), [(74, False), (75, True), (100, True)])
def test_energy_star_75_counts_as_high_efficiency_without_an_epc(star, high):
    facts = facts_from_signal(signal("s1", "p1", T0, country="US", energy_star_score=star).event, 30)
    assert facts.epc_band is None and facts.epc_rank is None
    assert facts.high_epc is high


def test_energy_star_does_not_override_a_poor_epc():
    facts = facts_from_signal(signal("s1", "p1", T0, epc_band="E", energy_star_score=95).event, 30)
    assert facts.high_epc is False


@pytest.mark.parametrize(("worst", "limit", "low"), [(30, 30, True), (31, 30, False), (31, 40, True)])
def test_low_climate_risk_uses_the_worst_hazard_and_the_configured_limit(worst, limit, low):
    risk = {"flood": 0, "wildfire": worst, "heat": 2}
    facts = facts_from_signal(signal("s1", "p1", T0, climate_risk=risk).event, limit)
    assert facts.max_climate_risk == worst and facts.low_climate_risk is low


def test_salted_id_is_a_stable_keyed_pseudonym():
    a = salted_id("salt", "inv-1")
    assert a == salted_id("salt", "inv-1")
    assert a != salted_id("salt", "inv-2") and a != salted_id("other", "inv-1")
    assert "inv-1" not in a and len(a) == 32


# ------------------------------------------------------------ point-in-time

def test_engagement_sees_the_facts_in_force_at_its_event_time(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="D"))
    catalog.apply_signal(signal("s2", "p1", T0 + 10 * DAY, epc_band="B"))  # retrofit, later
    before = catalog.enrich(engagement("v1", T0 + 5 * DAY, "p1"))
    after = catalog.enrich(engagement("v2", T0 + 11 * DAY, "p1"))
    assert before.facts.epc_band == "D" and not before.facts.high_epc
    assert after.facts.epc_band == "B" and after.facts.high_epc


def test_a_later_upgrade_does_not_change_an_earlier_view(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="D"))
    # The upgrade is processed first, the older view arrives afterwards.
    catalog.apply_signal(signal("s2", "p1", T0 + 10 * DAY, epc_band="A"))
    view = catalog.enrich(engagement("v1", T0 + 2 * DAY, "p1"))
    assert view.facts.epc_band == "D"
    assert view.facts.effective == T0


def test_an_out_of_order_older_signal_is_inserted_in_order(catalog):
    catalog.apply_signal(signal("s3", "p1", T0 + 20 * DAY, epc_band="A"))
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="E"))
    catalog.apply_signal(signal("s2", "p1", T0 + 10 * DAY, epc_band="C"))
    bands = [catalog.facts_as_of("p1", T0 + d * DAY).epc_band for d in (0, 5, 10, 15, 25)]
    assert bands == ["E", "E", "C", "C", "A"]
    assert catalog.facts_as_of("p1", T0 - DAY) is None  # before the first version
    # The latest version is still the newest in event time, so the mix counts it.
    assert catalog.mix.high_epc == 1.0


def test_enrichment_at_the_exact_signal_time_uses_that_signal(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="G"))
    catalog.apply_signal(signal("s2", "p1", T0 + DAY, epc_band="A"))
    assert catalog.enrich(engagement("v1", T0 + DAY, "p1")).facts.epc_band == "A"


def test_offsets_are_compared_as_instants(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="G"))
    catalog.apply_signal(signal("s2", "p1", T0 + timedelta(hours=2), epc_band="A"))
    # 10:30+01:00 is 09:30Z: before the upgrade at 11:00Z.
    local = datetime(2026, 3, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert catalog.enrich(engagement("v1", local, "p1")).facts.epc_band == "G"


def test_unknown_property_and_no_property_give_no_facts(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="A"))
    unknown = catalog.enrich(engagement("v1", T0 + DAY, "p-unknown"))
    none = catalog.enrich(engagement("v2", T0 + DAY, None, action="email_open"))
    assert isinstance(unknown, EnrichedEngagement) and unknown.facts is None
    assert none.facts is None
    assert unknown.mix == catalog.mix  # the mix still rides along


def test_versions_per_property_are_bounded(catalog):
    from esg_leads.operators.property_catalog import MAX_VERSIONS
    for i in range(MAX_VERSIONS + 4):
        catalog.apply_signal(signal(f"s{i}", "p1", T0 + i * DAY, epc_band="C" if i % 2 else "B"))
    assert catalog.facts_as_of("p1", T0 + 3 * DAY) is None  # the oldest were dropped
    assert catalog.facts_as_of("p1", T0 + 100 * DAY).effective == T0 + (MAX_VERSIONS + 3) * DAY
    assert len(catalog) == 1


# ------------------------------------------------------------------ catalog mix

def test_mix_of_an_empty_catalog():
    assert PropertyCatalog(Settings()).mix == CatalogMix(0, 0.0, 0.0, 0.0, None)


def test_mix_shares_and_mean_log_value(catalog):
    cert = [{"scheme": "LEED", "level": "gold", "verified": True}]
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="A", value_eur=1e6, certifications=cert,
                                climate_risk=LOW_RISK))
    catalog.apply_signal(signal("s2", "p2", T0, epc_band="D", value_eur=4e6))
    catalog.apply_signal(signal("s3", "p3", T0, epc_band="B", climate_risk=LOW_RISK))
    catalog.apply_signal(signal("s4", "p4", T0, epc_band="F"))
    mix = catalog.mix
    assert mix.properties == 4
    assert mix.high_epc == pytest.approx(2 / 4)
    assert mix.certified == pytest.approx(1 / 4)
    assert mix.low_climate_risk == pytest.approx(2 / 4)
    assert mix.log_value == pytest.approx((math.log(1e6) + math.log(4e6)) / 2)


def test_mix_updates_when_a_propertys_latest_version_changes(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="D", value_eur=1e6))
    catalog.apply_signal(signal("s2", "p2", T0, epc_band="D"))
    assert catalog.mix.high_epc == 0.0 and catalog.mix.properties == 2
    catalog.apply_signal(signal("s3", "p1", T0 + DAY, epc_band="A", value_eur=9e6))
    mix = catalog.mix
    assert mix.properties == 2  # a new version, not a new property
    assert mix.high_epc == pytest.approx(0.5)
    assert mix.log_value == pytest.approx(math.log(9e6))  # the old valuation no longer counts
    catalog.apply_signal(signal("s4", "p1", T0 + 2 * DAY, epc_band="E"))  # value now unknown
    assert catalog.mix.high_epc == 0.0
    assert catalog.mix.log_value is None


def test_mix_ignores_an_older_version_arriving_late(catalog):
    catalog.apply_signal(signal("s2", "p1", T0 + DAY, epc_band="A"))
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="G"))
    assert catalog.mix.properties == 1 and catalog.mix.high_epc == 1.0


def test_enriched_engagement_carries_the_mix_at_enrichment(catalog):
    catalog.apply_signal(signal("s1", "p1", T0, epc_band="A"))
    first = catalog.enrich(engagement("v1", T0 + DAY, "p1"))
    catalog.apply_signal(signal("s2", "p2", T0, epc_band="G"))
    second = catalog.enrich(engagement("v2", T0 + DAY, "p1"))
    assert first.mix.high_epc == 1.0 and second.mix.high_epc == 0.5


# ------------------------------------------------------------------ process()

def test_process_routes_each_topic(catalog):
    out = catalog.process([
        signal("s1", "p1", T0, epc_band="A"),
        engagement("v1", T0 + DAY, "p1"),
        erasure("x1", "inv-9", T0),
        engagement("v2", T0 + DAY, "p1", investor_id="inv-2"),
    ], NOW)
    # Signals and erasures produce nothing; each engagement comes out enriched, in order.
    assert [type(o).__name__ for o in out] == ["EnrichedEngagement", "EnrichedEngagement"]
    assert [o.ingested.event.event_id for o in out] == ["v1", "v2"]
    assert out[0].facts.epc_band == "A"
    assert catalog.counts[("used", "esg.property-signals")] == 1


def test_a_topic_the_catalog_does_not_handle_becomes_a_processing_error(catalog):
    outcome = ingest("crm.outcomes", {"tenant": "acme", "event_id": "o1", "event_time": T0.isoformat(),
                                      "source": "crm", "investor_id": "inv-1", "kind": "qualified"})
    out = catalog.process([outcome, engagement("v1", T0, "p1")], NOW)
    letter = dead_letter_of(out[0])
    assert letter.reason == "processing_error" and "crm.outcomes" in letter.detail
    assert letter.value_b64 is not None
    assert isinstance(out[1], EnrichedEngagement)  # the flow goes on


def test_duplicate_signal_and_engagement_go_to_the_dlq(catalog):
    s = signal("s1", "p1", T0, epc_band="A")
    v = engagement("v1", T0 + DAY, "p1")
    assert len(catalog.process([s, v], NOW)) == 1
    out = catalog.process([s, v], NOW)
    assert [o["reason"] for o in out] == ["duplicate", "duplicate"]
    for record in out:
        letter = dead_letter_of(record)
        assert letter.value_b64 is not None  # a duplicate keeps its bytes
        assert letter.tenant == "acme"
    assert [o["event_id"] for o in out] == ["s1", "v1"]
    assert catalog.mix.properties == 1  # the duplicate signal was not counted twice
    assert catalog.counts[("used", "esg.property-signals")] == 1


def test_erased_investors_engagements_are_dead_lettered_without_payload(catalog):
    catalog.process([signal("s1", "p1", T0, epc_band="A"), erasure("x1", "inv-1", T0)], NOW)
    out = catalog.process([engagement("v1", T0 + DAY, "p1", investor_id="inv-1"),
                           engagement("v2", T0 + DAY, "p1", investor_id="inv-2")], NOW)
    assert isinstance(out[0], dict) and isinstance(out[1], EnrichedEngagement)
    letter = dead_letter_of(out[0])
    assert letter.reason == "erased_subject"
    assert letter.value_b64 is None
    assert catalog.is_erased("inv-1") and not catalog.is_erased("inv-2")


def test_erasure_is_remembered_only_as_a_salted_hash(catalog):
    catalog.erase("investor-with-a-very-distinctive-id")
    blob = pickle.dumps(catalog)
    assert b"investor-with-a-very-distinctive-id" not in blob
    assert catalog.is_erased("investor-with-a-very-distinctive-id")


def test_catalog_survives_a_snapshot(catalog):
    catalog.process([signal("s1", "p1", T0, epc_band="D"), signal("s2", "p1", T0 + 2 * DAY, epc_band="A"),
                     signal("s3", "p2", T0, epc_band="F")], NOW)
    copy = pickle.loads(pickle.dumps(catalog))
    for c in (catalog, copy):
        out = c.process([engagement("v1", T0 + DAY, "p1"), signal("s1", "p1", T0, epc_band="D")], NOW)
        assert out[0].facts.epc_band == "D" and out[1]["reason"] == "duplicate"
        assert c.mix == CatalogMix(2, 0.5, 0.0, 0.0, None)
