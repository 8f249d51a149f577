"""The audit trail's JSON (operators/audit.py): ``dumps`` writes what
``orjson.dumps(..., option=OPT_NON_STR_KEYS)`` writes, whatever the keys."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators.audit import dumps

keys = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.booleans(), st.none(),
                 st.floats(allow_nan=False, allow_infinity=False, width=32))
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=8),
                   st.floats(allow_nan=False, allow_infinity=False),
                   st.datetimes(timezones=st.just(timezone.utc)))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=6), inner, max_size=4),
    st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


@given(values)
def test_dumps_writes_the_bytes_of_the_non_str_keys_option(value) -> None:
    try:
        expected = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # e.g. two keys that write the same text
        with pytest.raises(orjson.JSONEncodeError):
            dumps(value)
        return
    assert dumps(value) == expected


def test_a_value_no_option_can_write_still_raises() -> None:
    with pytest.raises(TypeError):
        dumps({"when": datetime(2026, 1, 1), "x": object()})
