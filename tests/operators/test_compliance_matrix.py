"""Compliance decisions as a matrix: region x channel x subscriber x consent x do-not-call.

The oracle is ``LAW`` below: one row per contact rule, written from the regulation it
cites (not read from the packs), saying which consent the law asks for and whether a
do-not-call register applies. ``expected`` turns a row into a decision with the same
few lines a compliance officer would use; every rule of every pack is then checked in
both directions (allowed where it must be, blocked where it must be) for every consent
status, with and without a register listing.

Where the law leaves a choice to member states or reads both ways, the row takes the
stricter reading and says so (EU phone/SMS): contacting with a weaker basis than the
law asks is the legally risky direction, and those are exactly the pack edits that
must fail here.
"""

from __future__ import annotations

import tomllib
from typing import NamedTuple

import pytest

from esg_leads.operators.compliance import PACK_DIR, ComplianceAgent

CONSENT = "consent"  # opted in
CONSENT_OR_SOFT = "consent_or_soft_opt_in"  # opted in, or an existing customer relationship
NOT_OPTED_OUT = "not_opted_out"  # anything but an objection
STATUSES = ("opted_in", "soft_opt_in", "none", "opted_out")


class Law(NamedTuple):
    rule_id: str
    country: str  # a country the pack covers
    channel: str
    subscriber: str
    requires: str
    register: bool  # a do-not-call register applies (TPS/CTPS, National DNC)
    cites: str  # the provision this row is written from


LAW = [
    # ---- UK: PECR 2003 and UK GDPR.
    Law("UK-PECR-22-email-individual", "GB", "email", "individual", CONSENT_OR_SOFT, False,
        "PECR reg. 22(2) consent; reg. 22(3) soft opt-in for existing customers; no register for e-mail"),
    Law("UK-PECR-22-email-corporate", "GB", "email", "corporate", NOT_OPTED_OUT, False,
        "PECR reg. 22 protects individual subscribers only; the TPS/CTPS cover calls, not e-mail"),
    Law("UK-PECR-22-sms-individual", "GB", "sms", "individual", CONSENT_OR_SOFT, False,
        "PECR reg. 22: texts are electronic mail, soft opt-in reg. 22(3); reg. 21 (TPS) is live calls only"),
    Law("UK-PECR-22-sms-corporate", "GB", "sms", "corporate", NOT_OPTED_OUT, False,
        "PECR reg. 22 protects individual subscribers only; no register for texts"),
    Law("UK-PECR-21-phone-individual", "GB", "phone", "individual", NOT_OPTED_OUT, True,
        "PECR reg. 21(1)(b): live calls allowed unless the number is on the TPS; 21(4) consent overrides"),
    Law("UK-PECR-21-phone-corporate", "GB", "phone", "corporate", NOT_OPTED_OUT, True,
        "PECR reg. 21(1)(b): corporate numbers on the CTPS may not be called"),
    # ---- EU: ePrivacy Directive 2002/58/EC art. 13, GDPR art. 21.
    Law("EU-ePrivacy-13(1)-email-individual", "DE", "email", "individual", CONSENT_OR_SOFT, False,
        "ePrivacy art. 13(1) prior consent; art. 13(2) soft opt-in for own similar products"),
    Law("EU-ePrivacy-13(5)-email-corporate", "FR", "email", "corporate", NOT_OPTED_OUT, False,
        "ePrivacy art. 13(5): legal persons left to member states; the common opt-out reading"),
    Law("EU-ePrivacy-13(1)-sms-individual", "IE", "sms", "individual", CONSENT, False,
        "ePrivacy art. 13(1) (SMS is electronic mail, recital 40); stricter reading: no soft opt-in"),
    Law("EU-ePrivacy-13(5)-sms-corporate", "NL", "sms", "corporate", CONSENT, False,
        "ePrivacy art. 13(1) and (5): texts to company numbers need consent (stricter reading)"),
    Law("EU-ePrivacy-13(3)-phone-individual", "DE", "phone", "individual", CONSENT, True,
        "ePrivacy art. 13(3): member-state choice, opt-in taken (DE UWG s. 7(2) no. 1); "
        "soft opt-in is an e-mail concept and never covers calls"),
    Law("EU-ePrivacy-13(3)-phone-corporate", "ES", "phone", "corporate", NOT_OPTED_OUT, True,
        "ePrivacy art. 13(3) and (5): presumed interest of businesses; national Robinson lists"),
    # ---- US: CAN-SPAM, TCPA (47 USC 227, 47 CFR 64.1200), TSR (16 CFR 310).
    Law("US-CANSPAM-email-individual", "US", "email", "individual", NOT_OPTED_OUT, False,
        "CAN-SPAM 15 USC 7704(a)(3)-(4): opt-out regime; the DNC registry covers calls, not e-mail"),
    Law("US-CANSPAM-email-corporate", "US", "email", "corporate", NOT_OPTED_OUT, False,
        "CAN-SPAM 15 USC 7704(a)(3)-(4): the same opt-out regime for business addresses"),
    Law("US-TCPA-sms-individual", "US", "sms", "individual", CONSENT, False,
        "TCPA 47 USC 227(b)(1)(A)(iii), 47 CFR 64.1200(a)(2): prior express written consent"),
    Law("US-TCPA-sms-corporate", "US", "sms", "corporate", CONSENT, False,
        "TCPA 47 USC 227(b)(1)(A)(iii) protects every wireless number, business or not; "
        "US law has no soft opt-in"),
    Law("US-TSR-phone-individual", "US", "phone", "individual", NOT_OPTED_OUT, True,
        "47 CFR 64.1200(c)(2), 16 CFR 310.4(b)(1)(iii)(B): National DNC Registry, "
        "express written agreement overrides"),
    Law("US-TSR-phone-corporate", "US", "phone", "corporate", NOT_OPTED_OUT, False,
        "16 CFR 310.6(b)(7): business-to-business calls exempt; 64.1200(c)(2) is residential only"),
    # ---- SG: PDPA 2012 Part 9 (Do Not Call provisions), Spam Control Act 2007.
    Law("SG-SCA-11-email-individual", "SG", "email", "individual", NOT_OPTED_OUT, False,
        "Spam Control Act s.11, Second Schedule: unsubscribe regime; the DNC Register "
        "covers Singapore telephone numbers (calls, texts, fax), not e-mail"),
    Law("SG-SCA-11-email-corporate", "SG", "email", "corporate", NOT_OPTED_OUT, False,
        "Spam Control Act s.11: the same unsubscribe regime for business addresses"),
    Law("SG-PDPA-43-sms-individual", "SG", "sms", "individual", NOT_OPTED_OUT, True,
        "PDPA s.43(1): check the DNC Register before a specified message (a text) to a "
        "Singapore number; s.43(3) clear and unambiguous consent overrides"),
    Law("SG-PDPA-8thSch-sms-corporate", "SG", "sms", "corporate", NOT_OPTED_OUT, False,
        "PDPA Eighth Schedule: a message to an organisation for its own purposes is not a "
        "specified message, so the register does not apply"),
    Law("SG-PDPA-43-phone-individual", "SG", "phone", "individual", NOT_OPTED_OUT, True,
        "PDPA s.43(1): voice calls to registered Singapore numbers need a register check; "
        "s.43(3) consent overrides"),
    Law("SG-PDPA-8thSch-phone-corporate", "SG", "phone", "corporate", NOT_OPTED_OUT, False,
        "PDPA Eighth Schedule: business-to-business calls are outside the DNC provisions"),
]
BY_ID = {law.rule_id: law for law in LAW}
CASES = [(law, status, listed) for law in LAW for status in STATUSES for listed in (False, True)]


def expected(law: Law, status: str, listed: bool) -> tuple[bool, str]:
    """(allowed?, why) for one channel, from the row alone."""
    if status == "opted_out":
        return False, "objection"
    meets = {CONSENT: status == "opted_in",
             CONSENT_OR_SOFT: status in ("opted_in", "soft_opt_in"),
             NOT_OPTED_OUT: True}[law.requires]
    if not meets:
        return False, "consent"
    if law.register and listed and status != "opted_in":
        return False, "register"
    return True, "allowed"


def case_id(case) -> str:
    law, status, listed = case
    return f"{law.rule_id}|{status}|{'dnc' if listed else 'no-dnc'}"


@pytest.fixture(scope="module")
def agent() -> ComplianceAgent:
    return ComplianceAgent()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_rule_decides_as_the_law_it_cites(agent, case):
    law, status, listed = case
    allowed, why = expected(law, status, listed)
    verdict = agent.channels(law.country, law.subscriber, {law.channel: status}, listed)
    assert law.rule_id in verdict.rules_applied
    blocks = [b for b in verdict.blocked if b["channel"] == law.channel]
    if allowed:
        assert law.channel in verdict.allowed and blocks == [], law.cites
        return
    assert law.channel not in verdict.allowed, law.cites
    assert len(blocks) == 1 and blocks[0]["rule_id"] == law.rule_id
    reason = blocks[0]["reason"]
    assert reason.startswith({"objection": "objection honoured: ",
                              "consent": f"requires {law.requires.replace('_', ' ')} (",
                              "register": "number on a do-not-call register ("}[why]), reason
    if why == "consent":
        assert reason.endswith(f"); consent is {status}")


def test_every_rule_of_every_pack_has_exactly_one_row():
    ids = []
    for path in sorted(PACK_DIR.glob("*.toml")):
        ids += [r["id"] for r in tomllib.loads(path.read_text()).get("rules", [])]
    assert sorted(ids) == sorted(BY_ID)


def _citation(rule_id: str) -> str:
    for path in sorted(PACK_DIR.glob("*.toml")):
        for rule in tomllib.loads(path.read_text()).get("rules", []):
            if rule["id"] == rule_id:
                return rule["citation"]
    raise KeyError(rule_id)


# ---- The pack edits no test used to notice (issue 21), stated as behaviour.

@pytest.mark.parametrize("rule_id", ["EU-ePrivacy-13(3)-phone-individual",
                                     "EU-ePrivacy-13(5)-sms-corporate",
                                     "US-TCPA-sms-corporate"])
def test_soft_opt_in_is_not_consent_for_calls_eu_company_texts_or_tcpa_texts(agent, rule_id):
    law = BY_ID[rule_id]
    verdict = agent.channels(law.country, law.subscriber, {law.channel: "soft_opt_in"}, False)
    blocks = [b for b in verdict.blocked if b["channel"] == law.channel]
    assert law.channel not in verdict.allowed
    assert [b["rule_id"] for b in blocks] == [rule_id]
    assert blocks[0]["reason"] == f"requires consent ({_citation(rule_id)}); consent is soft_opt_in"


@pytest.mark.parametrize("rule_id", ["UK-PECR-22-sms-individual", "UK-PECR-22-sms-corporate",
                                     "UK-PECR-22-email-corporate",
                                     "EU-ePrivacy-13(1)-email-individual",
                                     "EU-ePrivacy-13(5)-email-corporate"])
def test_a_do_not_call_listing_never_blocks_texts_or_emails_where_only_calls_are_registered(
        agent, rule_id):
    law = BY_ID[rule_id]
    status = "soft_opt_in" if law.requires == CONSENT_OR_SOFT else "none"
    verdict = agent.channels(law.country, law.subscriber, {law.channel: status}, True)
    assert law.channel in verdict.allowed
    assert [b for b in verdict.blocked if b["channel"] == law.channel] == []


def test_a_business_line_in_the_us_may_be_called_despite_a_registry_listing(agent):
    verdict = agent.channels("US", "corporate", {"phone": "none"}, True)
    assert "phone" in verdict.allowed


# ---- Whole verdicts for one investor: every channel at once, in pack order.

def test_a_uk_individual_with_mixed_consents(agent):
    verdict = agent.channels("GB", "individual",
                             {"email": "soft_opt_in", "sms": "opted_out", "phone": "none"}, True)
    assert verdict.pack == "UK" and verdict.unsure is None
    assert verdict.allowed == ["email"]
    assert [(b["channel"], b["rule_id"]) for b in verdict.blocked] == [
        ("sms", "UK-PECR-22-sms-individual"), ("phone", "UK-PECR-21-phone-individual")]
    assert verdict.blocked[0]["reason"] == (
        "objection honoured: UK GDPR art. 21(3) and PECR reg. 22(3)(c)/21(1)(b): "
        "objections are honoured at once")
    assert verdict.blocked[1]["reason"] == (
        "number on a do-not-call register (PECR 2003 reg. 21(1)(b): not to numbers on the TPS register)")
    assert verdict.rules_applied == ["UK-PECR-22-email-individual", "UK-PECR-22-sms-individual",
                                     "UK-PECR-21-phone-individual"]


def test_a_us_company_without_consents(agent):
    verdict = agent.channels("US", "corporate", {}, False)
    assert verdict.pack == "US"
    assert verdict.allowed == ["email", "phone"]
    assert verdict.blocked == [{
        "channel": "sms", "rule_id": "US-TCPA-sms-corporate",
        "reason": "requires consent (47 CFR 64.1200(a)(2): prior express written consent); "
                  "consent is none"}]
    assert verdict.rules_applied == ["US-CANSPAM-email-corporate", "US-TCPA-sms-corporate",
                                     "US-TSR-phone-corporate"]


@pytest.mark.parametrize("country", ["AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR",
                                     "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL",
                                     "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO"])
def test_every_eea_country_is_decided_by_the_eu_pack(agent, country):
    assert agent.channels(country, "individual", {}, False).pack == "EU"


@pytest.mark.parametrize("country", ["CH", "CA", "AU", "JP", ""])
def test_a_country_without_a_pack_is_unsure(agent, country):
    verdict = agent.channels(country, "individual", {"email": "opted_in"}, False)
    assert verdict.pack is None and verdict.allowed == [] and verdict.blocked == []
    assert verdict.unsure == f"no rule pack for jurisdiction {country!r}"


def test_a_verdict_is_computed_once_per_input_and_shared(agent):
    fresh = ComplianceAgent()
    first = fresh.channels("GB", "corporate", {"email": "none"}, False)
    assert fresh.channels("GB", "corporate", {"email": "none"}, False) is first
    assert fresh.channels("GB", "corporate", {"email": "none"}, True) is not first


def test_a_long_citation_is_cut_to_256_characters():
    from esg_leads.schemas.rules import RulePack
    rule = {"id": "X-1", "channel": "email", "subscriber": "individual", "requires": "consent",
            "do_not_call": True, "citation": "c" * 400}
    pack = RulePack(pack="UK", name="t", jurisdictions=["GB"], opt_out="o" * 400, rules=[rule],
                    contact={"time_zones": {"GB": ["Europe/London"]}})
    agent = ComplianceAgent({"GB": pack})
    for status in ("opted_out", "none"):
        reason = agent.channels("GB", "individual", {"email": status}, False).blocked[0]["reason"]
        assert len(reason) == 256
    rule["requires"] = "not_opted_out"
    agent = ComplianceAgent({"GB": RulePack(pack="UK", name="t", jurisdictions=["GB"],
                                            opt_out="o", rules=[rule],
                                            contact=pack.contact)})
    assert len(agent.channels("GB", "individual", {}, True).blocked[0]["reason"]) == 256


def test_a_lead_without_a_profile_is_unsure_and_says_why(agent):
    verdict = agent.channels("GB", None, {"email": "opted_in"}, False)
    assert verdict.pack == "UK" and verdict.allowed == [] and verdict.rules_applied == []
    assert verdict.unsure == "subscriber type unknown (no investor profile)"
    record = agent.verdict(verdict, [], [])
    assert record["verdict"] == "unsure" and record["agent_version"] == "compliance/1"
    assert record["rules_applied"] == ["unsure: subscriber type unknown (no investor profile)"]
