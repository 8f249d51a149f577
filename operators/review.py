"""The human-in-the-loop review agent: when a person must look before the CRM does.

Routes a lead to review when its score sits in the ambiguous band around the
qualification threshold, its interval is too wide to act on, the ticket exceeds
the tenant's limit, the ESG data that drives the decision is stale, self-reported
or conflicting, compliance cannot decide, or a reviewer asked for more information.
Every reason says what the reviewer should check.

Review is for judgement calls. A lead whose profile lacks what compliance needs
(:func:`missing_info`: no jurisdiction, no subscriber type) is not one: nobody can
decide lawfully without those facts, so the lead asks for them (state
``needs_info``) instead of queueing for a person. A jurisdiction that is known but
that no rule pack covers still goes to review: that is a call for a person.

>>> from esg_leads.schemas.settings import LifecycleSettings
>>> reasons = review_reasons(probability=0.52, low=0.2, high=0.75, ticket_max=None,
...     ticket_limit=5e7, esg_weight=0.1, facts=[], today=0, stale_days=365,
...     compliance_unsure=None, needs_info=False, settings=LifecycleSettings())
>>> [r["code"] for r in reasons]
['ambiguous_score', 'wide_interval']
"""

from __future__ import annotations

from esg_leads.schemas.records import InvestorContext, PropertyFacts
from esg_leads.schemas.settings import LifecycleSettings

AGENT_VERSION = "review-routing/1"
#: ESG data drives a decision when ESG sources explain at least this share of it.
ESG_DRIVES = 0.3
#: Energy use this far above what an EPC A+-B building uses contradicts its band.
CONFLICTING_INTENSITY_KWH_M2 = 250.0


def _reason(code: str, detail: str, check: str) -> dict:
    return {"code": code, "detail": detail[:256], "check": check[:256]}


#: Reasons that say only that the model is unsure: evidence may settle them.
UNCERTAINTY = frozenset({"ambiguous_score", "wide_interval"})

#: Profile facts without which compliance cannot decide, with what to ask for.
REQUIRED_FOR_COMPLIANCE = (("jurisdiction", "country of residence or incorporation"),
                           ("subscriber_type", "investing as an individual or a company"))


def missing_info(context: InvestorContext | None) -> list[str]:
    """The profile facts compliance needs and this investor's profile lacks.

    >>> missing_info(None)
    ['jurisdiction', 'subscriber_type']
    """
    return [name for name, _ in REQUIRED_FOR_COMPLIANCE
            if context is None or getattr(context, name) is None]


def review_reasons(*, probability: float, low: float, high: float, ticket_max: float | None,
                   ticket_limit: float, esg_weight: float, facts: list[PropertyFacts],
                   today: int, stale_days: float, compliance_unsure: str | None,
                   needs_info: bool, settings: LifecycleSettings) -> list[dict]:
    reasons = []
    threshold = settings.qualification_threshold
    if abs(probability - threshold) <= settings.review_band + 1e-9:  # float-safe edge
        reasons.append(_reason(
            "ambiguous_score", f"probability {probability:.2f} within {settings.review_band:.2f} "
            f"of the threshold {threshold:.2f}",
            "read the engagement history and decide whether the interest is real"))
    if high - low > settings.max_interval_width:
        reasons.append(_reason(
            "wide_interval", f"90% interval {low:.2f}-{high:.2f} is wider than "
            f"{settings.max_interval_width:.2f}",
            "little evidence yet: confirm intent and ticket before handing off"))
    if ticket_max is not None and ticket_max > ticket_limit:
        reasons.append(_reason(
            "ticket_over_limit", f"ticket up to {ticket_max:,.0f} EUR exceeds {ticket_limit:,.0f}",
            "high-stakes ticket: senior sign-off and KYC before contact"))
    if esg_weight >= ESG_DRIVES and facts:
        stale = [f.property_id for f in facts if today - f.data_as_of_ordinal > stale_days]
        if stale:
            reasons.append(_reason(
                "stale_esg_data", f"ESG data older than {stale_days:.0f} days for {', '.join(stale)}",
                "request current EPC/certification evidence before citing it"))
        self_reported = [f.property_id for f in facts if not f.third_party]
        if self_reported:
            reasons.append(_reason(
                "self_reported_esg_data", f"self-reported ESG data for {', '.join(self_reported)}",
                "verify against the EPC register or the certifier before citing it"))
        conflicting = [f.property_id for f in facts
                       if f.high_epc and f.energy_intensity is not None
                       and f.energy_intensity > CONFLICTING_INTENSITY_KWH_M2]
        if conflicting:
            reasons.append(_reason(
                "conflicting_esg_data", f"EPC A+-B yet energy use above "
                f"{CONFLICTING_INTENSITY_KWH_M2:.0f} kWh/m2/yr for {', '.join(conflicting)}",
                "reconcile the EPC with metered consumption before any efficiency claim"))
    if compliance_unsure:
        reasons.append(_reason("compliance_unsure", compliance_unsure,
                               "establish jurisdiction, subscriber type and consent before contact"))
    if needs_info:
        reasons.append(_reason("reviewer_needs_info", "a reviewer asked for more information",
                               "check the information requested on the previous case"))
    return reasons
