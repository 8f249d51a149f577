"""Output topics: what the flow publishes.

Output records are built on the hot path as plain dicts (validating every record
through pydantic would cost more than scoring it); these models are the contract
those dicts are tested against and the JSON Schema that consumers validate with.
Fields marked *processing-time* are the only ones that may differ between two runs
over the same input.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from esg_leads.schemas.common import (
    ConsentStatus,
    ContactChannel,
    DerivedId,
    EntityId,
    OutputModel,
    Probability,
    Score100,
    TenantId,
    UtcDatetime,
)

SCHEMA_VERSION = 1

#: What every published ``probability`` means (and ``score``, its percentage).
HORIZON_PROBABILITY = (
    "Probability that the investor converts (the CRM records the lead as qualified) "
    "within the horizon after event_time (scoring.horizon: 90 days by default), "
    "calibrated online per tenant against the outcomes of earlier scores")
HorizonProbability = Annotated[Probability, Field(description=HORIZON_PROBABILITY)]

# --------------------------------------------------------------------------- shared


class LeadState(StrEnum):
    """Where a lead is; the legal moves are in :mod:`operators.lead_state`."""

    RECEIVED = "received"
    ENRICHED = "enriched"
    SCORED = "scored"
    PLANNED = "planned"
    #: The profile is missing or too thin to check compliance: an info request is
    #: planned, and the lead re-enters scoring when the profile arrives.
    NEEDS_INFO = "needs_info"
    IN_REVIEW = "in_review"
    HANDED_OFF = "handed_off"
    DISQUALIFIED = "disqualified"
    SUPPRESSED = "suppressed"
    ERASED = "erased"


class Tier(StrEnum):
    HOT = "hot"
    WARM = "warm"
    NURTURE = "nurture"
    COLD = "cold"


class SourceRef(OutputModel):
    """Where an input event came from (lineage)."""

    event_id: EntityId
    topic: str
    partition: int
    offset: int


class LineageOmitted(OutputModel):
    """The input references a record does not list (beyond its bounded ``lineage``):
    how many, an order-independent digest (the sum modulo 2**256 of the SHA-256 of
    each omitted reference, see ``operators/lineage.py``) and where they were listed:
    the ``audit_id`` prefix of the investor's audit rows."""

    count: Annotated[int, Field(ge=1)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    audit: str | None = None


class Interval(OutputModel):
    low: Probability
    high: Probability
    level: Probability


class ScoreInterval(OutputModel):
    """An interval on a 0-100 scale (ESG alignment, readiness); see
    ``operators/degradation.py`` for what each one's spread is made of."""

    low: Score100
    high: Score100
    level: Probability


class StaleSource(OutputModel):
    """A signal source that was stale at the lead's event time: what it stated counts for
    ``trust`` (halving per further ``max_staleness`` of silence), the rest went to the prior."""

    source: str
    last_signal: UtcDatetime  #: its last signal before the lead's event time
    stale_since: UtcDatetime  #: last signal + ``sources.<name>.max_staleness``
    trust: Probability
    catalog_share: Probability  #: share of the catalog's properties whose facts it stated


class Contribution(OutputModel):
    feature: str
    value: float
    contribution: float


class SourceWeights(OutputModel):
    """Share of the explanation owed to each data source; the shares sum to 1."""

    property_epc: Probability
    certifications: Probability
    climate_risk: Probability
    engagement: Probability
    profile: Probability


class Explanation(OutputModel):
    top_positive: Annotated[list[Contribution], Field(max_length=5)]
    top_negative: Annotated[list[Contribution], Field(max_length=5)]
    source_weights: SourceWeights
    prior_reasons: Annotated[list[str], Field(max_length=6)] = []
    #: Signal sources stale at the lead's event time (empty: none; ``null`` in records
    #: written before sources were watched).
    stale_sources: Annotated[list[StaleSource], Field(max_length=20)] | None = None
    #: Share of the lead's evidence that was stale and went to the prior: the prior's
    #: effective weight is ``prior_weight + (1 - prior_weight) * stale_evidence_share``
    #: (``null`` in records written before).
    stale_evidence_share: Probability | None = None


class EsgAlignment(OutputModel):
    score: Score100
    components: dict[str, Score100]
    #: ``null`` in records written before alignment had an interval.
    interval: ScoreInterval | None = None


class ModelInfo(OutputModel):
    model_version: str
    feature_set_version: str
    tenant_labels: Annotated[int, Field(ge=0)]
    prior_weight: Probability
    global_weight: Probability


class ClaimKind(StrEnum):
    ENERGY_EFFICIENT = "energy_efficient"
    CERTIFIED = "certified"
    LOW_CLIMATE_RISK = "low_climate_risk"
    SFDR_ARTICLE_8 = "sfdr_article_8"
    SFDR_ARTICLE_9 = "sfdr_article_9"
    UK_SDR_LABEL = "uk_sdr_label"


class Claim(OutputModel):
    property_id: EntityId
    claim: ClaimKind
    evidence: Annotated[str, Field(max_length=256)]


class RemovedClaim(OutputModel):
    property_id: EntityId
    claim: ClaimKind
    reason: Annotated[str, Field(max_length=256)]


class OutreachStep(OutputModel):
    order: Annotated[int, Field(ge=1, le=10)]
    channel: Literal["email", "phone", "sms", "meeting_invite"]
    action: Annotated[str, Field(max_length=128)]
    wait_days: Annotated[float, Field(ge=0, le=90)]
    trigger: Annotated[str, Field(max_length=128)]
    escalation: bool
    #: The earliest instant the region's contact rules allow for this step (quiet hours in
    #: the investor's local time, frequency caps counting earlier plans).
    at: UtcDatetime | None = None


class OutreachPlan(OutputModel):
    plan_id: str
    agent_version: str
    steps: Annotated[list[OutreachStep], Field(max_length=10)]
    #: The time zones whose quiet hours the steps' instants respect: the investor's own,
    #: or every zone of their country when they stated none.
    time_zones: Annotated[list[str], Field(max_length=10)] = []
    lead_properties: Annotated[list[EntityId], Field(max_length=5)]
    claims: Annotated[list[Claim], Field(max_length=20)]


class OutreachMessage(OutputModel):
    """One plan step's message, rendered from a template (``operators/outreach_messages.py``):
    it states only the claims the compliance check verified. Personal data: it goes to
    the CRM that sends it, and is never logged; ``digest`` names it elsewhere."""

    order: Annotated[int, Field(ge=1, le=10)]
    channel: Literal["email", "phone", "sms", "meeting_invite"]
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")]
    template: Annotated[str, Field(max_length=64)]  #: ``<channel>.<language>``
    subject: Annotated[str, Field(max_length=256)] | None = None  #: e-mail only
    text: Annotated[str, Field(max_length=6000)]
    html: Annotated[str, Field(max_length=20000)] | None = None  #: e-mail only, autoescaped
    #: The verified claims it states, ``<property_id>:<claim>``.
    claims: Annotated[list[str], Field(max_length=20)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  #: sha256 of subject, text, html


class DroppedStep(OutputModel):
    """A plan step whose message could not be rendered lawfully: not sent."""

    order: Annotated[int, Field(ge=1, le=10)]
    channel: Literal["email", "phone", "sms", "meeting_invite"]
    reason: Annotated[str, Field(max_length=256)]


class BlockedChannel(OutputModel):
    channel: ContactChannel
    rule_id: str
    reason: Annotated[str, Field(max_length=256)]


class ComplianceVerdict(StrEnum):
    ALLOWED = "allowed"
    RESTRICTED = "restricted"  #: some channels or claims removed
    BLOCKED = "blocked"  #: no lawful channel: do not contact
    UNSURE = "unsure"  #: rules cannot decide: a person must


class Compliance(OutputModel):
    verdict: ComplianceVerdict
    pack: Literal["EU", "UK", "US", "SG"] | None  #: ``None``: no pack covers the jurisdiction
    agent_version: str
    allowed_channels: list[ContactChannel]
    blocked_channels: list[BlockedChannel]
    removed_claims: list[RemovedClaim]
    rules_applied: list[str]


# -------------------------------------------------------------------- leads.scored


class ScoredLead(OutputModel):
    """``leads.scored`` — one record per scoring of an investor.

    Key: ``<tenant>/<investor_id>``."""

    schema_version: Literal[1]
    idempotency_key: str
    tenant: TenantId
    investor_id: EntityId
    event_time: UtcDatetime  #: event time the score is as of (end of the window)
    processed_at: UtcDatetime  #: processing-time
    probability: HorizonProbability
    score: Annotated[int, Field(ge=0, le=100)]
    interval: Interval
    tier: Tier
    esg_alignment: EsgAlignment
    intent: Score100
    engagement_readiness: Score100
    #: ``null`` in records written before readiness had an interval.
    engagement_readiness_interval: ScoreInterval | None = None
    data_freshness_days: Annotated[float, Field(ge=0)] | None
    explanation: Explanation
    model: ModelInfo
    features: dict[str, float]
    state: LeadState
    outreach_plan: OutreachPlan | None = None
    compliance: Compliance | None = None
    #: The input events behind this score: engagements, the property signals whose
    #: facts they were enriched with, and notices; the most recent 64 at most.
    lineage: Annotated[list[SourceRef], Field(max_length=64)]
    #: The contributing inputs not listed in ``lineage`` (``null``: none).
    lineage_omitted: LineageOmitted | None = None


# -------------------------------------------------------------------- leads.review


class ReviewReason(OutputModel):
    code: Literal[
        "ambiguous_score",
        "wide_interval",
        "ticket_over_limit",
        "stale_esg_data",
        "self_reported_esg_data",
        "conflicting_esg_data",
        "compliance_unsure",
        "reviewer_needs_info",
    ]
    detail: Annotated[str, Field(max_length=256)]
    check: Annotated[str, Field(max_length=256)]


class ReviewCase(OutputModel):
    """``leads.review`` — a case for a person to decide. Key: ``<tenant>/<investor_id>``."""

    schema_version: Literal[1]
    idempotency_key: str
    case_id: DerivedId
    tenant: TenantId
    investor_id: EntityId
    event_time: UtcDatetime
    processed_at: UtcDatetime  #: processing-time
    reasons: Annotated[list[ReviewReason], Field(min_length=1, max_length=8)]
    probability: HorizonProbability
    score: Annotated[int, Field(ge=0, le=100)]
    interval: Interval
    tier: Tier
    state: LeadState
    lineage: Annotated[list[SourceRef], Field(max_length=64)]
    lineage_omitted: LineageOmitted | None = None
    #: The model and feature set that scored the lead (``null`` in records written
    #: before they were carried here).
    model_version: str | None = None
    feature_set_version: str | None = None


# ---------------------------------------------------------------------- crm.handoff


class CrmHandoff(OutputModel):
    """``crm.handoff`` — a qualified lead for the CRM; upsert by its key,
    ``<tenant>/<investor_id>`` (two tenants' ``inv-1`` are two leads)."""

    schema_version: Literal[1]
    idempotency_key: str
    qualification_id: DerivedId
    tenant: TenantId
    investor_id: EntityId
    event_time: UtcDatetime
    processed_at: UtcDatetime  #: processing-time
    score: Annotated[int, Field(ge=0, le=100)]
    probability: HorizonProbability
    tier: Tier
    esg_alignment_score: Score100
    esg_min_epc_band: str | None
    esg_required_certifications: list[str]
    sfdr_target: str | None
    uk_sdr_label: str | None
    target_asset_classes: list[str]
    target_countries: list[str]
    ticket_max_eur: float | None
    consent: dict[ContactChannel, ConsentStatus]
    contact_ref: str | None  #: salted hash of the contact details, for matching in the CRM
    outreach_plan: OutreachPlan
    compliance: Compliance
    approved_by_review: bool
    #: The plan's steps' messages (the plan lists only the steps that have one), and the
    #: steps dropped because theirs could not be rendered (empty in older records).
    messages: Annotated[list[OutreachMessage], Field(max_length=10)] = []
    dropped_steps: Annotated[list[DroppedStep], Field(max_length=10)] = []
    #: What decided, and on which inputs (``null``/empty in records written before
    #: they were carried here); see :class:`ScoredLead`.
    model_version: str | None = None
    feature_set_version: str | None = None
    lineage: Annotated[list[SourceRef], Field(max_length=64)] = []
    lineage_omitted: LineageOmitted | None = None


# --------------------------------------------------------------------- leads.shadow


class ShadowScore(OutputModel):
    """``leads.shadow`` — a challenger's score next to the champion's.

    Key: ``<tenant>/<investor_id>``.

    Never a decision: only ``decided_by`` says which of the two the lead on
    ``leads.scored`` carries (``challenger`` for the canary share of investors).
    """

    schema_version: Literal[1]
    idempotency_key: str
    tenant: TenantId
    investor_id: str
    event_time: UtcDatetime
    processed_at: UtcDatetime  #: processing-time
    champion_version: str
    challenger_version: str
    champion_probability: Probability
    challenger_probability: Probability
    champion_tier: Tier
    challenger_tier: Tier
    decided_by: Literal["champion", "challenger"]
    feature_set_version: str


# ----------------------------------------------------------------------- ops.alerts


class AlertKind(StrEnum):
    DRIFT_DETECTED = "drift_detected"
    RETRAINING_TRIGGERED = "retraining_triggered"
    MODEL_PROMOTED = "model_promoted"
    MODEL_ROLLED_BACK = "model_rolled_back"
    #: A tenant's model was frozen by command (no automatic promotion or rollback) ...
    MODEL_PINNED = "model_pinned"
    #: ... or released again.
    MODEL_UNPINNED = "model_unpinned"
    #: A registry version started scoring in shadow (and canary) against the champion.
    CHALLENGER_STARTED = "challenger_started"
    #: A drift-retraining challenger did not beat the champion by its last planned look
    #: and was dropped (the evidence in the details).
    CHALLENGER_RETIRED = "challenger_retired"
    FEED_STALE = "feed_stale"
    #: A source that went stale sent a signal again.
    FEED_RECOVERED = "feed_recovered"
    #: A consumed position was no longer on the broker; reading restarted elsewhere.
    OFFSETS_RESET = "offsets_reset"
    #: The CRM refused our credentials (401/403): crm-sync stopped sending until fixed.
    CRM_AUTH_FAILED = "crm_auth_failed"
    #: crm-sync's circuit breaker opened (the CRM keeps failing) or closed again.
    CRM_BREAKER_OPENED = "crm_breaker_opened"
    CRM_BREAKER_CLOSED = "crm_breaker_closed"


class Alert(OutputModel):
    """``ops.alerts`` — something an operator should know. Key: ``tenant``.

    ``tenant`` is ``null`` for alerts about the deployment rather than one tenant
    (``offsets_reset``: a partition carries every tenant's events).
    """

    schema_version: Literal[1]
    idempotency_key: str
    tenant: TenantId | None
    kind: AlertKind
    detector: str
    subject: str
    event_time: UtcDatetime
    processed_at: UtcDatetime  #: processing-time
    details: dict[str, float | str]


# ------------------------------------------------------------------------ leads.dlq


class DlqReason(StrEnum):
    DECODE_ERROR = "decode_error"  #: not JSON
    SCHEMA_ERROR = "schema_error"  #: JSON, but not a valid event of its topic
    UNKNOWN_TOPIC = "unknown_topic"
    UNKNOWN_TENANT = "unknown_tenant"
    KEY_MISMATCH = "key_mismatch"  #: message key is not the event's entity id
    DUPLICATE = "duplicate"  #: an event_id already seen (redelivery)
    LATE = "late"  #: older than its window's allowed lateness
    ERASED_SUBJECT = "erased_subject"  #: investor erased; payload withheld
    UNKNOWN_CASE = "unknown_case"  #: review decision for no open case
    PROCESSING_ERROR = "processing_error"  #: an operator failed on this event
    FUTURE_EVENT_TIME = "future_event_time"  #: event_time too far ahead of its ingest time
    UNAUTHORIZED = "unauthorized"  #: review decision unsigned, badly signed or by an unknown reviewer
    CRM_REJECTED = "crm_rejected"  #: the CRM refused a handoff as invalid (400/404/422)
    #: an authentic ``ops.control`` command that cannot be applied (unknown version, ...)
    REJECTED_COMMAND = "rejected_command"


class DeadLetter(OutputModel):
    """``leads.dlq`` — an input the flow could not use, with its original bytes.

    Key: the original message key. The value of a message about an investor is
    ``sealed`` (encrypted under that investor's key, which an erasure destroys), and
    withheld (``null``) once the investor is erased or when the investor cannot be told. A value longer than
    ``dlq.max_value_bytes`` keeps only its first bytes (``truncated``), with the
    original length and SHA-256, so that a dead letter always fits the producer's
    message limit.
    """

    schema_version: Literal[1]
    idempotency_key: str
    reason: DlqReason
    detail: Annotated[str, Field(max_length=1024)]
    topic: str
    partition: int
    offset: int
    timestamp: UtcDatetime | None
    key_b64: str | None
    value_b64: str | None
    #: ``value_b64`` holds only a prefix of the original value.
    truncated: bool
    #: Length in bytes and hex SHA-256 of the original value (``null`` without one).
    value_length: int | None
    value_sha256: str | None
    #: ``value_b64`` is encrypted under the investor's key (crypto-shredding: an erasure
    #: destroys the key); ``operators.erasure.open_dead_letter`` opens it with the key store
    #: (``dlq.key_store``). ``value_sha256`` is then null.
    sealed: bool = False
    tenant: str | None
    event_id: str | None
    processed_at: UtcDatetime  #: processing-time
