"""Fuzzing the whole flow: no input can crash it, break an output's schema or lose a message.

Hypothesis draws streams over all six input topics: schema-valid events (from
templates whose fields are redrawn from their valid ranges), the same events with
one field replaced by a hostile JSON token (far dates, NaN/Infinity, 1e999, huge
integers, wrong types, deep nesting, lone surrogates, NUL, a 300 KB string), raw
byte garbage, tombstones, wrong or oversized keys and implausible timestamps. Each
stream goes through the real ``build_flow`` at a drawn batch size, and the run must:

* finish (no exception escapes an operator),
* emit only records that validate against their published schema,
* carry only finite numbers,
* reconcile every input topic (in = used + dead-lettered),
* keep every dead letter within ``dlq.max_value_bytes`` (with the original length),
* never clamp a feature (a value outside its documented range is a defect).

``make test`` runs a few dozen examples; ``make fuzz`` runs thousands
(``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import base64
import math
import os
from datetime import date, datetime, timedelta, timezone

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.flows.pipeline import Sinks, build_flow
from esg_leads.flows.telemetry import Telemetry
from esg_leads.operators.erasure import open_dead_letter
from esg_leads.operators.validation import MAX_KEY_BYTES
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.common import (
    AssetClass,
    ConsentStatus,
    ContactChannel,
    EngagementAction,
    EngagementChannel,
    EPCBand,
    InvestorType,
    OutcomeKind,
    ReviewVerdict,
    SubscriberType,
    Verification,
)
from esg_leads.schemas.records import RawMessage
from esg_leads.schemas.settings import Settings

#: ``make fuzz`` sets thousands; ``make test`` keeps it to a few seconds.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
MAX_VALUE_BYTES = 1024
SETTINGS = Settings.model_validate({
    "tenants": {"acme": {}, "beta": {}},
    "windows": {"length": "PT1H", "allowed_lateness": "PT15M", "shards_per_tenant": 2},
    "features": {"rescore_after": ["P1D"]},
    "dlq": {"max_value_bytes": MAX_VALUE_BYTES},
})
OUTPUT_TOPICS = {"leads": "leads.scored", "review": "leads.review", "handoff": "crm.handoff",
                 "alerts": "ops.alerts", "dlq": "leads.dlq"}

# ------------------------------------------------------------------- valid fields

tenants = st.sampled_from(["acme", "beta", "acme", "ghost"])  # mostly served tenants
investors = st.sampled_from([f"inv-{i}" for i in range(4)])
properties = st.sampled_from([f"p-{i}" for i in range(3)])
minutes = st.floats(min_value=0, max_value=6 * 24 * 60, allow_nan=False)
zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                         timezone(timedelta(hours=-8))])


def enum(kind) -> st.SearchStrategy[str]:  # noqa: ANN001 - any StrEnum
    return st.sampled_from([member.value for member in kind])


def unit(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


certification = st.one_of(
    st.fixed_dictionaries({"scheme": st.just("LEED"), "verified": st.booleans(),
                           "level": st.sampled_from(["certified", "silver", "gold", "platinum"])}),
    st.fixed_dictionaries({"scheme": st.just("BREEAM"), "verified": st.booleans(),
                           "level": st.sampled_from(["pass", "good", "very_good", "excellent",
                                                     "outstanding"])}),
    st.fixed_dictionaries({"scheme": st.just("NABERS"), "verified": st.booleans(),
                           "stars": st.integers(0, 12).map(lambda h: h / 2)}),
)
FIELDS: dict[str, dict[str, st.SearchStrategy]] = {
    "esg.property-signals": {
        "property_id": properties, "country": st.sampled_from(["GB", "DE", "US", "FR", "CH"]),
        "asset_class": enum(AssetClass), "floor_area_m2": unit(1e-3, 5e6),
        "value_eur": unit(1, 1e11), "epc_band": enum(EPCBand), "sap_score": st.integers(1, 150),
        "energy_star_score": st.integers(1, 100),
        "certifications": st.lists(certification, max_size=3),
        "energy_intensity_kwh_m2": unit(0, 5000), "carbon_intensity_kgco2e_m2": unit(0, 2000),
        "climate_risk": st.fixed_dictionaries(
            {k: st.integers(0, 100) for k in ("flood", "wildfire", "heat")}),
        "verification": enum(Verification),
        "data_as_of": st.dates(date(1900, 1, 1), date(2026, 3, 1)).map(date.isoformat),
    },
    "investor.profiles": {
        "investor_id": investors, "investor_type": enum(InvestorType),
        "subscriber_type": enum(SubscriberType),
        "jurisdiction": st.sampled_from(["GB", "DE", "US", "FR", "CH"]),
        "preferences": st.fixed_dictionaries({}, optional={
            "min_epc_band": enum(EPCBand), "max_climate_risk": st.integers(0, 100),
            "sfdr_target": st.sampled_from(["article_6", "article_8", "article_9"])}),
        "target_countries": st.lists(st.sampled_from(["GB", "DE", "US"]), max_size=3),
        "target_asset_classes": st.lists(enum(AssetClass), max_size=3),
        "ticket_max_eur": unit(1, 1e11),
        "consents": st.lists(st.fixed_dictionaries(
            {"channel": enum(ContactChannel), "status": enum(ConsentStatus)}), max_size=3),
        "do_not_call": st.booleans(),
        "contact": st.fixed_dictionaries({}, optional={
            "name": st.text(min_size=1, max_size=40), "email": st.just("a.b@example.org"),
            "phone": st.just("+44 20 7946 0000")}),
    },
    "investor.engagements": {
        "investor_id": investors, "action": enum(EngagementAction),
        "channel": enum(EngagementChannel), "property_id": properties,
        "campaign_id": st.just("c-1"), "duration_s": unit(0, 86_400),
    },
    "crm.outcomes": {"investor_id": investors, "kind": enum(OutcomeKind),
                     "deal_value_eur": unit(1, 1e11)},
    "investor.erasure": {"investor_id": investors},
    "lead.review-decisions": {
        "investor_id": investors, "case_id": st.sampled_from(["case:inv-0:1", "case:inv-1:1"]),
        "verdict": enum(ReviewVerdict), "reviewer": st.sampled_from(["rev-1", "mallory"]),
        "note": st.text(min_size=1, max_size=50)},
}
KEY_FIELD = {"esg.property-signals": "property_id"}  # the others: investor_id

# -------------------------------------------------------------- hostile tokens

HOSTILE_TOKENS = st.sampled_from([
    b'"9999-12-31"', b'"9999-12-31T23:59:59Z"', b'"0001-01-01T00:00:00Z"', b'"2099-12-31T00:00:00Z"',
    b'"1970-01-01T00:00:00Z"', b'"2026-03-02T09:00:00"', b'"2026-02-30T09:00:00Z"',
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" + b"0" * 40, b"-1", b"0",
    b"1.7976931348623157e308", b"true", b"null", b"[]", b"{}", b'""', b'"1"',
    b'"\\u0000"', b'"\\ud800"', b'"\\u202e\\u0041"', '"🏢🏢"'.encode(), b'"a\\nb"',
    b"[" * 3000 + b"]" * 3000, b'{"a":' * 500 + b"1" + b"}" * 500,
    b'"' + b"x" * 300_000 + b'"',
])


@st.composite
def events(draw) -> tuple[str, bytes, dict]:  # noqa: ANN001 - hypothesis draw
    """A schema-valid event, or one with a field replaced by a hostile token."""
    topic = draw(st.sampled_from(sorted(FIELDS)))
    when = T0 + timedelta(minutes=draw(minutes))
    payload = {"tenant": draw(tenants), "event_id": f"e-{draw(st.integers(0, 40))}",
               "event_time": when.astimezone(draw(zones)).isoformat(), "source": "fuzz"}
    fields = FIELDS[topic]
    for name, strategy in fields.items():
        if name in ("investor_id", "property_id", "case_id", "verdict", "reviewer", "kind",
                    "asset_class", "floor_area_m2", "verification", "data_as_of", "country",
                    "investor_type", "subscriber_type", "jurisdiction", "action", "channel") \
                or draw(st.booleans()):
            payload[name] = draw(strategy)
    if topic == "investor.engagements" and payload.get("action") == "unsubscribe":
        payload["channel"] = "email"
    if draw(st.integers(0, 3)) == 0:  # a quarter of the events carry one hostile field
        field = draw(st.sampled_from(sorted(payload) + ["extra_unknown_field"]))
        payload[field] = "__HOSTILE__"
        value = orjson.dumps(payload).replace(b'"__HOSTILE__"', draw(HOSTILE_TOKENS))
    else:
        value = orjson.dumps(payload)
    return topic, value, payload


@st.composite
def messages(draw) -> list[RawMessage]:  # noqa: ANN001 - hypothesis draw
    out = []
    for offset in range(draw(st.integers(1, 40))):
        kind = draw(st.integers(0, 9))
        if kind == 0:  # garbage on a random topic
            topic = draw(st.sampled_from(sorted(FIELDS) + ["not.a.topic"]))
            value = draw(st.one_of(st.none(), st.binary(max_size=64),
                                   st.just(b"\xff" * 2_000), st.text().map(str.encode)))
            payload: dict = {}
        else:
            topic, value, payload = draw(events())
        entity = payload.get(KEY_FIELD.get(topic, "investor_id"))
        key = draw(st.sampled_from(["match", "match", "match", "none", "other", "huge"]))
        key_bytes = {"match": entity.encode() if isinstance(entity, str) else None,
                     "none": None, "other": b"someone-else", "huge": b"k" * 5_000}[key]
        try:
            ingest = datetime.fromisoformat(payload["event_time"]) + timedelta(
                seconds=draw(st.integers(0, 3_600)))
            ms = int(ingest.timestamp() * 1000)
        except (KeyError, TypeError, ValueError):
            ms = int(T0.timestamp() * 1000)
        ms = draw(st.sampled_from([ms] * 6 + [-1, 0, 2**62]))
        out.append(RawMessage(topic, draw(st.integers(0, 2)), offset, ms, key_bytes, value))
    return sorted(out, key=RawMessage.sort_key)


def _finite(value: object, where: str = "") -> None:
    if isinstance(value, float):
        assert math.isfinite(value), f"non-finite number at {where}"
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite(v, f"{where}[{i}]")


def run_flow(stream: list[RawMessage], batch_size: int,
             keys: KeyVault) -> tuple[dict[str, list], Telemetry]:
    out = {k: [] for k in ("leads", "dlq", "alerts", "review", "handoff", "audit", "tombstones")}
    telemetry = Telemetry()
    flow = build_flow(SETTINGS, TestingSource(stream, batch_size=batch_size),
                      Sinks(**{k: TestingSink(v) for k, v in out.items()}), telemetry,
                      clock=lambda: NOW, keys=keys)
    run_main(flow)
    return out, telemetry


def kept_value(letter: dict, keys: KeyVault) -> bytes | None:
    """What a dead letter kept of the original value, opened; ``None`` when withheld
    or shredded (an erasure in the same stream destroyed the investor's key)."""
    try:
        return open_dead_letter(letter, keys, SETTINGS.tenants.keys())
    except LookupError:
        return None


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages(), st.sampled_from([1, 3, 1000]))
def test_no_stream_crashes_the_flow_or_breaks_a_contract(stream: list[RawMessage],
                                                          batch_size: int) -> None:
    keys = KeyVault(":memory:")
    out, telemetry = run_flow(stream, batch_size, keys)
    for kind, topic in OUTPUT_TOPICS.items():
        for record in out[kind]:
            validate_record(topic, record)
            _finite(record, kind)
    for record in out["audit"]:
        _finite(record, "audit")
    summary = telemetry.summary({}, len(stream), 1.0)
    assert sum(t["in"] for t in summary["topics"].values()) == len(stream)
    assert summary["reconciled"], summary["topics"]
    assert summary["features_clamped"] == 0
    for letter in out["dlq"]:
        key_cut = len(base64.b64decode(letter["key_b64"] or "")) == MAX_KEY_BYTES
        kept = kept_value(letter, keys)
        if kept is not None:
            assert len(kept) <= MAX_VALUE_BYTES
            value_cut = len(kept) < (letter["value_length"] or 0)
            assert letter["truncated"] == value_cut or (letter["truncated"] and key_cut)
        assert len(orjson.dumps(letter, default=str)) < 8 * MAX_VALUE_BYTES
