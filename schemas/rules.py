"""Rule packs as data: the shape of compliance and claim rules (``operators/compliance_packs``)."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from esg_leads.schemas.common import CountryCode, TimeZoneName


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactRule(_Rule):
    id: str
    channel: Literal["email", "phone", "sms"]
    subscriber: Literal["individual", "corporate"]
    #: ``consent``: opted in; ``consent_or_soft_opt_in``: opted in or an existing
    #: relationship; ``not_opted_out``: anything but an objection.
    requires: Literal["consent", "consent_or_soft_opt_in", "not_opted_out"]
    #: Numbers on a do-not-call register (TPS/CTPS, National DNC) may not be called.
    do_not_call: bool
    citation: str


#: Outreach step channels; a meeting invitation is sent as an e-mail.
StepChannel = Literal["email", "phone", "sms", "meeting_invite"]


class QuietHours(_Rule):
    """No contact over ``channels`` from ``start`` to ``end``, in the investor's local time
    (a window that wraps midnight when ``end <= start``)."""

    id: str
    channels: list[StepChannel]
    start: time
    end: time
    citation: str

    @model_validator(mode="after")
    def _not_all_day(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(f"{self.id}: quiet hours from {self.start} to {self.end} "
                             "would forbid every hour of the day")
        return self


class FrequencyCap(_Rule):
    """At most ``max`` contacts over ``channel`` in any ``per_days`` days (sliding)."""

    id: str
    channel: StepChannel
    max: Annotated[int, Field(ge=1, le=100)]
    per_days: Annotated[int, Field(ge=1, le=90)]
    citation: str


class ContactPolicy(_Rule):
    """When and how often contact may happen, in the pack's region."""

    #: Time zones of each jurisdiction (IANA names). An investor without a stated zone is
    #: contacted only at hours allowed in every zone of their country.
    time_zones: dict[CountryCode, Annotated[list[TimeZoneName], Field(min_length=1)]]
    quiet_hours: list[QuietHours] = []
    caps: list[FrequencyCap] = []


class RulePack(_Rule):
    pack: Literal["EU", "UK", "US", "SG"]
    name: str
    jurisdictions: list[CountryCode]
    opt_out: str
    rules: list[ContactRule]
    contact: ContactPolicy

    @model_validator(mode="after")
    def _every_jurisdiction_has_a_zone(self) -> RulePack:
        missing = sorted(set(self.jurisdictions) - set(self.contact.time_zones))
        if missing:
            raise ValueError(f"pack {self.pack}: no time zone for {', '.join(missing)}")
        return self


class ClaimRule(_Rule):
    claim: Literal["energy_efficient", "certified", "low_climate_risk", "sfdr_article_8",
                   "sfdr_article_9", "uk_sdr_label"]
    requires: list[str]
    citation: str


class ClaimRules(_Rule):
    claims: list[ClaimRule]
