"""The compliance agent: may we contact this investor, how, and with which ESG claims?

Contact rules come from the jurisdiction's rule pack (``compliance_packs/*.toml``):
per channel and subscriber type, what consent is required and whether do-not-call
registers apply. Objections (opt-outs, unsubscribes) block a channel at once, in
every pack. ESG claims in an outreach plan are checked against the property's
verified data (:mod:`operators.claims`); unsupported claims are removed and the
removals recorded. The verdict names every rule it applied.

>>> agent = ComplianceAgent()
>>> channels = agent.channels(jurisdiction="GB", subscriber="individual",
...                           consents={"email": "soft_opt_in", "phone": "none"},
...                           do_not_call=True)
>>> channels.pack, channels.allowed
('UK', ['email'])
>>> [b["rule_id"] for b in channels.blocked]
['UK-PECR-22-sms-individual', 'UK-PECR-21-phone-individual']
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from esg_leads.schemas.rules import ContactPolicy, RulePack

AGENT_VERSION = "compliance/1"
PACK_DIR = Path(__file__).parent / "compliance_packs"
CHANNELS = ("email", "phone", "sms")
_SATISFIES = {
    "consent": frozenset({"opted_in"}),
    "consent_or_soft_opt_in": frozenset({"opted_in", "soft_opt_in"}),
    "not_opted_out": frozenset({"opted_in", "soft_opt_in", "none"}),
}


@cache
def load_packs(directory: Path = PACK_DIR) -> dict[str, RulePack]:
    """Every rule pack in ``directory``, keyed by the jurisdictions it covers."""
    by_country: dict[str, RulePack] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name == "claims.toml":
            continue
        pack = RulePack.model_validate(tomllib.loads(path.read_text()))
        for country in pack.jurisdictions:
            by_country[country] = pack
    return by_country


@dataclass(slots=True)
class ChannelVerdict:
    pack: str | None
    allowed: list[str] = field(default_factory=list)
    blocked: list[dict] = field(default_factory=list)
    rules_applied: list[str] = field(default_factory=list)
    #: Why no rule could decide (unknown jurisdiction or subscriber type), if so.
    unsure: str | None = None


#: Rule id of the firm's own do-not-contact list.
DO_NOT_CONTACT_RULE = "FIRM-do-not-contact"


def _on_do_not_contact_list(verdict: ChannelVerdict) -> ChannelVerdict:
    blocked = [{"channel": channel, "rule_id": DO_NOT_CONTACT_RULE,
                "reason": "on the firm's do-not-contact list"} for channel in verdict.allowed]
    return ChannelVerdict(verdict.pack, [], verdict.blocked + blocked,
                          verdict.rules_applied + [DO_NOT_CONTACT_RULE], verdict.unsure)


class ComplianceAgent:
    """Applies the jurisdiction's contact rules; see the module docstring."""

    def __init__(self, packs: dict[str, RulePack] | None = None) -> None:
        self.packs = packs if packs is not None else load_packs()
        #: Verdicts by their inputs: few combinations exist, and every lead asks.
        self._memo: dict[tuple, ChannelVerdict] = {}

    def channels(self, jurisdiction: str | None, subscriber: str | None,
                 consents: dict[str, str], do_not_call: bool,
                 do_not_contact: bool = False) -> ChannelVerdict:
        """Lawful channels; the verdict returned is shared, callers must not change it.

        ``do_not_contact`` (the firm's own list, kept in the CRM) blocks every channel,
        whatever the pack allows and whatever consent says.
        """
        key = (jurisdiction, subscriber, tuple(sorted(consents.items())), do_not_call,
               do_not_contact)
        verdict = self._memo.get(key)
        if verdict is None:
            if len(self._memo) > 10_000:
                self._memo.clear()
            verdict = self._channels(jurisdiction, subscriber, consents, do_not_call)
            if do_not_contact:
                verdict = _on_do_not_contact_list(verdict)
            self._memo[key] = verdict
        return verdict

    def contact_policy(self, jurisdiction: str | None) -> ContactPolicy | None:
        """When and how often the region's rules let us contact (quiet hours, caps)."""
        pack = self.packs.get(jurisdiction or "")
        return pack.contact if pack is not None else None

    def _channels(self, jurisdiction: str | None, subscriber: str | None,
                  consents: dict[str, str], do_not_call: bool) -> ChannelVerdict:
        pack = self.packs.get(jurisdiction or "")
        if pack is None:
            return ChannelVerdict(None, unsure=f"no rule pack for jurisdiction {jurisdiction!r}")
        verdict = ChannelVerdict(pack.pack)
        if subscriber is None:
            verdict.unsure = "subscriber type unknown (no investor profile)"
            return verdict
        for rule in pack.rules:
            if rule.subscriber != subscriber:
                continue
            verdict.rules_applied.append(rule.id)
            status = consents.get(rule.channel, "none")
            if status == "opted_out":
                verdict.blocked.append({"channel": rule.channel, "rule_id": rule.id,
                                        "reason": f"objection honoured: {pack.opt_out}"[:256]})
            elif status not in _SATISFIES[rule.requires]:
                verdict.blocked.append({
                    "channel": rule.channel, "rule_id": rule.id,
                    "reason": f"requires {rule.requires.replace('_', ' ')} ({rule.citation}); "
                              f"consent is {status}"[:256]})
            elif rule.do_not_call and do_not_call and status != "opted_in":
                # A register listing yields to the subscriber's own consent to be called
                # (PECR reg. 21(4); the TSR's express-permission exemption).
                verdict.blocked.append({"channel": rule.channel, "rule_id": rule.id,
                                        "reason": f"number on a do-not-call register ({rule.citation})"[:256]})
            else:
                verdict.allowed.append(rule.channel)
        return verdict

    def verdict(self, channels: ChannelVerdict, removed_claims: list[dict],
                claim_rules: list[str]) -> dict:
        """The :class:`~schemas.outputs.Compliance` record of a lead."""
        if channels.unsure is not None:
            status = "unsure"
        elif not channels.allowed:
            status = "blocked"
        elif channels.blocked or removed_claims:
            status = "restricted"
        else:
            status = "allowed"
        return {
            "verdict": status,
            "pack": channels.pack,
            "agent_version": AGENT_VERSION,
            "allowed_channels": channels.allowed,
            "blocked_channels": channels.blocked,
            "removed_claims": removed_claims,
            "rules_applied": channels.rules_applied + claim_rules
            + ([f"unsure: {channels.unsure}"] if channels.unsure else []),
        }
