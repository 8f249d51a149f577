"""Signed erasure requests (operators/erasure_auth.py): with a key, only a request signed
with it erases; without one, unsigned requests are accepted as before."""

from __future__ import annotations

from datetime import datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators import erasure_auth
from esg_leads.schemas.inputs import ErasureRequest
from esg_leads.schemas.settings import TenantSettings
from tests.flows.events import at, engagement, envelope, message, profile, signal
from tests.flows.test_pipeline import reasons, run, settings

KEY = "e" * 32


def request(event_id: str, investor_id: str, when: datetime, signature: str | None = None):
    payload = envelope(event_id, when) | {"investor_id": investor_id}
    if signature is not None:
        payload["signature"] = signature
    return message("investor.erasure", investor_id, payload, when)


def signed(event_id: str, investor_id: str, when: datetime, key: str = KEY):
    signature = erasure_auth.sign(key, tenant="acme", event_id=event_id, event_time=when,
                                  investor_id=investor_id)
    return request(event_id, investor_id, when, signature)


def world(*erasures) -> list:
    return [signal("s-1", "p-1", at(0)), profile("pr-1", "inv-1", at(1)),
            engagement("e-1", "inv-1", at(10)), *erasures, engagement("e-2", "inv-1", at(130))]


def test_with_a_key_unsigned_forged_or_altered_requests_erase_nothing():
    config = settings(tenants={"acme": {"erasure_signing_key": KEY}, "beta": {}})
    forged = signed("er-2", "inv-1", at(21), key="x" * 32)
    other_subject = signed("er-3", "inv-9", at(22))  # a valid signature, for someone else
    altered = orjson.loads(other_subject.value) | {"investor_id": "inv-1"}
    out, _ = run(world(request("er-1", "inv-1", at(20)), forged,
                       message("investor.erasure", "inv-1", altered, at(22))), config)
    assert reasons(out["dlq"])["unauthorized"] == 3
    assert not [t for t in out["tombstones"] if t["key"] == "acme/inv-1"]
    assert out["leads"] and all(r["state"] != "erased" for r in out["leads"])


def test_with_a_key_a_signed_request_erases():
    config = settings(tenants={"acme": {"erasure_signing_key": KEY}, "beta": {}})
    out, _ = run(world(signed("er-1", "inv-1", at(20))), config)
    assert reasons(out["dlq"])["unauthorized"] == 0
    assert [t for t in out["tombstones"] if t["key"] == "acme/inv-1"]


def test_without_a_key_unsigned_requests_erase_as_before():
    out, _ = run(world(request("er-1", "inv-1", at(20))))
    assert reasons(out["dlq"])["unauthorized"] == 0
    assert [t for t in out["tombstones"] if t["key"] == "acme/inv-1"]


@given(st.text(max_size=140))
def test_no_signature_text_but_the_right_one_verifies(text):
    request_ = ErasureRequest.model_validate_json(orjson.dumps(
        envelope("er-1", at(20)) | {"investor_id": "inv-1"}))
    tenant = TenantSettings(erasure_signing_key=KEY)
    right = erasure_auth.sign(KEY, **erasure_auth.request_fields(request_))
    refused = erasure_auth.refusal(request_.model_copy(update={"signature": text}), tenant)
    assert (refused is None) == (text == right)
