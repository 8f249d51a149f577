"""The topic registry: which model each topic carries and which field is its key."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from esg_leads.schemas.inputs import (
    Engagement,
    ErasureRequest,
    InvestorProfile,
    ModelCommand,
    Outcome,
    PropertySignal,
    ReviewDecision,
)
from esg_leads.schemas.keys import KEY_FORMAT
from esg_leads.schemas.outputs import Alert, CrmHandoff, DeadLetter, ReviewCase, ScoredLead, ShadowScore


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    model: type[BaseModel]
    #: The field the message key is (inputs: validated against it), or for the outputs
    #: keyed per investor :data:`~schemas.keys.KEY_FORMAT`, ``<tenant>/<investor_id>``.
    key_field: str
    description: str


PROPERTY_SIGNALS = Topic("esg.property-signals", PropertySignal, "property_id", "Property ESG facts")
INVESTOR_PROFILES = Topic("investor.profiles", InvestorProfile, "investor_id", "Stated preferences, consent")
ENGAGEMENTS = Topic("investor.engagements", Engagement, "investor_id", "Investor interactions")
OUTCOMES = Topic("crm.outcomes", Outcome, "investor_id", "Delayed CRM labels")
ERASURE = Topic("investor.erasure", ErasureRequest, "investor_id", "Right-to-erasure requests")
REVIEW_DECISIONS = Topic("lead.review-decisions", ReviewDecision, "investor_id", "Reviewer verdicts")
OPS_CONTROL = Topic("ops.control", ModelCommand, "tenant", "Signed model lifecycle commands")

LEADS_SCORED = Topic("leads.scored", ScoredLead, KEY_FORMAT, "Scored, explained leads")
LEADS_REVIEW = Topic("leads.review", ReviewCase, KEY_FORMAT, "Cases for human review")
CRM_HANDOFF = Topic("crm.handoff", CrmHandoff, KEY_FORMAT, "Qualified leads (upsert by key)")
OPS_ALERTS = Topic("ops.alerts", Alert, "tenant", "Drift and model alerts")
LEADS_SHADOW = Topic("leads.shadow", ShadowScore, KEY_FORMAT, "Challenger scores in shadow")
LEADS_DLQ = Topic("leads.dlq", DeadLetter, "key_b64", "Inputs that could not be used")

INPUT_TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (PROPERTY_SIGNALS, INVESTOR_PROFILES, ENGAGEMENTS, OUTCOMES, ERASURE, REVIEW_DECISIONS,
              OPS_CONTROL)
}
OUTPUT_TOPICS: dict[str, Topic] = {
    t.name: t for t in (LEADS_SCORED, LEADS_REVIEW, CRM_HANDOFF, OPS_ALERTS, LEADS_DLQ,
                        LEADS_SHADOW)
}
ALL_TOPICS: dict[str, Topic] = {**INPUT_TOPICS, **OUTPUT_TOPICS}
