"""operators/erasure.py: sealing round trips, a shredded key opens nothing, which letters
are sealed, withheld or left alone."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import assume, given
from hypothesis import strategies as st

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.operators.erasure import (
    erased_in,
    erasure_subjects,
    keeps,
    open_dead_letter,
    open_sealed,
    seal,
    seal_dead_letter,
)
from esg_leads.operators.validation import bounded, dead_letter
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.records import RawMessage

NOW = datetime(2026, 3, 2, tzinfo=timezone.utc)
TENANTS = {"acme"}
keys_ = st.binary(min_size=32, max_size=32)


@given(key=keys_, plaintext=st.binary(max_size=2048), context=st.binary(max_size=64))
def test_seal_round_trips_and_hides_the_plaintext(key, plaintext, context):
    blob = seal(key, plaintext, context)
    assert open_sealed(key, blob, context) == plaintext
    assert seal(key, plaintext, context) == blob  # deterministic: re-emissions are identical
    if len(plaintext) >= 8:
        assert plaintext not in blob


@given(key=keys_, other=keys_, plaintext=st.binary(min_size=1, max_size=512))
def test_another_key_or_context_opens_nothing(key, other, plaintext):
    blob = seal(key, plaintext, b"acme|inv-1|dlq:x")
    if other != key:
        with pytest.raises(InvalidTag):
            open_sealed(other, blob, b"acme|inv-1|dlq:x")
    with pytest.raises(InvalidTag):
        open_sealed(key, blob, b"acme|inv-2|dlq:x")  # moved to another record
    with pytest.raises((InvalidTag, ValueError)):
        open_sealed(key, blob[:-1], b"acme|inv-1|dlq:x")


def letter(topic: str, key: bytes | None, value: bytes | None, offset: int = 0) -> dict:
    return dead_letter(RawMessage(topic, 0, offset, 1_772_445_600_000, key, value),
                       DlqReason.SCHEMA_ERROR, "bad", NOW)


PROFILE = b'{"tenant": "acme", "investor_id": "inv-1", "contact": {"name": "Jane Doe"}}'


@given(value=st.binary(min_size=1, max_size=4096), offset=st.integers(0, 2**40))
def test_a_dead_letter_about_an_investor_opens_until_the_key_is_shredded(value, offset):
    vault = KeyVault(":memory:")
    sealed = seal_dead_letter(letter("investor.profiles", b"inv-1", value, offset), vault, TENANTS)
    validate_record("leads.dlq", sealed)
    assert sealed["sealed"] and sealed["value_sha256"] is None
    assert sealed["value_length"] == len(value)
    assert open_dead_letter(sealed, vault, TENANTS) == value
    for subject in erasure_subjects("acme", "inv-1"):
        vault.destroy(*subject)
    with pytest.raises(LookupError):
        open_dead_letter(sealed, vault, TENANTS)


def test_letters_after_the_erasure_or_about_nobody_keep_no_value():
    vault = KeyVault(":memory:")
    vault.destroy(*erasure_subjects("acme", "inv-1")[1])  # ("", "inv-1"): unknown tenant too
    after = seal_dead_letter(letter("investor.profiles", b"inv-1", PROFILE), vault, TENANTS)
    assert after["value_b64"] is None and after["value_sha256"] is None and not after["sealed"]
    assert after["value_length"] == len(PROFILE) and "investor erased" in after["detail"]
    nobody = seal_dead_letter(letter("investor.profiles", None, PROFILE), vault, TENANTS)
    assert nobody["value_b64"] is None and "investor unknown" in nobody["detail"]
    validate_record("leads.dlq", after)


def test_property_signals_pass_unsealed():
    record = letter("esg.property-signals", b"p-1", b"{}")
    assert seal_dead_letter(record, KeyVault(":memory:"), TENANTS) is record
    assert base64.b64decode(record["value_b64"]) == b"{}"


def test_a_bounded_letter_is_sealed_after_the_cut_and_opens_to_the_prefix():
    vault = KeyVault(":memory:")
    value = b"x" * 5000
    record = seal_dead_letter(bounded(letter("crm.outcomes", b"inv-1", value), 1024),
                              vault, TENANTS)
    assert record["truncated"] and open_dead_letter(record, vault, TENANTS) == value[:1023]


def test_audit_rows_of_erased_investors_go_but_the_erasure_row_stays():
    rows = [{"tenant": "acme", "investor_id": "inv-1", "agent": "scoring"},
            {"tenant": "acme", "investor_id": "inv-2", "agent": "scoring"},
            {"tenant": "acme", "investor_id": "inv-1", "agent": "erasure"}]
    gone = erased_in(rows)
    assert gone == {("acme", "inv-1")}
    assert [r for r in rows if keeps(r, {"inv-1"})] == rows[1:]


positions = st.tuples(st.integers(0, 10), st.sampled_from(("crm.outcomes", "investor.erasure")),
                      st.integers(0, 2), st.integers(0, 5))


@given(at=positions, erasures=st.lists(positions, min_size=1, max_size=4),
       shredded_first=st.booleans())
def test_sealed_or_withheld_follows_the_letters_position_not_when_the_erasure_landed(
        at, erasures, shredded_first):
    """A letter from before every erasure of its investor is sealed (and opens nothing
    once they are erased); one from at or after the earliest erasure is withheld —
    whether the shredding reached the key store before the letter did or not."""
    # A letter from after an erasure never reaches the store before it: the reader
    # destroys the key before it parses anything after the erasure (flows/pipeline.py).
    assume(shredded_first or at < min(erasures))
    vault = KeyVault(":memory:")
    record = letter("investor.profiles", b"inv-1", PROFILE)

    def shred() -> None:
        for position in erasures:
            for subject in erasure_subjects("acme", "inv-1"):
                vault.destroy(*subject, at=position)

    if shredded_first:
        shred()
    out = seal_dead_letter(record, vault, TENANTS, at=at)
    if not shredded_first:
        shred()
    if at < min(erasures):
        assert out["sealed"] and out["value_length"] == len(PROFILE)
        with pytest.raises(LookupError):  # the key it was sealed under is gone, either way
            open_dead_letter(out, vault, TENANTS)
    elif shredded_first:
        assert out["value_b64"] is None and "investor erased" in out["detail"]
    validate_record("leads.dlq", out)


def test_a_letter_without_a_position_is_withheld_once_the_investor_is_erased():
    """Letters made outside the input's order (the CRM sync's) know no position: the
    erasure counts as before them."""
    vault = KeyVault(":memory:")
    for subject in erasure_subjects("acme", "inv-1"):
        vault.destroy(*subject, at=(10, "investor.erasure", 0, 0))
    out = seal_dead_letter(letter("investor.profiles", b"inv-1", PROFILE), vault, TENANTS)
    assert out["value_b64"] is None and not out["sealed"]


def test_an_erasure_by_one_tenant_shreds_no_other_tenants_letters_about_the_same_id():
    """Investor ids are per tenant: acme erasing its inv-1 must leave borealis's inv-1
    letters readable (a tenant must not be able to destroy another's records), while a
    letter of no served tenant about inv-1 may be the same person and goes."""
    vault = KeyVault(":memory:")
    tenants = {"acme", "borealis"}

    def about(tenant: str) -> dict:
        body = PROFILE.replace(b'"acme"', f'"{tenant}"'.encode())
        record = letter("investor.profiles", b"inv-1", body)
        return seal_dead_letter({**record, "tenant": tenant}, vault, tenants, at=(1, "t", 0, 0))

    theirs, nobodys = about("borealis"), about("zeta")
    for subject in erasure_subjects("acme", "inv-1"):
        vault.destroy(*subject, at=(5, "investor.erasure", 0, 0))
    assert b"Jane" in open_dead_letter(theirs, vault, tenants)
    with pytest.raises(LookupError):
        open_dead_letter(nobodys, vault, tenants)
    later = seal_dead_letter(letter("investor.profiles", b"inv-1", PROFILE) | {"tenant": "borealis"},
                             vault, tenants, at=(9, "t", 0, 0))
    assert later["sealed"]  # borealis's inv-1 was not erased


@pytest.mark.parametrize("key", [b"!!", b"inv 1", b"-inv-1", b"i" * 65, b"inv-1\n", b"\xff\xfe"])
def test_a_letter_keyed_by_what_no_investor_id_can_spell_is_withheld(key: bytes) -> None:
    # No erasure can ever name such a key, so a value sealed under it would never go.
    body = b'{"tenant": "acme", "contact": {"name": "Jane Doe"}}'
    out = seal_dead_letter(letter("investor.profiles", key, body), KeyVault(":memory:"), TENANTS)
    assert out["value_b64"] is None and not out["sealed"] and "investor unknown" in out["detail"]


def test_a_crm_handoff_letter_is_sealed_under_its_keys_tenant_and_investor() -> None:
    """crm-sync's dead letters (``crm_rejected``, ``key_mismatch``) keep ``crm.handoff``'s
    key, ``<tenant>/<investor_id>``: sealed under that investor, shredded by that
    investor's erasure and not by another tenant's of the same id; an old bare-id key
    names no tenant and its value is withheld, as is one whose key names another lead."""
    vault, tenants = KeyVault(":memory:"), {"acme", "beta"}
    body = b'{"tenant": "beta", "investor_id": "inv-1", "contact_ref": "Jane Doe"}'

    def sealed(key: bytes, value: bytes = body) -> dict:
        return seal_dead_letter({**letter("crm.handoff", key, value), "tenant": "beta"},
                                vault, tenants, at=(1, "t", 0, 0))

    ours = sealed(b"beta/inv-1")
    assert ours["sealed"] and b"Jane" in open_dead_letter(ours, vault, tenants)
    for subject in erasure_subjects("acme", "inv-1"):
        vault.destroy(*subject, at=(5, "investor.erasure", 0, 0))
    assert b"Jane" in open_dead_letter(ours, vault, tenants)
    for subject in erasure_subjects("beta", "inv-1"):
        vault.destroy(*subject, at=(6, "investor.erasure", 0, 0))
    with pytest.raises(LookupError):
        open_dead_letter(ours, vault, tenants)
    for key in (b"inv-2", b"acme/inv-2"):  # no tenant; another tenant's key than the body's
        assert sealed(key, body.replace(b"inv-1", b"inv-2"))["value_b64"] is None
