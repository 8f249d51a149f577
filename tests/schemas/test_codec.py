"""Schemas: round trips, strict rejections, unknown-field policy, JSON Schema export."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.schemas.codec import DecodeFailure, decode_event, encode, json_schema
from esg_leads.schemas.inputs import Engagement, InvestorProfile, PropertySignal
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.topics import ALL_TOPICS, INPUT_TOPICS

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
sources = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,20}", fullmatch=True)
tenants = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}", fullmatch=True)
times = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1),
                     timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                timezone(timedelta(hours=-8))]))

engagements = st.fixed_dictionaries(
    {
        "tenant": tenants,
        "event_id": ids,
        "event_time": times.map(lambda d: d.isoformat()),
        "source": sources,
        "investor_id": ids,
        "action": st.sampled_from(["email_open", "property_view", "reply", "meeting_booked"]),
        "channel": st.sampled_from(["email", "web", "meeting"]),
    },
    optional={
        "property_id": ids,
        "campaign_id": ids,
        "duration_s": st.floats(min_value=0, max_value=86_400, allow_nan=False),
    },
)

signals = st.fixed_dictionaries(
    {
        "tenant": tenants,
        "event_id": ids,
        "event_time": times.map(lambda d: d.isoformat()),
        "source": sources,
        "property_id": ids,
        "country": st.sampled_from(["GB", "DE", "US", "AU", "NL"]),
        "asset_class": st.sampled_from(["office", "logistics", "residential"]),
        "floor_area_m2": st.floats(min_value=1, max_value=5e6, allow_nan=False),
        "verification": st.sampled_from(["third_party", "self_reported"]),
        # Before every drawn event_time: a source states what it knew by then.
        "data_as_of": st.dates(date(1900, 1, 1), date(2000, 12, 31)).map(lambda d: d.isoformat()),
    },
    optional={
        "epc_band": st.sampled_from(["A+", "A", "B", "C", "D", "E", "F", "G"]),
        "energy_star_score": st.integers(1, 100),
        "certifications": st.lists(st.one_of(
            st.fixed_dictionaries({"scheme": st.just("LEED"), "verified": st.booleans(),
                                   "level": st.sampled_from(["certified", "silver", "gold", "platinum"])}),
            st.fixed_dictionaries({"scheme": st.just("NABERS"), "verified": st.booleans(),
                                   "stars": st.integers(0, 12).map(lambda h: h / 2)}),
        ), max_size=3),
        "climate_risk": st.fixed_dictionaries({k: st.integers(0, 100) for k in ("flood", "wildfire", "heat")}),
    },
)


@given(engagements)
def test_engagement_round_trip(payload: dict) -> None:
    event = decode_event("investor.engagements", orjson.dumps(payload))
    assert isinstance(event, Engagement)
    assert event.event_time.utcoffset() is not None
    assert event.event_time == datetime.fromisoformat(payload["event_time"])
    again = decode_event("investor.engagements", encode(event))
    assert again == event


@given(signals)
@settings(max_examples=150)
def test_property_signal_round_trip(payload: dict) -> None:
    event = decode_event("esg.property-signals", orjson.dumps(payload))
    assert isinstance(event, PropertySignal)
    assert decode_event("esg.property-signals", encode(event)) == event


@pytest.mark.parametrize("field,value", [
    ("data_as_of", "9999-12-31"),  # issue 14 finding 1: overflowed the freshness feature
    ("data_as_of", "2100-01-01"),
    ("data_as_of", "1899-12-31"),
    ("data_as_of", "2026-03-03"),  # two days after the event that states it
])
def test_implausible_or_future_dates_in_a_signal_are_schema_errors(field: str, value: str) -> None:
    payload = {"tenant": "acme", "event_id": "s-1", "event_time": "2026-03-01T09:00:00Z",
               "source": "epc", "property_id": "p-1", "country": "GB", "asset_class": "office",
               "floor_area_m2": 100.0, "verification": "third_party", field: value}
    with pytest.raises(DecodeFailure) as failure:
        decode_event("esg.property-signals", orjson.dumps(payload))
    assert failure.value.reason is DlqReason.SCHEMA_ERROR and field in failure.value.detail
    payload[field] = "2026-03-02"  # the next day is fine: the source may sit east of UTC
    assert decode_event("esg.property-signals", orjson.dumps(payload)).data_as_of.day == 2


@given(engagements, st.sampled_from(["event_time", "tenant", "event_id", "investor_id", "action"]))
def test_missing_required_field_is_a_schema_error(payload: dict, field: str) -> None:
    payload.pop(field)
    with pytest.raises(DecodeFailure) as failure:
        decode_event("investor.engagements", orjson.dumps(payload))
    assert failure.value.reason is DlqReason.SCHEMA_ERROR
    assert field in failure.value.detail


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for topic in INPUT_TOPICS:
        try:
            decode_event(topic, data)
        except DecodeFailure as failure:
            assert failure.reason in (DlqReason.DECODE_ERROR, DlqReason.SCHEMA_ERROR)


def _engagement(**changes) -> bytes:
    payload = {"tenant": "acme", "event_id": "e1", "event_time": "2026-01-01T10:00:00+00:00",
               "source": "web", "investor_id": "inv-1", "action": "property_view",
               "channel": "web", "property_id": "p-1"}
    payload.update(changes)
    return orjson.dumps({k: v for k, v in payload.items() if v is not ...})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"event_time": "2026-01-01T10:00:00"}, "timezone"),  # naive timestamp
        ({"event_time": 1767261600}, "event_time"),  # a number is not a timestamp
        ({"event_time": "1999-12-31T23:00:00+00:00"}, "greater than or equal to 2000"),
        ({"duration_s": "12"}, "duration_s"),  # strict: no string-to-number coercion
        ({"duration_s": -1.0}, "greater than or equal"),
        ({"action": "teleport"}, "action"),
        ({"tenant": "Not A Slug"}, "tenant"),
        ({"event_id": "x" * 65}, "event_id"),
        ({"investor_id": ""}, "investor_id"),
    ],
)
def test_strict_rejections(changes: dict, fragment: str) -> None:
    with pytest.raises(DecodeFailure) as failure:
        decode_event("investor.engagements", _engagement(**changes))
    assert failure.value.reason is DlqReason.SCHEMA_ERROR
    assert fragment in failure.value.detail


def test_unknown_fields_are_ignored_on_inputs() -> None:
    event = decode_event("investor.engagements", _engagement(new_field_from_v2="x"))
    assert not hasattr(event, "new_field_from_v2")


def test_bad_json_is_a_decode_error_and_detail_has_no_payload() -> None:
    with pytest.raises(DecodeFailure) as failure:
        decode_event("investor.profiles", b'{"contact": {"email": "secret@example.org"')
    assert failure.value.reason is DlqReason.DECODE_ERROR
    assert "secret@example.org" not in failure.value.detail


def test_validation_detail_never_echoes_personal_data() -> None:
    payload = {"tenant": "acme", "event_id": "e1", "event_time": "2026-01-01T10:00:00Z",
               "source": "crm", "investor_id": "inv-1", "investor_type": "family_office",
               "subscriber_type": "individual", "jurisdiction": "GB",
               "contact": {"email": "not-an-email secret@example.org"}}
    with pytest.raises(DecodeFailure) as failure:
        decode_event("investor.profiles", orjson.dumps(payload))
    assert "secret" not in failure.value.detail


@pytest.mark.parametrize(
    ("cert", "ok"),
    [
        ({"scheme": "BREEAM", "level": "excellent", "verified": True}, True),
        ({"scheme": "BREEAM", "level": "gold", "verified": True}, False),  # a LEED level
        ({"scheme": "NABERS", "stars": 5.5, "verified": False}, True),
        ({"scheme": "NABERS", "stars": 5.25, "verified": False}, False),
        ({"scheme": "NABERS", "stars": 6.5, "verified": False}, False),
        ({"scheme": "WELL", "level": "gold", "verified": True}, False),
    ],
)
def test_certification_levels_are_checked_per_scheme(cert: dict, ok: bool) -> None:
    payload = {"tenant": "acme", "event_id": "e1", "event_time": "2026-01-01T10:00:00Z",
               "source": "epc", "property_id": "p-1", "country": "GB", "asset_class": "office",
               "floor_area_m2": 100.0, "verification": "third_party", "data_as_of": "2025-06-01",
               "certifications": [cert]}
    if ok:
        decode_event("esg.property-signals", orjson.dumps(payload))
    else:
        with pytest.raises(DecodeFailure):
            decode_event("esg.property-signals", orjson.dumps(payload))


@pytest.mark.parametrize(
    ("field", "value"),
    [("country", "XX"), ("country", "gb"), ("floor_area_m2", 0.0), ("energy_star_score", 101),
     ("energy_intensity_kwh_m2", -3.0), ("epc_band", "H")],
)
def test_property_signal_ranges(field: str, value: object) -> None:
    payload = {"tenant": "acme", "event_id": "e1", "event_time": "2026-01-01T10:00:00Z",
               "source": "epc", "property_id": "p-1", "country": "GB", "asset_class": "office",
               "floor_area_m2": 100.0, "verification": "third_party", "data_as_of": "2025-06-01"}
    payload[field] = value
    with pytest.raises(DecodeFailure):
        decode_event("esg.property-signals", orjson.dumps(payload))


def test_profile_ticket_range_must_be_ordered() -> None:
    payload = {"tenant": "acme", "event_id": "e1", "event_time": "2026-01-01T10:00:00Z",
               "source": "crm", "investor_id": "inv-1", "investor_type": "pension_fund",
               "subscriber_type": "corporate", "jurisdiction": "DE",
               "ticket_min_eur": 5e6, "ticket_max_eur": 1e6}
    with pytest.raises(DecodeFailure, match="ticket_min_eur"):
        decode_event("investor.profiles", orjson.dumps(payload))
    payload["ticket_max_eur"] = 9e6
    assert isinstance(decode_event("investor.profiles", orjson.dumps(payload)), InvestorProfile)


def test_unknown_topic() -> None:
    with pytest.raises(DecodeFailure) as failure:
        decode_event("not.a.topic", b"{}")
    assert failure.value.reason is DlqReason.UNKNOWN_TOPIC


@pytest.mark.parametrize("topic", sorted(ALL_TOPICS))
def test_every_topic_exports_a_valid_json_schema(topic: str) -> None:
    schema = json_schema(topic)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-kafka-key"] == ALL_TOPICS[topic].key_field
    # The outputs shared by tenants are keyed by both, and say so with the version.
    keyed = topic in ("leads.scored", "leads.review", "crm.handoff", "leads.shadow")
    assert (schema["x-kafka-key"] == "<tenant>/<investor_id>") is keyed
    assert schema.get("x-kafka-key-version") == (2 if keyed else None)
    json.dumps(schema)


def test_json_schema_accepts_what_pydantic_accepts() -> None:
    schema = json_schema("investor.engagements")
    jsonschema.validate(orjson.loads(_engagement()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(orjson.loads(_engagement(action="teleport")), schema)
