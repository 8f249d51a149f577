"""Hand-made input messages for flow tests: readable, one function per topic."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import orjson

from esg_leads.schemas.records import RawMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday morning
_offsets = itertools.count()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def message(topic: str, key: str | None, payload: dict | bytes, ingest: datetime,
            partition: int = 0) -> RawMessage:
    value = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return RawMessage(topic, partition, next(_offsets), int(ingest.timestamp() * 1000),
                      key.encode() if key is not None else None, value)


def envelope(event_id: str, when: datetime, tenant: str = "acme") -> dict:
    return {"tenant": tenant, "event_id": event_id, "event_time": when.isoformat(),
            "source": "test"}


def signal(event_id: str, property_id: str, when: datetime, *, epc: str = "B",
           certified: bool = True, flood: int = 10, tenant: str = "acme",
           value_eur: float = 20e6) -> RawMessage:
    payload = envelope(event_id, when, tenant) | {
        "property_id": property_id, "country": "GB", "asset_class": "office",
        "floor_area_m2": 5000.0, "value_eur": value_eur, "epc_band": epc,
        "verification": "third_party", "data_as_of": (when - timedelta(days=30)).date().isoformat(),
        "climate_risk": {"flood": flood, "wildfire": 5, "heat": 10},
    }
    if certified:
        payload["certifications"] = [{"scheme": "BREEAM", "level": "excellent", "verified": True}]
    return message("esg.property-signals", property_id, payload, when)


def profile(event_id: str, investor_id: str, when: datetime, *, email_consent: str = "opted_in",
            tenant: str = "acme", email: str = "jane.doe@example.org") -> RawMessage:
    payload = envelope(event_id, when, tenant) | {
        "investor_id": investor_id, "investor_type": "family_office",
        "subscriber_type": "corporate", "jurisdiction": "GB",
        "preferences": {"min_epc_band": "B", "required_certifications": ["BREEAM"],
                        "sfdr_target": "article_8"},
        "target_countries": ["GB"], "target_asset_classes": ["office"],
        "ticket_min_eur": 5e6, "ticket_max_eur": 30e6,
        "consents": [{"channel": "email", "status": email_consent},
                     {"channel": "phone", "status": "opted_in"}],
        "contact": {"name": "Jane Doe", "email": email, "phone": "+44 20 7946 0000"},
    }
    return message("investor.profiles", investor_id, payload, when)


def engagement(event_id: str, investor_id: str, when: datetime, action: str = "property_view",
               property_id: str | None = "p-1", *, ingest: datetime | None = None,
               tenant: str = "acme", duration_s: float | None = 60.0) -> RawMessage:
    channel = {"email_open": "email", "email_click": "email", "reply": "email",
               "unsubscribe": "email", "meeting_booked": "meeting", "call": "phone"}.get(action, "web")
    payload = envelope(event_id, when, tenant) | {
        "investor_id": investor_id, "action": action, "channel": channel}
    if property_id is not None:
        payload["property_id"] = property_id
    if duration_s is not None and action == "property_view":
        payload["duration_s"] = duration_s
    return message("investor.engagements", investor_id, payload, ingest or when)


def outcome(event_id: str, investor_id: str, when: datetime, kind: str = "qualified", *,
            ingest: datetime | None = None, tenant: str = "acme") -> RawMessage:
    payload = envelope(event_id, when, tenant) | {"investor_id": investor_id, "kind": kind}
    return message("crm.outcomes", investor_id, payload, ingest or when)


def erasure(event_id: str, investor_id: str, when: datetime) -> RawMessage:
    payload = envelope(event_id, when) | {"investor_id": investor_id}
    return message("investor.erasure", investor_id, payload, when)


def duplicate_of(original: RawMessage, ingest: datetime) -> RawMessage:
    """The same bytes delivered again (a producer retry), at a later offset."""
    return RawMessage(original.topic, original.partition, next(_offsets),
                      int(ingest.timestamp() * 1000), original.key, original.value)


def review_decision(event_id: str, investor_id: str, case_id: str, when: datetime, *,
                    verdict: str = "approve", reviewer: str = "rev-1", key: str | None = None,
                    tenant: str = "acme", ingest: datetime | None = None) -> RawMessage:
    """A reviewer's verdict, signed with ``key`` (``None``: unsigned, as a forger sends it)."""
    from esg_leads.operators import review_auth
    from esg_leads.schemas.codec import decode_event

    payload = envelope(event_id, when, tenant) | {
        "investor_id": investor_id, "case_id": case_id, "verdict": verdict, "reviewer": reviewer}
    if key is not None:
        event = decode_event("lead.review-decisions", orjson.dumps(payload))
        payload["signature"] = review_auth.sign_decision(key, event)
    return message("lead.review-decisions", investor_id, payload, ingest or when)
