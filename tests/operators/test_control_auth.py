"""Signed model commands (operators/control_auth.py) and their refusal at parse time."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators import control_auth, erasure_auth, review_auth
from esg_leads.operators.validation import Parser
from esg_leads.schemas.codec import decode_event
from esg_leads.schemas.records import Ingested, RawMessage
from esg_leads.schemas.settings import Settings

KEY = "s" * 40
WHEN = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
SETTINGS = Settings.model_validate({"tenants": {"acme": {"control_signing_key": KEY},
                                                "beta": {}}})


def payload(**changes) -> dict:
    base = {"tenant": "acme", "event_id": "c-1", "event_time": WHEN.isoformat(),
            "source": "cli", "action": "promote", "version": "m-0123abcd", "operator": "ops-1"}
    base.update(changes)
    base["signature"] = control_auth.sign_command(
        KEY, decode_event("ops.control", orjson.dumps({k: v for k, v in base.items()})))
    return base


def parse(value: dict) -> Ingested | dict:
    raw = RawMessage("ops.control", 0, 3, int(WHEN.timestamp() * 1000),
                     value["tenant"].encode(), orjson.dumps(value))
    return Parser(SETTINGS.tenants).parse(raw, WHEN)


def test_a_signed_command_is_accepted() -> None:
    assert type(parse(payload())) is Ingested


@settings(deadline=None)  # a wall-clock limit fails on a loaded machine, not on a defect
@given(st.sampled_from(["event_id", "action", "version", "operator", "event_time", "note"]))
def test_changing_any_signed_field_makes_it_unauthorized(field: str) -> None:
    value = payload()
    value[field] = {"event_id": "c-2", "action": "pin", "version": "m-ffff",
                    "operator": "mallory", "event_time": "2026-03-02T10:00:01+00:00",
                    "note": "hi"}[field]
    dead = parse(value)
    assert dead["reason"] == "unauthorized" and "does not match" in dead["detail"]
    assert KEY not in dead["detail"] and value["signature"] not in dead["detail"]


def test_unsigned_keyless_tenant_and_other_forms_are_refused() -> None:
    unsigned = payload()
    del unsigned["signature"]
    assert "not signed" in parse(unsigned)["detail"]
    assert "no control_signing_key" in parse(payload(tenant="beta"))["detail"]
    # A review decision's or an erasure's signature over the same key never passes.
    fields = dict(tenant="acme", event_id="c-1", event_time=WHEN, investor_id="acme")
    for forged in (erasure_auth.sign(KEY, **fields),
                   review_auth.mac(KEY, orjson.dumps({k: str(v) for k, v in fields.items()}))):
        assert parse({**payload(), "signature": forged})["reason"] == "unauthorized"


def test_unpin_needs_no_version_and_the_others_do() -> None:
    assert type(parse(payload(action="unpin", version=None))) is Ingested
    raw = {**payload(), "action": "pin"}
    del raw["version"]
    assert parse(raw)["reason"] == "schema_error"
