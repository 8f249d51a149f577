"""A lead's kept record: every format a snapshot may hold reads back byte for byte."""

from __future__ import annotations

import threading

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators import kept_record

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-2**63, 2**63 - 1)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=60)


@given(JSON)
def test_pack_then_unpack_is_the_identity(value: object) -> None:
    encoded = orjson.dumps(value)
    kept = kept_record.pack(encoded)
    assert kept_record.unpack(kept) == encoded
    assert kept[:1] == b"\x01"  # never mistaken for a plain JSON record of an old snapshot


def lz4_kept(encoded: bytes) -> bytes:
    """How stops 29 and 30 kept a record (their snapshots hold these bytes)."""
    return len(encoded).to_bytes(4, "big") + pa.Codec("lz4").compress(encoded, asbytes=True)


@given(JSON)
def test_records_kept_by_earlier_versions_read_back(value: object) -> None:
    encoded = orjson.dumps(value)
    assert kept_record.unpack(lz4_kept(encoded)) == encoded
    if encoded[:1] == b"{":  # versions before compression kept the JSON of a dict
        assert kept_record.unpack(encoded) == encoded


def test_an_unknown_format_is_an_error_not_a_wrong_record() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        kept_record.unpack(b"\x07" + kept_record.pack(b'{"a":1}')[1:])


def test_a_record_too_long_for_a_frame_is_kept_as_its_json() -> None:
    huge = b'{"x":"' + b"a" * (1 << 24) + b'"}'
    kept = kept_record.pack(huge)
    assert kept == huge and kept_record.unpack(kept) == huge


def test_threads_each_compress_with_their_own_codec() -> None:
    # bytewax runs a process's workers as threads; a shared zstd compressor is unsafe.
    records = [orjson.dumps({"investor_id": f"inv-{i}", "lineage": [{"offset": j} for j in range(i % 50)]})
               for i in range(400)]
    results: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        results[n] = [kept_record.unpack(kept_record.pack(r)) for r in records]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n] == records for n in range(4))
