"""The anti-greenwashing check: each ESG claim with and without the verified data behind it."""

from __future__ import annotations

from datetime import date, datetime, timezone

import orjson
import pytest

from esg_leads.operators.claims import CLAIMS_FILE, PREDICATES, ClaimCheck, load_claim_rules
from esg_leads.schemas.common import EPC_RANK
from esg_leads.schemas.outputs import Claim, ClaimKind, RemovedClaim
from esg_leads.schemas.records import PropertyFacts

TODAY = date(2026, 3, 1)
STALE_DAYS = 365
LOW_RISK_MAX = 30  # FeatureSettings.low_climate_risk_max
ENERGY_STAR_BAR = 75


def facts(property_id: str = "p-1", *, epc_band: str | None = "B",
          energy_star_score: int | None = None, certification: str | None = "BREEAM excellent",
          certified_verified: bool = True, max_climate_risk: int | None = 20,
          third_party: bool = True, data_as_of: date = date(2025, 10, 1),
          energy_intensity: float | None = 90.0) -> PropertyFacts:
    """A well-documented office: EPC B, verified BREEAM, low climate risk, fresh third-party data.

    ``high_epc`` and ``low_climate_risk`` are derived as the property catalog derives them.
    """
    rank = EPC_RANK[epc_band] if epc_band is not None else None
    high_epc = (rank is not None and rank <= EPC_RANK["B"]) or (
        rank is None and energy_star_score is not None and energy_star_score >= ENERGY_STAR_BAR)
    return PropertyFacts(
        property_id=property_id, tenant="acme", effective=datetime(2026, 1, 1, tzinfo=timezone.utc),
        country="GB", asset_class="office", value_eur=2e7, epc_band=epc_band, epc_rank=rank,
        energy_star_score=energy_star_score, certified=certification is not None,
        certified_verified=certified_verified, certification=certification,
        energy_intensity=energy_intensity, carbon_intensity=18.0, max_climate_risk=max_climate_risk,
        third_party=third_party, data_as_of_ordinal=data_as_of.toordinal(), high_epc=high_epc,
        low_climate_risk=max_climate_risk is not None and max_climate_risk <= LOW_RISK_MAX)


def check_one(claim: str, f: PropertyFacts | None = None, fund: dict | None = None):
    """Checks one claim about ``p-1``; returns ``(kept, removed)`` (at most one entry in all)."""
    facts_by_id = {"p-1": f} if f is not None else {}
    kept, removed = ClaimCheck(stale_days=STALE_DAYS).check(
        [("p-1", claim)], facts_by_id, TODAY.toordinal(), fund=fund or {})
    assert len(kept) + len(removed) == 1
    return kept, removed


def assert_kept(claim: str, f: PropertyFacts | None = None, fund: dict | None = None) -> str:
    kept, removed = check_one(claim, f, fund)
    assert removed == [], removed
    Claim.model_validate_json(orjson.dumps(kept[0]))  # the output contract
    assert kept[0]["claim"] == claim and kept[0]["property_id"] == "p-1"
    return kept[0]["evidence"]


def assert_removed(claim: str, f: PropertyFacts | None = None, fund: dict | None = None) -> str:
    kept, removed = check_one(claim, f, fund)
    assert kept == [], kept
    RemovedClaim.model_validate_json(orjson.dumps(removed[0]))
    assert removed[0]["claim"] == claim and removed[0]["property_id"] == "p-1"
    return removed[0]["reason"]


def failing_predicates(reason: str) -> set[str]:
    """The predicates a removal names: ``not supported: a, b (citation)``."""
    assert reason.startswith("not supported: ")
    named = reason.removeprefix("not supported: ").split(" (", 1)[0]
    return set(named.split(", "))


# ------------------------------------------------------------------ energy_efficient


@pytest.mark.parametrize("band", ["A+", "A", "B"])
def test_energy_efficient_stands_on_a_high_epc_with_fresh_third_party_data(band):
    evidence = assert_kept("energy_efficient", facts(epc_band=band))
    assert f"EPC {band}" in evidence
    assert "third-party" in evidence
    assert "data as of 2025-10-01" in evidence


def test_energy_efficient_stands_on_an_energy_star_score_at_the_bar():
    evidence = assert_kept("energy_efficient", facts(epc_band=None, energy_star_score=75))
    assert "ENERGY STAR 75" in evidence


ENERGY_EFFICIENT_FAILURES = [
    pytest.param(dict(epc_band="C"), "high_epc", id="EPC C is not high"),
    pytest.param(dict(epc_band="G"), "high_epc", id="EPC G is not high"),
    pytest.param(dict(epc_band=None, energy_star_score=74), "high_epc",
                 id="ENERGY STAR 74 is below the certification bar"),
    pytest.param(dict(epc_band=None), "high_epc", id="no EPC and no ENERGY STAR score"),
    pytest.param(dict(third_party=False), "third_party", id="self-reported data"),
    pytest.param(dict(data_as_of=date(2025, 2, 28)), "fresh", id="data 366 days old"),
]


@pytest.mark.parametrize("overrides, predicate", ENERGY_EFFICIENT_FAILURES)
def test_energy_efficient_is_removed_when_one_requirement_fails(overrides, predicate):
    reason = assert_removed("energy_efficient", facts(**overrides))
    assert failing_predicates(reason) == {predicate}
    assert "2024/825" in reason  # the citation of the rule that removed it


def test_data_exactly_stale_days_old_is_still_fresh():
    assert_kept("energy_efficient", facts(data_as_of=date(2025, 3, 1)))  # 365 days before TODAY


def test_a_removal_names_every_failing_requirement():
    reason = assert_removed("energy_efficient",
                            facts(epc_band="D", third_party=False, data_as_of=date(2020, 1, 1)))
    assert failing_predicates(reason) == {"high_epc", "third_party", "fresh"}


# ------------------------------------------------------------------------- certified


def test_certified_stands_on_a_verified_certification_with_fresh_data():
    evidence = assert_kept("certified", facts(certification="NABERS 5.5"))
    assert "NABERS 5.5 (verified)" in evidence
    assert "data as of 2025-10-01" in evidence


@pytest.mark.parametrize("overrides, predicate", [
    pytest.param(dict(certified_verified=False), "certified_verified",
                 id="a certification nobody verified"),
    pytest.param(dict(certification=None, certified_verified=False), "certified_verified",
                 id="no certification"),
    pytest.param(dict(data_as_of=date(2024, 1, 1)), "fresh", id="stale data"),
])
def test_certified_is_removed_without_verified_fresh_data(overrides, predicate):
    reason = assert_removed("certified", facts(**overrides))
    assert failing_predicates(reason) == {predicate}


def test_certified_does_not_need_third_party_energy_data():
    """The certifier's verification is the evidence; the signal's own source is not."""
    assert_kept("certified", facts(third_party=False, epc_band="E"))


# ------------------------------------------------------------------ low_climate_risk


def test_low_climate_risk_stands_on_a_low_third_party_fresh_score():
    evidence = assert_kept("low_climate_risk", facts(max_climate_risk=30))
    assert "max physical climate risk 30/100" in evidence
    assert "third-party" in evidence


@pytest.mark.parametrize("overrides, predicate", [
    pytest.param(dict(max_climate_risk=31), "low_climate_risk", id="risk just above the limit"),
    pytest.param(dict(max_climate_risk=None), "low_climate_risk", id="no climate-risk data"),
    pytest.param(dict(third_party=False), "third_party", id="self-reported risk"),
    pytest.param(dict(data_as_of=date(2024, 6, 1)), "fresh", id="stale risk data"),
])
def test_low_climate_risk_is_removed_when_one_requirement_fails(overrides, predicate):
    reason = assert_removed("low_climate_risk", facts(**overrides))
    assert failing_predicates(reason) == {predicate}


# ------------------------------------------------------------- fund disclosures (SFDR, SDR)

FUND_CLAIMS = [
    pytest.param("sfdr_article_8", {"sfdr": "article_8"}, True, id="art 8 claim, art 8 fund: kept"),
    pytest.param("sfdr_article_8", {"sfdr": "article_9"}, True, id="art 8 claim, art 9 fund: kept"),
    pytest.param("sfdr_article_8", {"sfdr": "article_6"}, False, id="art 8 claim, art 6 fund: removed"),
    pytest.param("sfdr_article_8", {"sfdr": None}, False, id="art 8 claim, undeclared fund: removed"),
    pytest.param("sfdr_article_8", {}, False, id="art 8 claim, no fund data: removed"),
    pytest.param("sfdr_article_9", {"sfdr": "article_9"}, True, id="art 9 claim, art 9 fund: kept"),
    pytest.param("sfdr_article_9", {"sfdr": "article_8"}, False, id="art 9 claim, art 8 fund: removed"),
    pytest.param("sfdr_article_9", {"sfdr": None}, False, id="art 9 claim, undeclared fund: removed"),
    pytest.param("uk_sdr_label", {"uk_sdr_label": "sustainability_focus"}, True,
                 id="SDR label claim, labelled fund: kept"),
    pytest.param("uk_sdr_label", {"uk_sdr_label": None}, False, id="SDR label claim, no label: removed"),
    pytest.param("uk_sdr_label", {"sfdr": "article_9"}, False,
                 id="SDR label claim, SFDR article 9 is not a UK label: removed"),
]


@pytest.mark.parametrize("claim, fund, kept", FUND_CLAIMS)
def test_fund_claims_stand_only_on_the_funds_own_disclosure(claim, fund, kept):
    if kept:
        assert_kept(claim, facts(), fund)
    else:
        reason = assert_removed(claim, facts(), fund)
        assert failing_predicates(reason) == {f"fund_{claim}"}


def test_fund_claim_evidence_names_the_disclosure():
    assert "SFDR article_9" in assert_kept("sfdr_article_8", facts(), {"sfdr": "article_9"})
    assert "article 9" in assert_kept("sfdr_article_9", facts(), {"sfdr": "article_9"})
    assert "sustainability_improvers" in assert_kept(
        "uk_sdr_label", facts(), {"uk_sdr_label": "sustainability_improvers"})


def test_fund_claims_do_not_depend_on_the_propertys_data():
    weak = facts(epc_band="G", certification=None, certified_verified=False, max_climate_risk=90,
                 third_party=False, data_as_of=date(2015, 1, 1))
    assert_kept("sfdr_article_9", weak, {"sfdr": "article_9"})


# ----------------------------------------------------------- properties with no facts


@pytest.mark.parametrize("claim", ["energy_efficient", "certified", "low_climate_risk"])
def test_a_property_claim_about_a_property_with_no_facts_is_removed(claim):
    assert_removed(claim, None)


# -------------------------------------------------------------------------- batches


def test_each_claim_is_judged_on_its_own_propertys_facts():
    good, bad = facts("p-good"), facts("p-bad", epc_band="F", third_party=False)
    kept, removed = ClaimCheck(stale_days=STALE_DAYS).check(
        [("p-good", "energy_efficient"), ("p-bad", "energy_efficient"),
         ("p-missing", "energy_efficient"), ("p-good", "low_climate_risk")],
        {"p-good": good, "p-bad": bad}, TODAY.toordinal(), fund={})
    assert [(k["property_id"], k["claim"]) for k in kept] == [
        ("p-good", "energy_efficient"), ("p-good", "low_climate_risk")]
    assert [r["property_id"] for r in removed] == ["p-bad", "p-missing"]


def test_the_stale_limit_is_the_checks_own():
    old = facts(data_as_of=date(2025, 12, 1))  # 90 days before TODAY
    strict = ClaimCheck(stale_days=30)
    kept, removed = strict.check([("p-1", "energy_efficient")], {"p-1": old},
                                 TODAY.toordinal(), fund={})
    assert kept == [] and failing_predicates(removed[0]["reason"]) == {"fresh"}


def test_rule_ids_name_each_claim_once():
    check = ClaimCheck(stale_days=STALE_DAYS)
    assert check.rule_ids([("p-1", "certified"), ("p-2", "certified"),
                           ("p-1", "energy_efficient")]) == ["claims:certified",
                                                              "claims:energy_efficient"]
    assert check.rule_ids([]) == []


# ------------------------------------------------------------------ the rules file


def test_claims_file_names_only_known_predicates_and_covers_every_claim_kind():
    rules = load_claim_rules(CLAIMS_FILE)
    assert set(rules) == {kind.value for kind in ClaimKind}
    for claim, (requires, citation) in rules.items():
        assert requires, claim
        assert set(requires) <= PREDICATES.keys(), claim
        assert citation.strip(), claim


def test_property_claims_all_require_fresh_data():
    rules = load_claim_rules(CLAIMS_FILE)
    for claim in ("energy_efficient", "certified", "low_climate_risk"):
        assert "fresh" in rules[claim][0], claim


def test_a_rules_file_naming_an_unknown_predicate_does_not_load(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text('[[claims]]\nclaim = "energy_efficient"\n'
                    'requires = ["high_epc", "vibes_good"]\ncitation = "none"\n')
    with pytest.raises(ValueError, match="vibes_good"):
        load_claim_rules(path)


def test_a_rules_file_with_known_predicates_loads(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text('[[claims]]\nclaim = "certified"\nrequires = ["certified_verified"]\n'
                    'citation = "test"\n')
    assert load_claim_rules(path) == {"certified": (["certified_verified"], "test")}
