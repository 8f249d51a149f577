"""Bytes to models and back: orjson for encoding, pydantic-core for decoding.

Decoding goes straight from the Kafka value bytes to a model with
``model_validate_json``: one pass in Rust, strict JSON semantics. The alternative,
``orjson.loads`` then ``model_validate``, was measured slower on our events (see
``bench/decode_speed.py``) and would need lax mode to accept ISO timestamps, which
would also let ``"12"`` pass as a number.

>>> event = decode_event("crm.outcomes", b'{"tenant": "acme", "event_id": "e1",'
...     b' "event_time": "2026-03-01T09:00:00+01:00", "source": "crm",'
...     b' "investor_id": "inv-1", "kind": "qualified"}')
>>> event.kind.value, event.event_time.isoformat()
('qualified', '2026-03-01T09:00:00+01:00')
>>> decode_event("crm.outcomes", b"{not json")
Traceback (most recent call last):
...
esg_leads.schemas.codec.DecodeFailure: decode_error: ...
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from esg_leads.schemas.keys import KEY_VERSION, KEYED_BY_INVESTOR
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.topics import ALL_TOPICS, INPUT_TOPICS

_MAX_DETAIL = 1024


class DecodeFailure(Exception):
    """An input that cannot become an event; carries the dead-letter reason."""

    def __init__(self, reason: DlqReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail[:_MAX_DETAIL]


def describe_validation_error(error: ValidationError) -> str:
    """Summarise a validation error by location and message only.

    The input values are left out on purpose: they may hold personal data, and the
    original bytes travel with the dead letter anyway.
    """
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        location = ".".join(str(p) for p in item["loc"]) or "<root>"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)[:_MAX_DETAIL]


def decode_event(topic: str, value: bytes | None) -> BaseModel:
    """Decode and validate one input message; raise :class:`DecodeFailure` otherwise."""
    spec = INPUT_TOPICS.get(topic)
    if spec is None:
        raise DecodeFailure(DlqReason.UNKNOWN_TOPIC, f"no input topic named {topic!r}")
    if value is None:
        raise DecodeFailure(DlqReason.DECODE_ERROR, "message has no value (tombstone)")
    try:
        return spec.model.model_validate_json(value)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors(include_input=False)):
            raise DecodeFailure(DlqReason.DECODE_ERROR, describe_validation_error(error)) from None
        raise DecodeFailure(DlqReason.SCHEMA_ERROR, describe_validation_error(error)) from None


def encode(record: dict[str, Any] | BaseModel) -> bytes:
    """Encode an output record (or any model) as compact JSON bytes."""
    if isinstance(record, BaseModel):
        return record.model_dump_json().encode()
    return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)


def validate_record(topic: str, record: dict[str, Any]) -> BaseModel:
    """Check an output record the way a consumer sees it: its JSON against the topic model."""
    return ALL_TOPICS[topic].model.model_validate_json(encode(record))


def b64(data: bytes | None) -> str | None:
    """Base64 text of raw bytes, as dead letters carry them."""
    return None if data is None else base64.b64encode(data).decode("ascii")


def json_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a topic's message values."""
    spec = ALL_TOPICS[topic]
    mode = "validation" if topic in INPUT_TOPICS else "serialization"
    schema = spec.model.model_json_schema(mode=mode)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:esg-leads:topic:{topic}",
        "title": f"{topic}: {spec.description}",
        "x-kafka-key": spec.key_field,
        # The key contract's version where it changed (schemas/keys.py): a consumer that
        # upserts by key must know that 1's bare investor id is now tenant/investor.
        **({"x-kafka-key-version": KEY_VERSION} if topic in KEYED_BY_INVESTOR else {}),
        **{k: v for k, v in schema.items() if k != "title"},
    }
