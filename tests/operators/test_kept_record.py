"""A lead's kept record: every format a snapshot may hold reads back byte for byte."""

from __future__ import annotations

import hashlib
import threading

import orjson
import pyarrow as pa
import pytest
import zstandard
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


def test_the_shipped_dictionary_never_changes() -> None:
    # Snapshots hold frames made against v1: a changed file would misread them. A new
    # dictionary is a new version with its own first byte (see the module).
    from importlib import resources
    raw = resources.files("esg_leads.operators").joinpath("record_dictionaries", "v1.zdict").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == \
        "95488cf8bcab266a281f09fac79eea6cbb44b39f1705a88a3da9f1b74d89c1d8"
    # A record as stop 31 kept it reads back the same in every later version.
    assert kept_record.unpack(bytes.fromhex(
        "0128b52ffd2445b50000307b61636d5d7d04fc126846ca0484b3f5f14a161a9b8b844ae2")) == \
        b'{"tenant":"acme","investor_id":"inv-1","state":"scored","lineage":[]}'


def test_a_damaged_record_is_an_error_never_another_record() -> None:
    kept = kept_record.pack(orjson.dumps({"tenant": "acme", "investor_id": "inv-1",
                                          "probability": 0.518424, "tier": "hot"}))
    for bit in range(8, len(kept) * 8):  # every bit after the mark
        damaged = bytearray(kept)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            assert kept_record.unpack(bytes(damaged)) == kept_record.unpack(kept)
        except (ValueError, zstandard.ZstdError):
            pass
