"""Rule packs as data: the shape of compliance and claim rules (``operators/compliance_packs``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.common import CountryCode


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


class RulePack(_Rule):
    pack: Literal["EU", "UK", "US"]
    name: str
    jurisdictions: list[CountryCode]
    opt_out: str
    rules: list[ContactRule]


class ClaimRule(_Rule):
    claim: Literal["energy_efficient", "certified", "low_climate_risk", "sfdr_article_8",
                   "sfdr_article_9", "uk_sdr_label"]
    requires: list[str]
    citation: str


class ClaimRules(_Rule):
    claims: list[ClaimRule]
