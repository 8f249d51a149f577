"""The output key contract: ``<tenant>/<investor_id>``, made and parsed in one place."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.schemas.common import ENTITY_ID_PATTERN, TENANT_ID_PATTERN
from esg_leads.schemas.keys import (
    case_id,
    case_number,
    case_owner,
    output_key,
    parse_output_key,
    qualification_id,
)

tenants = st.from_regex(TENANT_ID_PATTERN, fullmatch=True)
investors = st.from_regex(ENTITY_ID_PATTERN, fullmatch=True)


@given(tenants, investors)
def test_a_key_parses_back_to_its_tenant_and_investor(tenant: str, investor: str) -> None:
    key = output_key(tenant, investor)
    assert parse_output_key(key) == (tenant, investor)
    assert parse_output_key(key.encode()) == (tenant, investor)


@given(tenants, investors, tenants, investors)
def test_two_tenants_keys_never_collide(t1: str, i1: str, t2: str, i2: str) -> None:
    assert (output_key(t1, i1) == output_key(t2, i2)) == ((t1, i1) == (t2, i2))


@given(st.text(max_size=80) | st.binary(max_size=80))
def test_a_key_parses_only_with_a_valid_tenant_and_investor(key: str | bytes) -> None:
    """Anything parse accepts is exactly a key output_key makes of valid ids."""
    try:
        tenant, investor = parse_output_key(key)
    except ValueError:
        return
    assert re.fullmatch(TENANT_ID_PATTERN, tenant) and re.fullmatch(ENTITY_ID_PATTERN, investor)
    text = key.decode() if isinstance(key, bytes) else key
    assert output_key(tenant, investor) == text


@pytest.mark.parametrize("key", [
    "inv-1",  # the old contract: no tenant, never guessed
    b"inv-1", "", "/inv-1", "acme/", "Acme/inv-1", "a/inv-1", "acme/inv-1/x",
    "../acme/inv-1", "acme/../inv-1", "acme/inv 1", "acme/inv-1\n", b"acme/\xff",
    "x" * 33 + "/inv-1",
])
def test_refuses_keys_without_a_valid_tenant_part(key: str | bytes) -> None:
    with pytest.raises(ValueError, match="key"):
        parse_output_key(key)


@pytest.mark.parametrize("key", [b"\xff" * 5_000_000, "x" * 5_000_000, b"acme/" + b"\xff" * 10**6])
def test_the_error_names_a_bounded_prefix_of_the_key(key: str | bytes) -> None:
    """Review of stop 30: a non-UTF-8 key was embedded whole in the error text, which goes
    into dead letters and logs (a 5 MB key: a 20 MB line)."""
    with pytest.raises(ValueError) as error:
        parse_output_key(key)
    assert len(str(error.value)) < 1000


@given(tenants, investors, st.integers(1, 10**24 - 1), tenants, investors)
def test_derived_ids_name_their_tenant_investor_and_number_and_fit_their_schema(
        tenant: str, investor: str, n: int, t2: str, i2: str) -> None:
    """Case and qualification ids: any valid tenant and investor id (``:`` and ``.``
    included), read back whole; two tenants' or investors' ids never collide; the old
    form (``case:<investor>:<n>``) names no owner; all fit DerivedId."""
    from pydantic import TypeAdapter

    from esg_leads.schemas.common import DerivedId

    derived = TypeAdapter(DerivedId)
    for make in (case_id, qualification_id):
        made = make(tenant, investor, n)
        assert derived.validate_python(made) == made
        assert (case_owner(made), case_number(made)) == ((tenant, investor), n)
        assert (make(t2, i2, n) == made) == ((t2, i2) == (tenant, investor))
    old = f"case:{investor}:{n}"
    assert (case_owner(old), case_number(old)) == (None, n)
