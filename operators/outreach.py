"""The outreach planning agent: which properties to lead with, over which channels, when.

A plan is a short multi-channel sequence with triggers, waits and escalation
points, chosen from the lawful channels (from compliance), the investor's
readiness, intent and ESG alignment, and their stated interests. It proposes the
ESG claims the investor would care about; the anti-greenwashing check then keeps
only those the properties' verified data supports.
"""

from __future__ import annotations

from esg_leads.schemas.common import EPC_RANK
from esg_leads.schemas.records import InvestorContext, PropertyFacts

AGENT_VERSION = "outreach/1"
MAX_LEAD_PROPERTIES = 3


def matches_preferences(facts: PropertyFacts, context: InvestorContext) -> bool:
    """Does a property meet what the investor said they require?"""
    if facts.asset_class in context.excluded_asset_classes:
        return False
    if context.min_epc_band and (facts.epc_rank is None
                                 or facts.epc_rank > EPC_RANK[context.min_epc_band]):
        return False
    if context.max_climate_risk is not None and (facts.max_climate_risk is None
                                                 or facts.max_climate_risk > context.max_climate_risk):
        return False
    if context.required_certifications and not facts.certified:
        return False
    return True


def lead_properties(context: InvestorContext) -> tuple[list[PropertyFacts], bool]:
    """Engaged properties that meet the stated preferences (most engaged first).

    Returns the properties and whether they all meet the preferences; when none
    does, the two most engaged ones are returned with ``False``.
    """
    engaged = list(context.engaged_properties)
    fitting = [f for f in engaged if matches_preferences(f, context)]
    if fitting:
        return fitting[:MAX_LEAD_PROPERTIES], True
    return engaged[:2], not engaged


def proposed_claims(properties: list[PropertyFacts], context: InvestorContext,
                    esg_alignment: float) -> list[tuple[str, str]]:
    """The claims this investor would want to hear, before any check of support."""
    esg_minded = esg_alignment >= 60 or context.min_epc_band is not None
    claims = []
    for facts in properties:
        if esg_minded and facts.high_epc:
            claims.append((facts.property_id, "energy_efficient"))
        if (context.required_certifications or esg_minded) and facts.certified:
            claims.append((facts.property_id, "certified"))
        if context.max_climate_risk is not None or esg_minded:
            claims.append((facts.property_id, "low_climate_risk"))
        if context.sfdr_target in ("article_8", "article_9"):
            claims.append((facts.property_id, f"sfdr_{context.sfdr_target}"))
        if context.uk_sdr_label:
            claims.append((facts.property_id, "uk_sdr_label"))
    return claims


def info_request_steps(missing: list[str], email_objected: bool) -> list[dict]:
    """The plan of a lead in ``needs_info``: ask for the missing profile facts, once.

    It is a service message answering the investor's own enquiry, with no marketing
    content and no ESG claim, so it goes out by e-mail unless the investor objected
    to e-mail; then nothing is sent and the lead waits for the CRM to fill the profile.

    >>> [s["action"] for s in info_request_steps(["jurisdiction"], False)]
    ['ask for the missing profile facts: jurisdiction']
    >>> info_request_steps(["jurisdiction"], True)
    []
    """
    if email_objected or not missing:
        return []
    return [{"order": 1, "channel": "email",
             "action": ("ask for the missing profile facts: " + ", ".join(missing))[:128],
             "wait_days": 0, "trigger": "lead needs info", "escalation": False}]


def plan_steps(allowed: list[str], intent: float, readiness: float, esg_alignment: float,
               n_properties: int) -> list[dict]:
    """The contact sequence over lawful channels; empty when there is none."""
    steps: list[dict] = []

    def step(channel: str, action: str, wait_days: float, trigger: str, escalation: bool) -> None:
        steps.append({"order": len(steps) + 1, "channel": channel, "action": action,
                      "wait_days": wait_days, "trigger": trigger, "escalation": escalation})

    subject = (f"ESG briefing on {n_properties} matching properties" if esg_alignment >= 60
               else f"portfolio overview ({n_properties} properties)")
    if "email" in allowed:
        step("email", f"send {subject}", 0, "plan approved", False)
    if "phone" in allowed and readiness >= 40:
        first = not steps
        step("phone", "call to qualify interest and ticket size" if first else "follow-up call",
             0 if first else (1 if intent >= 70 else 2),
             "plan approved" if first else "no reply to previous step", intent >= 70)
    if intent >= 55 and ("email" in allowed or "phone" in allowed):
        step("meeting_invite", "invite to a property and ESG data-room meeting",
             3 if steps else 0, "positive reply or completed call", True)
    if "sms" in allowed and readiness >= 70 and steps:
        step("sms", "meeting reminder", 1, "meeting accepted", False)
    return steps
