"""ComplianceAgent: the contact rules of each jurisdiction's rule pack, and the verdict.

Each table row states, in words, what the public rule says; the row then checks that
the agent lets exactly that channel through (or blocks it, naming the rule).
"""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import date

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from esg_leads.operators.claims import ClaimCheck
from esg_leads.operators.compliance import AGENT_VERSION, CHANNELS, PACK_DIR, ComplianceAgent, load_packs
from esg_leads.schemas.outputs import Compliance
from esg_leads.schemas.rules import RulePack

SUBSCRIBERS = ("individual", "corporate")
CONSENTS = ("opted_in", "soft_opt_in", "none", "opted_out")
CONTACT_PACK_FILES = sorted(p for p in PACK_DIR.glob("*.toml") if p.name != "claims.toml")


@pytest.fixture(scope="module")
def agent() -> ComplianceAgent:
    return ComplianceAgent()


def decide(agent: ComplianceAgent, country: str, subscriber: str, channel: str,
           consent: str, do_not_call: bool = False):
    """The agent's decision on one channel: ``(verdict, blocked entry or None)``."""
    verdict = agent.channels(jurisdiction=country, subscriber=subscriber,
                             consents={channel: consent}, do_not_call=do_not_call)
    blocked = [b for b in verdict.blocked if b["channel"] == channel]
    return verdict, (blocked[0] if blocked else None)


# ------------------------------------------------------------- the rules, row by row

ALLOWED, BLOCKED = True, False

RULE_TABLE = [
    # ---------------------------------------------------------------- UK (PECR)
    pytest.param("GB", "email", "individual", "opted_in", False, ALLOWED, "UK-PECR-22-email-individual",
                 id="UK reg 22: email to an individual who consented is allowed"),
    pytest.param("GB", "email", "individual", "soft_opt_in", False, ALLOWED, "UK-PECR-22-email-individual",
                 id="UK reg 22(3): email to an existing customer (soft opt-in) is allowed"),
    pytest.param("GB", "email", "individual", "none", False, BLOCKED, "UK-PECR-22-email-individual",
                 id="UK reg 22(2): email to an individual without consent is blocked"),
    pytest.param("GB", "email", "corporate", "none", False, ALLOWED, "UK-PECR-22-email-corporate",
                 id="UK reg 22 protects individuals only: email to a company without consent is allowed"),
    pytest.param("GB", "email", "individual", "soft_opt_in", True, ALLOWED, "UK-PECR-22-email-individual",
                 id="UK: the TPS register is about calls, not email"),
    pytest.param("GB", "sms", "individual", "soft_opt_in", False, ALLOWED, "UK-PECR-22-sms-individual",
                 id="UK reg 22: texts are electronic mail, soft opt-in suffices"),
    pytest.param("GB", "sms", "individual", "none", False, BLOCKED, "UK-PECR-22-sms-individual",
                 id="UK reg 22: a text to an individual without consent is blocked"),
    pytest.param("GB", "sms", "corporate", "none", False, ALLOWED, "UK-PECR-22-sms-corporate",
                 id="UK reg 22: a text to a company without consent is allowed"),
    pytest.param("GB", "phone", "individual", "none", False, ALLOWED, "UK-PECR-21-phone-individual",
                 id="UK reg 21: a live call to an individual not on the TPS is allowed"),
    pytest.param("GB", "phone", "individual", "none", True, BLOCKED, "UK-PECR-21-phone-individual",
                 id="UK reg 21(1)(b): a live call to an individual on the TPS is blocked"),
    pytest.param("GB", "phone", "corporate", "none", False, ALLOWED, "UK-PECR-21-phone-corporate",
                 id="UK reg 21: a live call to a company not on the CTPS is allowed"),
    pytest.param("GB", "phone", "corporate", "none", True, BLOCKED, "UK-PECR-21-phone-corporate",
                 id="UK reg 21(1)(b): a live call to a company on the CTPS is blocked"),
    # ------------------------------------------------------------- EU (ePrivacy)
    pytest.param("DE", "email", "individual", "opted_in", False, ALLOWED, "EU-ePrivacy-13(1)-email-individual",
                 id="EU art 13(1): email to an individual who consented is allowed"),
    pytest.param("FR", "email", "individual", "soft_opt_in", False, ALLOWED, "EU-ePrivacy-13(1)-email-individual",
                 id="EU art 13(2): email to an existing customer (soft opt-in) is allowed"),
    pytest.param("DE", "email", "individual", "none", False, BLOCKED, "EU-ePrivacy-13(1)-email-individual",
                 id="EU art 13(1): email to an individual without consent is blocked"),
    pytest.param("FR", "email", "corporate", "none", False, ALLOWED, "EU-ePrivacy-13(5)-email-corporate",
                 id="EU art 13(5): email to a company is allowed unless it objected"),
    pytest.param("DE", "sms", "individual", "opted_in", False, ALLOWED, "EU-ePrivacy-13(1)-sms-individual",
                 id="EU art 13(1): a text to an individual who consented is allowed"),
    pytest.param("DE", "sms", "individual", "soft_opt_in", False, BLOCKED, "EU-ePrivacy-13(1)-sms-individual",
                 id="EU art 13(1): a text needs consent, a soft opt-in is not enough"),
    pytest.param("FR", "sms", "corporate", "none", False, BLOCKED, "EU-ePrivacy-13(5)-sms-corporate",
                 id="EU art 13: a text to a company without consent is blocked"),
    pytest.param("DE", "phone", "individual", "opted_in", False, ALLOWED, "EU-ePrivacy-13(3)-phone-individual",
                 id="EU art 13(3) opt-in: a call to an individual who consented is allowed"),
    pytest.param("DE", "phone", "individual", "none", False, BLOCKED, "EU-ePrivacy-13(3)-phone-individual",
                 id="EU art 13(3) opt-in: a call to an individual without consent is blocked"),
    pytest.param("DE", "phone", "individual", "opted_in", True, ALLOWED, "EU-ePrivacy-13(3)-phone-individual",
                 id="EU: the subscriber's own consent to be called outranks a register listing"),
    pytest.param("FR", "phone", "corporate", "none", False, ALLOWED, "EU-ePrivacy-13(3)-phone-corporate",
                 id="EU art 13(3),(5): a call to a company is allowed (presumed interest)"),
    pytest.param("FR", "phone", "corporate", "none", True, BLOCKED, "EU-ePrivacy-13(3)-phone-corporate",
                 id="EU art 13(3): a call to a company on a do-not-call register is blocked"),
    # ------------------------------------------------------- US (CAN-SPAM, TCPA, TSR)
    pytest.param("US", "email", "individual", "none", False, ALLOWED, "US-CANSPAM-email-individual",
                 id="US CAN-SPAM: email to an individual needs no prior consent"),
    pytest.param("US", "email", "corporate", "none", False, ALLOWED, "US-CANSPAM-email-corporate",
                 id="US CAN-SPAM: email to a company needs no prior consent"),
    pytest.param("US", "email", "individual", "none", True, ALLOWED, "US-CANSPAM-email-individual",
                 id="US: the National DNC registry is about calls, not email"),
    pytest.param("US", "sms", "individual", "opted_in", False, ALLOWED, "US-TCPA-sms-individual",
                 id="US TCPA: a text with prior express written consent is allowed"),
    pytest.param("US", "sms", "individual", "none", False, BLOCKED, "US-TCPA-sms-individual",
                 id="US TCPA: a marketing text without consent is blocked"),
    pytest.param("US", "sms", "individual", "soft_opt_in", False, BLOCKED, "US-TCPA-sms-individual",
                 id="US TCPA: an existing relationship is not written consent to text"),
    pytest.param("US", "sms", "corporate", "none", False, BLOCKED, "US-TCPA-sms-corporate",
                 id="US TCPA: a marketing text to a company without consent is blocked"),
    pytest.param("US", "phone", "individual", "none", False, ALLOWED, "US-TSR-phone-individual",
                 id="US TSR: a call to an individual not on the National DNC is allowed"),
    pytest.param("US", "phone", "individual", "none", True, BLOCKED, "US-TSR-phone-individual",
                 id="US TSR: a call to an individual on the National DNC registry is blocked"),
    pytest.param("US", "phone", "corporate", "none", True, ALLOWED, "US-TSR-phone-corporate",
                 id="US TSR 310.6(b)(7): business-to-business calls are exempt from the DNC"),
]


@pytest.mark.parametrize(
    "country, channel, subscriber, consent, do_not_call, allowed, rule_id", RULE_TABLE)
def test_each_pack_applies_the_rule_it_cites(agent, country, channel, subscriber, consent,
                                             do_not_call, allowed, rule_id):
    verdict, blocked = decide(agent, country, subscriber, channel, consent, do_not_call)

    assert verdict.unsure is None
    assert rule_id in verdict.rules_applied
    if allowed:
        assert channel in verdict.allowed
        assert blocked is None
    else:
        assert channel not in verdict.allowed
        assert blocked is not None and blocked["rule_id"] == rule_id
        assert blocked["reason"]


@pytest.mark.parametrize("country, pack", [("DE", "EU"), ("FR", "EU"), ("GR", "EU"),
                                           ("NO", "EU"), ("IS", "EU"), ("GB", "UK"), ("US", "US")])
def test_a_country_is_decided_by_its_pack(agent, country, pack):
    verdict = agent.channels(jurisdiction=country, subscriber="corporate", consents={},
                             do_not_call=False)
    assert verdict.pack == pack


def test_a_consent_block_cites_the_rule_and_the_consent_on_record(agent):
    _, blocked = decide(agent, "DE", "individual", "email", "none")
    assert "2002/58/EC art. 13(1)" in blocked["reason"]
    assert "consent is none" in blocked["reason"]


def test_a_do_not_call_block_says_so(agent):
    _, blocked = decide(agent, "US", "individual", "phone", "none", do_not_call=True)
    assert "do-not-call" in blocked["reason"]


@pytest.mark.parametrize("country", ["GB", "US", "FR"])
def test_consent_to_be_called_outranks_a_register_listing(agent, country):
    """PECR reg. 21(4), the TSR's express-permission exemption: consent lifts the listing."""
    allowed, _ = decide(agent, country, "corporate", "phone", "opted_in", do_not_call=True)
    assert allowed


def test_a_channel_without_a_recorded_consent_counts_as_none(agent):
    verdict = agent.channels(jurisdiction="GB", subscriber="individual", consents={},
                             do_not_call=False)
    assert verdict.allowed == ["phone"]  # email and sms need consent; calls need no TPS
    assert sorted(b["channel"] for b in verdict.blocked) == ["email", "sms"]


# ------------------------------------------------------------------ opt-outs, always

pack_countries = st.sampled_from(["DE", "FR", "NO", "GB", "US"])
consent_maps = st.dictionaries(st.sampled_from(CHANNELS), st.sampled_from(CONSENTS))


@settings(max_examples=300, deadline=None)
@given(country=pack_countries, channel=st.sampled_from(CHANNELS),
       subscriber=st.sampled_from(SUBSCRIBERS), others=consent_maps, do_not_call=st.booleans())
def test_an_opt_out_is_honoured_in_every_pack_on_every_channel(agent, country, channel, subscriber,
                                                               others, do_not_call):
    consents = {**others, channel: "opted_out"}
    verdict = agent.channels(jurisdiction=country, subscriber=subscriber, consents=consents,
                             do_not_call=do_not_call)
    assert channel not in verdict.allowed
    [blocked] = [b for b in verdict.blocked if b["channel"] == channel]
    assert "objection honoured" in blocked["reason"]


@settings(max_examples=300, deadline=None)
@given(country=pack_countries, subscriber=st.sampled_from(SUBSCRIBERS), consents=consent_maps,
       do_not_call=st.booleans())
def test_every_channel_is_decided_exactly_once(agent, country, subscriber, consents, do_not_call):
    verdict = agent.channels(jurisdiction=country, subscriber=subscriber, consents=consents,
                             do_not_call=do_not_call)
    decided = verdict.allowed + [b["channel"] for b in verdict.blocked]
    assert sorted(decided) == sorted(CHANNELS)


STRONGER = {"opted_out": 0, "none": 1, "soft_opt_in": 2, "opted_in": 3}


@settings(max_examples=300, deadline=None)
@given(country=pack_countries, subscriber=st.sampled_from(SUBSCRIBERS), consents=consent_maps,
       channel=st.sampled_from(CHANNELS), do_not_call=st.booleans())
def test_more_consent_never_closes_and_a_dnc_listing_never_opens_a_channel(
        agent, country, subscriber, consents, channel, do_not_call):
    def allowed(consents, dnc):
        return set(agent.channels(jurisdiction=country, subscriber=subscriber,
                                  consents=consents, do_not_call=dnc).allowed)

    before = allowed(consents, do_not_call)
    current = consents.get(channel, "none")
    for status, strength in STRONGER.items():
        if strength >= STRONGER[current]:
            assert before <= allowed({**consents, channel: status}, do_not_call), status
    assert allowed(consents, True) <= allowed(consents, False)


# --------------------------------------------------------------- when no rule decides


def test_an_unknown_jurisdiction_is_unsure_with_no_pack(agent):
    verdict = agent.channels(jurisdiction="AU", subscriber="individual",
                             consents={"email": "opted_in"}, do_not_call=False)
    assert verdict.pack is None
    assert verdict.unsure and "AU" in verdict.unsure
    assert verdict.allowed == []
    assert agent.verdict(verdict, [], [])["verdict"] == "unsure"


def test_a_missing_jurisdiction_is_unsure(agent):
    verdict = agent.channels(jurisdiction=None, subscriber="individual", consents={},
                             do_not_call=False)
    assert verdict.pack is None and verdict.unsure


def test_an_unknown_subscriber_type_is_unsure_even_in_a_known_pack(agent):
    verdict = agent.channels(jurisdiction="GB", subscriber=None,
                             consents={"email": "opted_in"}, do_not_call=False)
    assert verdict.pack == "UK"
    assert verdict.unsure
    assert verdict.allowed == [] and verdict.rules_applied == []
    assert agent.verdict(verdict, [], [])["verdict"] == "unsure"


# --------------------------------------------------------------------------- verdict


def removed_claim() -> dict:
    """A real removal: an SFDR article 9 claim for a fund that makes no such disclosure."""
    check = ClaimCheck(stale_days=365)
    kept, removed = check.check([("p-1", "sfdr_article_9")], {}, date(2026, 3, 1).toordinal(),
                                fund={"sfdr": "article_8"})
    assert kept == [] and len(removed) == 1
    return removed[0]


VERDICT_CASES = [
    pytest.param(dict(jurisdiction="GB", subscriber="individual", consents={}, do_not_call=True),
                 False, "blocked", id="no lawful channel: blocked"),
    pytest.param(dict(jurisdiction="US", subscriber="individual",
                      consents={"email": "opted_out", "phone": "opted_out", "sms": "opted_in"},
                      do_not_call=False),
                 True, "restricted", id="one channel left, claims removed: restricted"),
    pytest.param(dict(jurisdiction="GB", subscriber="individual",
                      consents={"email": "soft_opt_in"}, do_not_call=True),
                 False, "restricted", id="some channels blocked: restricted"),
    pytest.param(dict(jurisdiction="GB", subscriber="corporate", consents={}, do_not_call=False),
                 True, "restricted", id="every channel allowed but a claim removed: restricted"),
    pytest.param(dict(jurisdiction="GB", subscriber="corporate", consents={}, do_not_call=False),
                 False, "allowed", id="every channel allowed, no claim removed: allowed"),
    pytest.param(dict(jurisdiction="DE", subscriber="individual",
                      consents={"email": "opted_in", "phone": "opted_in", "sms": "opted_in"},
                      do_not_call=False),
                 False, "allowed", id="EU individual who opted in everywhere: allowed"),
    pytest.param(dict(jurisdiction="AU", subscriber="corporate", consents={}, do_not_call=False),
                 True, "unsure", id="no pack: unsure, whatever else"),
    pytest.param(dict(jurisdiction="FR", subscriber=None, consents={}, do_not_call=False),
                 False, "unsure", id="no subscriber type: unsure"),
]


@pytest.mark.parametrize("situation, claims_removed, expected", VERDICT_CASES)
def test_verdict(agent, situation, claims_removed, expected):
    channels = agent.channels(**situation)
    removed = [removed_claim()] if claims_removed else []
    claim_rules = ["claims:sfdr_article_9"] if claims_removed else []

    record = agent.verdict(channels, removed, claim_rules)

    assert record["verdict"] == expected
    assert record["agent_version"] == AGENT_VERSION
    assert record["removed_claims"] == removed
    parsed = Compliance.model_validate_json(orjson.dumps(record))
    assert parsed.verdict.value == expected
    assert parsed.pack == channels.pack


def test_rules_applied_names_every_contact_rule_used_and_the_claim_rules(agent):
    channels = agent.channels(jurisdiction="US", subscriber="corporate", consents={},
                              do_not_call=True)
    record = agent.verdict(channels, [removed_claim()], ["claims:sfdr_article_9"])

    us_corporate = [r.id for r in load_packs()["US"].rules if r.subscriber == "corporate"]
    assert record["rules_applied"] == us_corporate + ["claims:sfdr_article_9"]
    assert not any("individual" in rule for rule in record["rules_applied"])
    assert record["allowed_channels"] == ["email", "phone"]  # B2B calls exempt from the DNC
    assert [b["rule_id"] for b in record["blocked_channels"]] == ["US-TCPA-sms-corporate"]


def test_an_unsure_verdict_records_why_in_rules_applied(agent):
    channels = agent.channels(jurisdiction="AU", subscriber="corporate", consents={},
                              do_not_call=False)
    record = agent.verdict(channels, [], [])
    assert record["pack"] is None
    assert record["rules_applied"] == [f"unsure: {channels.unsure}"]


# ------------------------------------------------------------------------ the packs


def test_every_pack_file_loads_and_validates():
    packs = load_packs()
    assert {pack.pack for pack in packs.values()} == {"EU", "UK", "US", "SG"}
    assert len(CONTACT_PACK_FILES) == 4
    for country in ("DE", "FR", "GB", "US"):
        assert country in packs


@pytest.mark.parametrize("path", CONTACT_PACK_FILES, ids=lambda p: p.name)
def test_each_pack_covers_every_channel_and_subscriber_exactly_once(path):
    pack = RulePack.model_validate(tomllib.loads(path.read_text()))
    covered = Counter((rule.channel, rule.subscriber) for rule in pack.rules)
    assert covered == Counter({(c, s): 1 for c in CHANNELS for s in SUBSCRIBERS})


def test_every_rule_and_every_opt_out_has_a_citation():
    for pack in load_packs().values():
        assert pack.opt_out.strip()
        for rule in pack.rules:
            assert rule.citation.strip(), rule.id


def test_rule_ids_are_unique_across_packs():
    packs = [RulePack.model_validate(tomllib.loads(p.read_text())) for p in CONTACT_PACK_FILES]
    ids = [rule.id for pack in packs for rule in pack.rules]
    assert len(ids) == len(set(ids)) == 24


def test_no_country_is_claimed_by_two_packs():
    """load_packs keys packs by country: an overlap would silently drop one pack's rules."""
    seen: dict[str, str] = {}
    for path in CONTACT_PACK_FILES:
        for country in tomllib.loads(path.read_text())["jurisdictions"]:
            assert country not in seen, f"{country} in {seen.get(country)} and {path.name}"
            seen[country] = path.name


def test_a_pack_with_an_unknown_requirement_does_not_load(tmp_path):
    (tmp_path / "xx.toml").write_text(
        'pack = "UK"\nname = "broken"\njurisdictions = ["GB"]\nopt_out = "x"\n'
        '[[rules]]\nid = "X-1"\nchannel = "email"\nsubscriber = "individual"\n'
        'requires = "implied_consent"\ndo_not_call = false\ncitation = "none"\n')
    with pytest.raises(ValidationError):
        load_packs(tmp_path)
