"""Parser and dead_letter: every message becomes one event or one valid dead letter.

Dead letters are checked the way a consumer sees them: their JSON encoding (the
sink's ``schemas.codec.encode``) validated against :class:`schemas.outputs.DeadLetter`.
A plain ``DeadLetter.model_validate(record)`` cannot be used on the hot-path dicts:
the output models are strict, and strict Python-mode validation wants enum
instances where the records (like their JSON) carry the enum's string value.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.validation import Parser, dead_letter
from esg_leads.schemas.codec import decode_event, encode
from esg_leads.schemas.outputs import DeadLetter, DlqReason
from esg_leads.schemas.records import Ingested, RawMessage
from esg_leads.schemas.topics import INPUT_TOPICS

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
TS_MS = 1_772_355_600_000  # 2026-03-01T09:00Z, when OUTCOME was produced

OUTCOME = {
    "tenant": "acme",
    "event_id": "o-1",
    "event_time": "2026-03-01T09:00:00+01:00",
    "source": "crm",
    "investor_id": "inv-1",
    "kind": "qualified",
}


def raw(value: bytes | None, *, topic: str = "crm.outcomes", key: bytes | None = b"inv-1",
        offset: int = 5, timestamp_ms: int = TS_MS) -> RawMessage:
    return RawMessage(topic, 2, offset, timestamp_ms, key, value)


def as_consumer_sees_it(record: dict) -> DeadLetter:
    return DeadLetter.model_validate_json(encode(record))


@pytest.fixture
def parser() -> Parser:
    return Parser(tenants={"acme", "borealis"})


def test_a_valid_message_becomes_ingested_with_its_position(parser):
    message = raw(orjson.dumps(OUTCOME))
    out = parser.parse(message, NOW)
    assert isinstance(out, Ingested)
    assert type(out.event).__name__ == "Outcome"
    assert out.event.investor_id == "inv-1"
    assert (out.topic, out.partition, out.offset, out.timestamp_ms) == ("crm.outcomes", 2, 5, TS_MS)
    assert out.key == b"inv-1" and out.value == message.value
    assert out.ref() == ("o-1", "crm.outcomes", 2, 5)


def test_a_message_without_key_is_accepted(parser):
    assert isinstance(parser.parse(raw(orjson.dumps(OUTCOME), key=None), NOW), Ingested)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (raw(b'{"tenant": "acme", '), "decode_error"),
        (raw(b"\xff\xfe not utf-8"), "decode_error"),
        (raw(None), "decode_error"),  # a tombstone
        (raw(orjson.dumps({**OUTCOME, "kind": "maybe"})), "schema_error"),
        (raw(orjson.dumps({**OUTCOME, "event_time": "2026-03-01T09:00:00"})), "schema_error"),
        (raw(orjson.dumps({k: v for k, v in OUTCOME.items() if k != "event_id"})), "schema_error"),
        (raw(orjson.dumps(OUTCOME), topic="crm.outcomes.v2"), "unknown_topic"),
        (raw(orjson.dumps({**OUTCOME, "tenant": "ghost-fund"})), "unknown_tenant"),
        (raw(orjson.dumps(OUTCOME), key=b"inv-2"), "key_mismatch"),
    ],
    ids=["bad-json", "not-utf8", "tombstone", "bad-enum", "naive-time", "missing-field",
         "unknown-topic", "unknown-tenant", "key-mismatch"],
)
def test_each_failure_gets_its_reason_and_a_valid_dead_letter(parser, message, reason):
    record = parser.parse(message, NOW)
    assert isinstance(record, dict)
    assert record["reason"] == reason
    letter = as_consumer_sees_it(record)
    assert letter.reason == DlqReason(reason)
    assert (letter.topic, letter.partition, letter.offset) == (message.topic, 2, 5)
    assert letter.idempotency_key == f"dlq:{message.topic}:2:5:{reason}"
    assert letter.processed_at == NOW
    assert letter.timestamp == datetime.fromtimestamp(TS_MS / 1000, tz=timezone.utc)
    assert letter.detail  # says what was wrong


def test_dead_letter_of_an_undecodable_message_names_no_tenant_or_event(parser):
    undecodable = parser.parse(raw(b"{"), NOW)
    assert (undecodable["tenant"], undecodable["event_id"]) == (None, None)


def test_schema_error_detail_does_not_echo_the_input(parser):
    secret = "jane.doe@example.com"
    bad = {**OUTCOME, "kind": secret}
    record = parser.parse(raw(orjson.dumps(bad)), NOW)
    assert record["reason"] == "schema_error"
    assert "kind" in record["detail"]
    assert secret not in record["detail"]


def test_original_bytes_round_trip_through_base64(parser):
    value = b'{"tenant": "acme", \x00\xff broken'
    record = parser.parse(raw(value, key=b"k\x00ey"), NOW)
    letter = as_consumer_sees_it(record)
    assert base64.b64decode(letter.value_b64) == value
    assert base64.b64decode(letter.key_b64) == b"k\x00ey"


def test_missing_key_and_value_stay_null(parser):
    letter = as_consumer_sees_it(parser.parse(raw(None, key=None), NOW))
    assert letter.key_b64 is None and letter.value_b64 is None


def test_withhold_value_drops_the_payload_but_keeps_the_key():
    value = orjson.dumps(OUTCOME)
    event = decode_event("crm.outcomes", value)
    ingested = Ingested(event, "crm.outcomes", 1, 9, TS_MS, b"inv-1", value)
    record = dead_letter(ingested, DlqReason.ERASED_SUBJECT, "erased", NOW, withhold_value=True)
    letter = as_consumer_sees_it(record)
    assert letter.value_b64 is None
    assert base64.b64decode(letter.key_b64) == b"inv-1"
    assert (letter.tenant, letter.event_id, letter.offset) == ("acme", "o-1", 9)
    kept = dead_letter(ingested, DlqReason.DUPLICATE, "dup", NOW)
    assert base64.b64decode(kept["value_b64"]) == value


def test_dead_letter_detail_is_truncated_to_the_schema_limit():
    record = dead_letter(raw(b"{"), DlqReason.DECODE_ERROR, "x" * 5000, NOW)
    assert len(record["detail"]) == 1024
    as_consumer_sees_it(record)


def test_a_message_without_broker_timestamp_still_gives_a_valid_dead_letter(parser):
    record = parser.parse(raw(b"{", timestamp_ms=-1), NOW)
    letter = as_consumer_sees_it(record)
    assert letter.timestamp is None


def test_parse_batch_keeps_order_and_count(parser):
    batch = [raw(orjson.dumps(OUTCOME), offset=1), raw(b"{", offset=2),
             raw(orjson.dumps({**OUTCOME, "event_id": "o-2"}), offset=3)]
    out = parser.parse_batch(batch, NOW)
    assert [type(o).__name__ for o in out] == ["Ingested", "dict", "Ingested"]
    assert [o.offset if isinstance(o, Ingested) else o["offset"] for o in out] == [1, 2, 3]


# --------------------------------------------------------------------- properties

topics = st.sampled_from(sorted(INPUT_TOPICS) + ["not.a.topic"])
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                      max_size=4),
    max_leaves=12,
)
values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_like.map(orjson.dumps),
    # Near-valid outcomes with one field replaced by arbitrary JSON.
    st.tuples(st.sampled_from(sorted(OUTCOME)), json_like).map(
        lambda kv: orjson.dumps({**OUTCOME, kv[0]: kv[1]})),
)


@settings(max_examples=300, deadline=None)
@given(topic=topics, value=values, key=st.none() | st.binary(max_size=12))
def test_arbitrary_bytes_never_raise_and_give_exactly_one_result(topic, value, key):
    parser = Parser(tenants={"acme"})
    out = parser.parse_batch([RawMessage(topic, 0, 3, TS_MS, key, value)], NOW)
    assert len(out) == 1
    (result,) = out
    if isinstance(result, Ingested):
        assert result.value == value and result.tenant == "acme"
    else:
        letter = as_consumer_sees_it(result)
        assert letter.offset == 3
        if letter.value_b64 is None and value is not None:  # about two investors
            assert "names another investor" in letter.detail and key
        else:
            assert letter.value_b64 == (None if value is None else base64.b64encode(value).decode())


# A profile about inv-x keyed by inv-y (a producer that keys by the wrong field, or an
# attacker): its body is inv-x's contact data. Sealed under inv-y's key, it stayed
# readable after inv-x's erasure, for as long as inv-y was not erased.
PROFILE_OF_X = {"tenant": "acme", "event_id": "p-1", "event_time": "2026-03-01T09:00:00Z",
                "source": "crm", "investor_id": "inv-x", "investor_type": "family_office",
                "subscriber_type": "individual", "jurisdiction": "DE",
                "contact": {"name": "Jane Doe", "email": "jane@example.org"}}


@pytest.mark.parametrize("body", [
    orjson.dumps(PROFILE_OF_X),  # decodes: key_mismatch
    orjson.dumps({**PROFILE_OF_X, "jurisdiction": "nowhere"}),  # schema_error
    orjson.dumps({**PROFILE_OF_X, "tenant": "zeta"}),  # unknown_tenant
    orjson.dumps(PROFILE_OF_X)[:-20],  # cut short: decode_error
    orjson.dumps(PROFILE_OF_X)[:-1] + b',"investor_id":"inv-y","jurisdiction":1}',  # last wins
    orjson.dumps(PROFILE_OF_X).replace(b"investor_id", b"investor\\u005fid")[:-1]
    + b',"jurisdiction":1}',  # an escaped spelling in a schema error
], ids=["key_mismatch", "schema_error", "unknown_tenant", "truncated", "duplicate_key",
        "escaped_key"])
def test_a_letter_whose_body_names_another_investor_than_its_key_is_never_readable_after_either_erasure(
        parser, body):
    from esg_leads.connectors.key_vault import KeyVault
    from esg_leads.operators.erasure import erasure_subjects, open_dead_letter, seal_dead_letter

    letter = parser.parse(raw(body, topic="investor.profiles", key=b"inv-y"), NOW)
    assert isinstance(letter, dict)
    vault = KeyVault(":memory:")
    sealed = seal_dead_letter(letter, vault, {"acme", "borealis"}, at=(TS_MS, "t", 0, 5))
    for subject in erasure_subjects("acme", "inv-x"):
        vault.destroy(*subject, at=(TS_MS + 1, "investor.erasure", 0, 0))
    try:
        opened = open_dead_letter(sealed, vault, {"acme", "borealis"})
    except LookupError:
        opened = None
    assert opened is None or b"Jane" not in opened
    as_consumer_sees_it(sealed)
    # Keyed by the investor it is about, the same body is used or keeps its value.
    if b'"inv-y"' not in body:
        same = parser.parse(raw(body, topic="investor.profiles", key=b"inv-x"), NOW)
        assert isinstance(same, Ingested) or same["value_b64"] == base64.b64encode(body).decode()
