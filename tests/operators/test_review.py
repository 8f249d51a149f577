"""review_reasons: when a person must look before the CRM does, and what they should check."""

from __future__ import annotations

from datetime import date, datetime, timezone

import orjson
import pytest

from esg_leads.operators.review import CONFLICTING_INTENSITY_KWH_M2, ESG_DRIVES, review_reasons
from esg_leads.schemas.outputs import ReviewReason
from esg_leads.schemas.records import PropertyFacts
from esg_leads.schemas.settings import LifecycleSettings

TODAY = date(2026, 3, 1)
STALE_DAYS = 365
SETTINGS = LifecycleSettings()  # threshold 0.5, review band 0.05, max interval width 0.5


def facts(property_id: str = "p-1", *, third_party: bool = True,
          data_as_of: date = date(2025, 12, 1), high_epc: bool = True,
          energy_intensity: float | None = 90.0) -> PropertyFacts:
    """An EPC B office with fresh, third-party data whose metered use fits its band."""
    return PropertyFacts(
        property_id=property_id, tenant="acme", effective=datetime(2026, 1, 1, tzinfo=timezone.utc),
        country="GB", asset_class="office", value_eur=2e7,
        epc_band="B" if high_epc else "E", epc_rank=2 if high_epc else 5, energy_star_score=None,
        certified=False, certified_verified=False, certification=None,
        energy_intensity=energy_intensity, carbon_intensity=18.0, max_climate_risk=20,
        third_party=third_party, data_as_of_ordinal=data_as_of.toordinal(), high_epc=high_epc,
        low_climate_risk=True)


def clear_case(**overrides) -> dict:
    """A lead nobody needs to look at: confidently qualified, modest ticket, sound ESG data."""
    kwargs = dict(probability=0.9, low=0.8, high=0.95, ticket_max=1e6, ticket_limit=5e7,
                  esg_weight=0.6, facts=[facts()], today=TODAY.toordinal(),
                  stale_days=STALE_DAYS, compliance_unsure=None, needs_info=False,
                  settings=SETTINGS)
    kwargs.update(overrides)
    return kwargs


def codes(**overrides) -> list[str]:
    return [r["code"] for r in review_reasons(**clear_case(**overrides))]


def test_a_clear_case_needs_no_review():
    assert codes() == []


# -------------------------------------------------------------- each reason, alone

EACH_REASON = [
    pytest.param("ambiguous_score", dict(probability=0.53, low=0.45, high=0.6),
                 id="score just above the threshold"),
    pytest.param("ambiguous_score", dict(probability=0.47, low=0.4, high=0.55),
                 id="score just below the threshold"),
    pytest.param("wide_interval", dict(low=0.3, high=0.95), id="interval 0.65 wide"),
    pytest.param("ticket_over_limit", dict(ticket_max=6e7), id="ticket above the tenant limit"),
    pytest.param("stale_esg_data", dict(facts=[facts(data_as_of=date(2024, 12, 1))]),
                 id="ESG data 455 days old"),
    pytest.param("self_reported_esg_data", dict(facts=[facts(third_party=False)]),
                 id="ESG data the owner reported"),
    pytest.param("conflicting_esg_data", dict(facts=[facts(energy_intensity=400.0)]),
                 id="EPC B yet 400 kWh/m2/yr metered"),
    pytest.param("compliance_unsure", dict(compliance_unsure="no rule pack for 'AU'"),
                 id="compliance could not decide"),
    pytest.param("reviewer_needs_info", dict(needs_info=True), id="a reviewer asked for more"),
]


@pytest.mark.parametrize("code, overrides", EACH_REASON)
def test_each_reason_alone(code, overrides):
    reasons = review_reasons(**clear_case(**overrides))
    assert [r["code"] for r in reasons] == [code]
    reason = ReviewReason.model_validate_json(orjson.dumps(reasons[0]))
    assert reason.detail.strip()
    assert reason.check.strip(), "the reviewer must be told what to verify"


def test_every_reason_at_once_validates_and_says_what_to_check():
    reasons = review_reasons(**clear_case(
        probability=0.51, low=0.1, high=0.9, ticket_max=1e8,
        facts=[facts("p-old", data_as_of=date(2020, 1, 1)), facts("p-own", third_party=False),
               facts("p-odd", energy_intensity=300.0)],
        compliance_unsure="subscriber type unknown", needs_info=True))
    assert sorted(r["code"] for r in reasons) == sorted(
        ReviewReason.model_fields["code"].annotation.__args__)
    checks = set()
    for raw in reasons:
        reason = ReviewReason.model_validate_json(orjson.dumps(raw))
        assert reason.check.strip()
        checks.add(reason.check)
    assert len(checks) == len(reasons), "each reason gives its own instruction"


# ---------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("probability, ambiguous", [
    (0.46, True), (0.5, True), (0.54, True), (0.44, False), (0.56, False), (0.1, False)])
def test_the_ambiguous_band_surrounds_the_threshold(probability, ambiguous):
    found = "ambiguous_score" in codes(probability=probability, low=probability - 0.1,
                                       high=min(1.0, probability + 0.1))
    assert found is ambiguous


@pytest.mark.parametrize("probability", [
    pytest.param(0.45, id="lower edge"),
    pytest.param(0.55, id="upper edge"),
])
def test_both_edges_of_the_ambiguous_band_are_inside_it(probability):
    assert "ambiguous_score" in codes(probability=probability, low=probability - 0.1,
                                      high=probability + 0.1)


@pytest.mark.parametrize("low, high", [
    pytest.param(0.25, 0.75, id="0.25-0.75"),
    pytest.param(0.1, 0.6, id="0.1-0.6"),
    pytest.param(0.3, 0.8, id="0.3-0.8"),
])
def test_an_interval_exactly_the_maximum_width_is_never_too_wide(low, high):
    assert "wide_interval" not in codes(probability=0.9, low=low, high=high)


def test_the_band_follows_the_settings():
    settings = LifecycleSettings(qualification_threshold=0.7, review_band=0.1)
    assert codes(probability=0.65, low=0.6, high=0.7, settings=settings) == ["ambiguous_score"]
    assert codes(probability=0.5, low=0.45, high=0.55, settings=settings) == []


def test_a_ticket_at_the_limit_or_unknown_is_not_over_it():
    assert codes(ticket_max=5e7) == []
    assert codes(ticket_max=None) == []


def test_data_exactly_stale_days_old_is_not_stale():
    assert codes(facts=[facts(data_as_of=date(2025, 3, 1))]) == []  # 365 days before TODAY
    assert codes(facts=[facts(data_as_of=date(2025, 2, 28))]) == ["stale_esg_data"]


def test_energy_use_at_the_conflict_bound_is_not_a_conflict():
    assert codes(facts=[facts(energy_intensity=CONFLICTING_INTENSITY_KWH_M2)]) == []
    assert codes(facts=[facts(energy_intensity=None)]) == []


def test_high_energy_use_without_a_high_epc_is_no_conflict():
    assert codes(facts=[facts(high_epc=False, energy_intensity=400.0)]) == []


def test_esg_reasons_name_the_properties_concerned():
    [reason] = review_reasons(**clear_case(
        facts=[facts("p-ok"), facts("p-stale-1", data_as_of=date(2023, 1, 1)),
               facts("p-stale-2", data_as_of=date(2024, 1, 1))]))
    assert reason["code"] == "stale_esg_data"
    assert "p-stale-1" in reason["detail"] and "p-stale-2" in reason["detail"]
    assert "p-ok" not in reason["detail"]


# ------------------------------------------------- ESG reasons only when ESG decides

ESG_PROBLEMS = [
    pytest.param([facts(data_as_of=date(2020, 1, 1))], id="stale"),
    pytest.param([facts(third_party=False)], id="self-reported"),
    pytest.param([facts(energy_intensity=400.0)], id="conflicting"),
]


@pytest.mark.parametrize("problem", ESG_PROBLEMS)
def test_esg_data_problems_matter_only_when_esg_drives_the_decision(problem):
    assert codes(facts=problem, esg_weight=ESG_DRIVES) != []
    assert codes(facts=problem, esg_weight=ESG_DRIVES - 0.01) == []
    assert codes(facts=problem, esg_weight=0.0) == []


def test_no_esg_reason_without_facts_however_much_esg_weighs():
    assert codes(facts=[], esg_weight=1.0) == []


def test_an_empty_compliance_note_is_no_reason():
    assert codes(compliance_unsure="") == []
