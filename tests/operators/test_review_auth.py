"""Signed review decisions: the canonical form, the signature, and who is refused why."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators import review_auth
from esg_leads.schemas.codec import DecodeFailure, decode_event
from esg_leads.schemas.settings import TenantSettings

KEY = "k" * 32
T = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
FIELDS = dict(tenant="acme", event_id="d-1", event_time=T, investor_id="inv-1",
              case_id="case:acme/inv-1:1", verdict="approve", reviewer="rev-7", note=None)
SIGNED = ("tenant", "event_id", "event_time", "investor_id", "case_id", "verdict", "reviewer",
          "note")
TENANT = TenantSettings(reviewers=("rev-7",), review_signing_key=KEY)

#: The canonical bytes and signature of FIELDS, written out by hand: a change of the
#: form breaks every producer's signatures, so it must be deliberate. The MAC was also
#: computed outside Python: printf '%s' "$CANONICAL" | openssl dgst -sha256 -hmac "$KEY".
GOLDEN_CANONICAL = (b'{"case_id":"case:acme/inv-1:1","event_id":"d-1","event_time":'
                    b'"2026-03-02T10:00:00.000000Z","investor_id":"inv-1","note":null,'
                    b'"reviewer":"rev-7","tenant":"acme","v":1,"verdict":"approve"}')
GOLDEN_SIGNATURE = "sha256=4f68f5d750aa44c39262baad4d6f0c1bd1809f7a8538e643737529791157c616"


def payload(**changes) -> dict:
    base = {"tenant": "acme", "event_id": "d-1", "event_time": "2026-03-02T10:00:00Z",
            "source": "review-ui", "investor_id": "inv-1", "case_id": "case:acme/inv-1:1",
            "verdict": "approve", "reviewer": "rev-7", "note": "EPC certificate checked"}
    base.update(changes)
    event = decode_event("lead.review-decisions", orjson.dumps(base))
    return base | {"signature": review_auth.sign_decision(KEY, event)}


def parse(body: dict):
    return decode_event("lead.review-decisions", orjson.dumps(body))


def test_canonical_form_and_signature_golden_values() -> None:
    assert review_auth.canonical_bytes(**FIELDS) == GOLDEN_CANONICAL
    assert review_auth.sign(KEY, **FIELDS) == GOLDEN_SIGNATURE
    assert GOLDEN_SIGNATURE == "sha256=" + hmac.new(KEY.encode(), GOLDEN_CANONICAL,
                                                    hashlib.sha256).hexdigest()


def test_event_time_signs_as_the_utc_instant() -> None:
    paris = T.astimezone(timezone(timedelta(hours=1)))
    assert review_auth.sign(KEY, **FIELDS | {"event_time": paris}) == GOLDEN_SIGNATURE
    later = T + timedelta(microseconds=1)
    assert review_auth.sign(KEY, **FIELDS | {"event_time": later}) != GOLDEN_SIGNATURE
    with pytest.raises(ValueError, match="timezone"):
        review_auth.canonical_bytes(**FIELDS | {"event_time": T.replace(tzinfo=None)})


def test_a_missing_note_and_an_absent_one_sign_alike_but_not_like_text() -> None:
    """``null`` cannot be confused with the string "None" or "null" (JSON keeps types)."""
    for text in ("None", "null", ""):
        assert review_auth.sign(KEY, **FIELDS | {"note": text}) != GOLDEN_SIGNATURE


@pytest.mark.parametrize("signature", [
    None, "", "sha256=", GOLDEN_SIGNATURE.upper(), GOLDEN_SIGNATURE.removeprefix("sha256="),
    "sha1=" + GOLDEN_SIGNATURE[7:47], GOLDEN_SIGNATURE + "0", GOLDEN_SIGNATURE[:-1],
    " " + GOLDEN_SIGNATURE, GOLDEN_SIGNATURE + "\n", "sha512=" + GOLDEN_SIGNATURE[7:],
])
def test_only_the_exact_signature_verifies(signature: str | None) -> None:
    assert review_auth.verify(KEY, GOLDEN_SIGNATURE, **FIELDS)
    assert not review_auth.verify(KEY, signature, **FIELDS)


def test_the_key_is_its_utf8_bytes() -> None:
    assert review_auth.sign(KEY.encode(), **FIELDS) == review_auth.sign(KEY, **FIELDS)
    assert not review_auth.verify("k" * 31 + "K", GOLDEN_SIGNATURE, **FIELDS)


def test_refusal_reasons() -> None:
    good = parse(payload())
    assert review_auth.refusal(good, TENANT) is None
    assert "not configured" in review_auth.refusal(good, None)
    assert "has no review_signing_key" in review_auth.refusal(good, TenantSettings(
        reviewers=("rev-7",)))
    assert "not on the reviewers list of tenant 'acme'" in review_auth.refusal(good, TenantSettings(
        reviewers=("rev-8",), review_signing_key=KEY))
    assert "not on the reviewers list" in review_auth.refusal(good, TenantSettings(review_signing_key=KEY))
    unsigned = {k: v for k, v in payload().items() if k != "signature"}
    assert "not signed" in review_auth.refusal(parse(unsigned), TENANT)
    # The unsigned "source" label is not part of the decision.
    assert review_auth.refusal(parse(payload() | {"source": "elsewhere"}), TENANT) is None


def test_refusal_never_names_the_key_or_the_expected_signature() -> None:
    body = payload()
    for forged in (body | {"verdict": "reject"}, body | {"signature": "sha256=" + "0" * 64}):
        why = review_auth.refusal(parse(forged), TENANT)
        expected = review_auth.sign_decision(KEY, parse(forged))
        assert why and KEY not in why and expected[7:] not in why


# A character that may replace another in an id, a note or a timestamp: what a
# tamperer (or a bit flip) could produce while keeping the JSON well formed.
_CHAR = st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='"\\')


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(SIGNED), data=st.data())
def test_any_change_of_any_signed_field_invalidates_the_signature(field: str, data) -> None:
    body = payload()
    original = parse(body)
    text = body[field]
    index = data.draw(st.integers(0, len(text) - 1), label="index")
    char = data.draw(_CHAR.filter(lambda c: c != text[index]), label="char")
    changed = body | {field: text[:index] + char + text[index + 1:]}
    try:
        event = parse(changed)
    except DecodeFailure:
        return  # no longer schema-valid: refused before it reaches the lifecycle
    same = (review_auth.canonical_bytes(**review_auth.decision_fields(event))
            == review_auth.canonical_bytes(**review_auth.decision_fields(original)))
    if field == "event_time" and same:
        return  # another spelling of the same instant (e.g. "-00:00"): the same decision
    assert not same, "a change of a signed field must change the signed bytes"
    assert review_auth.refusal(event, TENANT) is not None


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(SIGNED[:-1]), st.text(min_size=1, max_size=8),
                       min_size=1, max_size=3))
def test_distinct_decisions_have_distinct_canonical_bytes(changes: dict) -> None:
    """The form is unambiguous: no two decisions share canonical bytes (no a|bc = ab|c)."""
    changes = {k: v for k, v in changes.items() if k != "event_time"}
    other = FIELDS | changes
    if other == FIELDS:
        return
    assert review_auth.canonical_bytes(**other) != GOLDEN_CANONICAL
    assert review_auth.sign(KEY, **other) != GOLDEN_SIGNATURE


def test_settings_refuse_a_short_key_without_echoing_it() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        TenantSettings(review_signing_key="hunter2-short-key")
    message = caught.value.errors(include_input=False)[0]["msg"]
    assert "at least 32 characters" in message and "hunter2" not in message
