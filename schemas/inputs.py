"""Input topics: what producers write and the flow reads.

Every event carries the :class:`~schemas.common.Envelope` fields (``tenant``,
``event_id``, ``event_time``, ``source``); the Kafka message key is the entity id
named in each class's docstring.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from esg_leads.schemas.common import (
    AssetClass,
    BreeamLevel,
    ConsentStatus,
    ContactChannel,
    CountryCode,
    DerivedId,
    DgnbLevel,
    EngagementAction,
    EngagementChannel,
    EntityId,
    Envelope,
    EPCBand,
    InputModel,
    InvestorType,
    LeedLevel,
    OutcomeKind,
    PositiveEur,
    RetrofitKind,
    ReviewVerdict,
    RiskTolerance,
    SfdrArticle,
    ShortText,
    SubscriberType,
    TimeZoneName,
    UkSdrLabel,
    UtcDatetime,
    Verification,
)

# ------------------------------------------------------------------ property signals

#: Calendar dates a source may state (certificates, data as-of dates): a date before
#: 1900 or from 2100 on is a typo or an attack, never a fact about a building.
PlausibleDate = Annotated[date, Field(ge=date(1900, 1, 1), lt=date(2100, 1, 1))]
#: A stated date may be at most this far after the event that states it (the source's
#: day may have begun already in a zone east of UTC).
_DATE_AHEAD = timedelta(days=1)


def _not_after_event(name: str, value: date | None, event_day: date) -> None:
    if value is not None and value > event_day + _DATE_AHEAD:
        raise ValueError(f"{name} {value.isoformat()} is after the event's own date "
                         f"{event_day.isoformat()}: a source cannot know the future")


class LeedCertification(InputModel):
    scheme: Literal["LEED"]
    level: LeedLevel
    verified: bool
    awarded_on: PlausibleDate | None = None


class BreeamCertification(InputModel):
    scheme: Literal["BREEAM"]
    level: BreeamLevel
    verified: bool
    awarded_on: PlausibleDate | None = None


class DgnbCertification(InputModel):
    scheme: Literal["DGNB"]
    level: DgnbLevel
    verified: bool
    awarded_on: PlausibleDate | None = None


class NabersCertification(InputModel):
    """NABERS rates in stars, 0 to 6 in half-star steps."""

    scheme: Literal["NABERS"]
    stars: Annotated[float, Field(ge=0, le=6, multiple_of=0.5)]
    verified: bool
    awarded_on: PlausibleDate | None = None


Certification = Annotated[
    LeedCertification | BreeamCertification | DgnbCertification | NabersCertification,
    Field(discriminator="scheme"),
]


class ClimateRisk(InputModel):
    """Physical climate-risk scores, 0 (negligible) to 100 (severe)."""

    flood: Annotated[int, Field(ge=0, le=100)]
    wildfire: Annotated[int, Field(ge=0, le=100)]
    heat: Annotated[int, Field(ge=0, le=100)]


class Retrofit(InputModel):
    kind: RetrofitKind
    year: Annotated[int, Field(ge=1950, le=2100)]


class PropertySignal(Envelope):
    """``esg.property-signals`` — the ESG facts of one property. Key: ``property_id``.

    A signal is a full snapshot of what the source knows at ``data_as_of``; optional
    fields a source does not know are omitted (``null``), never guessed.
    """

    property_id: EntityId
    country: CountryCode
    region: ShortText | None = None
    asset_class: AssetClass
    floor_area_m2: Annotated[float, Field(gt=0, le=5_000_000)]
    value_eur: PositiveEur | None = None
    epc_band: EPCBand | None = None
    #: UK SAP rating (domestic) where the source has it; 1 and upwards, >100 for net exporters.
    sap_score: Annotated[int, Field(ge=1, le=150)] | None = None
    energy_star_score: Annotated[int, Field(ge=1, le=100)] | None = None
    certifications: Annotated[list[Certification], Field(max_length=8)] = []
    energy_intensity_kwh_m2: Annotated[float, Field(ge=0, le=5_000)] | None = None
    carbon_intensity_kgco2e_m2: Annotated[float, Field(ge=0, le=2_000)] | None = None
    retrofits: Annotated[list[Retrofit], Field(max_length=20)] = []
    climate_risk: ClimateRisk | None = None
    verification: Verification
    data_as_of: PlausibleDate

    @model_validator(mode="after")
    def _dates_not_ahead(self) -> PropertySignal:
        # Data "as of" next year would make its age negative, and every freshness
        # figure derived from it meaningless (or infinite).
        day = self.event_time.date()
        _not_after_event("data_as_of", self.data_as_of, day)
        for certification in self.certifications:
            _not_after_event("awarded_on", certification.awarded_on, day)
        return self


# ------------------------------------------------------------------ investor profile


class ConsentRecord(InputModel):
    channel: ContactChannel
    status: ConsentStatus
    updated_at: UtcDatetime | None = None


class EsgPreferences(InputModel):
    """What the investor *says* they want. Behaviour may tell a different story."""

    min_epc_band: EPCBand | None = None
    required_certifications: Annotated[list[Literal["LEED", "BREEAM", "NABERS", "DGNB"]], Field(max_length=4)] = []
    sfdr_target: SfdrArticle | None = None
    uk_sdr_label: UkSdrLabel | None = None
    max_climate_risk: Annotated[int, Field(ge=0, le=100)] | None = None
    excluded_asset_classes: Annotated[list[AssetClass], Field(max_length=9)] = []


class ContactDetails(InputModel):
    """Personal contact data. The flow hashes it on arrival and never emits it."""

    name: ShortText | None = None
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    phone: Annotated[str, Field(max_length=32, pattern=r"^\+?[0-9 ()-]{4,31}$")] | None = None


class InvestorProfile(Envelope):
    """``investor.profiles`` — stated preferences and contact rules. Key: ``investor_id``."""

    investor_id: EntityId
    investor_type: InvestorType
    subscriber_type: SubscriberType
    jurisdiction: CountryCode
    preferences: EsgPreferences = EsgPreferences()
    target_countries: Annotated[list[CountryCode], Field(max_length=50)] = []
    target_asset_classes: Annotated[list[AssetClass], Field(max_length=9)] = []
    ticket_min_eur: PositiveEur | None = None
    ticket_max_eur: PositiveEur | None = None
    risk_tolerance: RiskTolerance | None = None
    consents: Annotated[list[ConsentRecord], Field(max_length=3)] = []
    #: Listed on a national do-not-call register (TPS, CTPS, the US National DNC list).
    do_not_call: bool = False
    #: On the firm's own do-not-contact list (kept in the CRM): no channel at all.
    do_not_contact: bool = False
    #: Where the investor is (IANA name): quiet hours are in this zone. Without it, only
    #: hours allowed in every zone of the jurisdiction are used.
    time_zone: TimeZoneName | None = None
    contact: ContactDetails | None = None

    @model_validator(mode="after")
    def _ticket_range(self) -> InvestorProfile:
        if self.ticket_min_eur and self.ticket_max_eur and self.ticket_min_eur > self.ticket_max_eur:
            raise ValueError("ticket_min_eur must not exceed ticket_max_eur")
        return self


# ------------------------------------------------------------------------ engagements


class Engagement(Envelope):
    """``investor.engagements`` — one interaction. Key: ``investor_id``."""

    investor_id: EntityId
    action: EngagementAction
    channel: EngagementChannel
    campaign_id: EntityId | None = None
    property_id: EntityId | None = None
    duration_s: Annotated[float, Field(ge=0, le=86_400)] | None = None


# ----------------------------------------------------------------------- CRM outcomes


class Outcome(Envelope):
    """``crm.outcomes`` — a delayed label from the CRM. Key: ``investor_id``."""

    investor_id: EntityId
    kind: OutcomeKind
    deal_value_eur: PositiveEur | None = None


# --------------------------------------------------------------------------- erasure


class ErasureRequest(Envelope):
    """``investor.erasure`` — right to erasure (GDPR art. 17). Key: ``investor_id``."""

    investor_id: EntityId
    #: ``sha256=<hex>`` HMAC of the request under the tenant's ``erasure_signing_key``
    #: (operators/erasure_auth.py); required when the tenant has one.
    signature: Annotated[str, StringConstraints(max_length=128)] | None = None


# ------------------------------------------------------------------ review decisions


class ReviewDecision(Envelope):
    """``lead.review-decisions`` — a reviewer's verdict on a case. Key: ``investor_id``."""

    investor_id: EntityId
    case_id: DerivedId
    verdict: ReviewVerdict
    reviewer: EntityId
    note: ShortText | None = None
    #: ``sha256=<64 hex digits>``: HMAC-SHA256 of the decision's canonical form under the
    #: tenant's ``review_signing_key`` (see :mod:`operators.review_auth`). Optional here so
    #: that an unsigned decision reaches the flow and is dead-lettered as ``unauthorized``
    #: (a readable reason) rather than as a schema error.
    signature: Annotated[str, StringConstraints(max_length=128)] | None = None


# --------------------------------------------------------------------- model control


class ModelAction(StrEnum):
    """What an ``ops.control`` command does to a tenant's serving model."""

    PROMOTE = "promote"  #: serve ``version`` (its predecessor stays in shadow, watched)
    PIN = "pin"  #: serve ``version`` and freeze: no automatic promotion or rollback
    UNPIN = "unpin"  #: the automatic rules apply again (``version`` is not used)
    ROLLBACK = "rollback"  #: serve ``version`` again (``previous``: the model it replaced)


#: A registry version (``m-`` and 4 to 12 hex digits, a prefix resolves) or ``previous``.
ModelVersionRef = Annotated[str, StringConstraints(pattern=r"^(m-[0-9a-f]{4,12}|previous)$")]


class ModelCommand(Envelope):
    """``ops.control`` — an operator's command to a tenant's model lifecycle. Key: ``tenant``.

    Obeyed at its position in the input order (see :mod:`operators.model_lifecycle`);
    accepted only when signed with the tenant's ``control_signing_key``
    (:mod:`operators.control_auth`).
    """

    action: ModelAction
    version: ModelVersionRef | None = None
    #: Who gave the command (kept in the alert and the audit row).
    operator: EntityId
    note: ShortText | None = None
    signature: Annotated[str, StringConstraints(max_length=128)] | None = None

    @model_validator(mode="after")
    def _version_needed(self) -> ModelCommand:
        if self.action is not ModelAction.UNPIN and self.version is None:
            raise ValueError(f"{self.action.value} needs a version")
        return self


InputEvent = (PropertySignal | InvestorProfile | Engagement | Outcome | ErasureRequest
              | ReviewDecision | ModelCommand)

__all__ = [
    "BreeamCertification",
    "Certification",
    "ClimateRisk",
    "ConsentRecord",
    "ContactDetails",
    "DgnbCertification",
    "Engagement",
    "ErasureRequest",
    "EsgPreferences",
    "InputEvent",
    "InvestorProfile",
    "ModelAction",
    "ModelCommand",
    "LeedCertification",
    "NabersCertification",
    "Outcome",
    "PropertySignal",
    "Retrofit",
    "ReviewDecision",
]
