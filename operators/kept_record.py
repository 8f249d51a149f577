"""A lead's last published record as the lifecycle keeps it: JSON, compressed.

A lead is re-published from its last record on a state-only change (a CRM outcome, a
review decision) and handed off from it, so the lifecycle keeps it for as long as the
lead lives: at 100k investors it was the largest thing an investor costs (issue 16).
Its dict tree cost ~15 KB, its JSON ~5.6 KB, LZ4 ~3.1 KB. Lead records are small and
alike: one record compresses badly on its own, but against a dictionary of what lead
records look like (field names, explanation texts, lineage topics, number shapes) it
comes to ~0.8 KB, on worlds the dictionary was not trained on too (a 5-tenant world of
another seed: 854 bytes a record against LZ4's 3,214), for ~14 us a publish.

The first byte says how the rest is kept, so snapshots of every version restore:

- ``{``: plain JSON (versions before compression);
- ``\\x00``: three more bytes of big-endian length, then an LZ4 frame (stop 29–30);
- ``\\x01``: a zstd frame against dictionary ``v1`` (``record_dictionaries/v1.zdict``).

A dictionary, once shipped, never changes: snapshots hold frames made against it (a
test pins its SHA-256 and a frame made with it). A better one is added as ``v2`` with
its own first byte, and ``v1`` stays to read old state. Frames carry a checksum: a
damaged record is an error, never another record. ``bench/record_dictionary.py`` trains one from a generated world.

>>> record = b'{"state":"scored","lineage":[' + b'{"topic":"t"},' * 50 + b'{}]}'
>>> kept = pack(record)
>>> kept[:1], len(kept) < 100, unpack(kept) == record
(b'\\x01', True, True)
>>> unpack(record) == record  # a plain JSON record of an old snapshot
True
"""

from __future__ import annotations

import threading
from importlib import resources

import pyarrow as pa
import zstandard

_PLAIN = b"{"
_LZ4_MARK = 0
_ZSTD_V1 = 1
#: The dictionary file of each zstd mark.
_DICTIONARIES = {_ZSTD_V1: "v1.zdict"}
#: zstd's level 3 against the dictionary: ~14 us a 5.6 KB record; level 1 saves ~1 us
#: and costs ~40 bytes (measured on 1,364 records of a generated world).
_LEVEL = 3
#: Records kept compressed are at most this long (zstd frames carry their length; a
#: longer record, which bounded outputs never make, is kept as plain JSON).
_PACKED_LIMIT = 1 << 24
#: The legacy LZ4 codec, from the Arrow C++ library the sinks load anyway.
_LZ4 = pa.Codec("lz4")


class _Codecs:
    """One thread's zstd compressor and decompressors: they are not safe to share
    between threads, and bytewax runs a process's workers as threads."""

    def __init__(self) -> None:
        data = _dictionary(_ZSTD_V1)
        # A checksum (4 bytes) so that a damaged record is an error, never a different
        # record: a flipped bit otherwise decoded to valid, altered JSON a third of the time.
        self.compress = zstandard.ZstdCompressor(
            level=_LEVEL, dict_data=data, write_content_size=True, write_checksum=True,
            write_dict_id=False).compress
        self.decompress = {mark: zstandard.ZstdDecompressor(dict_data=_dictionary(mark)).decompress
                           for mark in _DICTIONARIES}


_THREAD = threading.local()
_DATA: dict[int, zstandard.ZstdCompressionDict] = {}
_DATA_LOCK = threading.Lock()


def _dictionary(mark: int) -> zstandard.ZstdCompressionDict:
    with _DATA_LOCK:
        if mark not in _DATA:
            raw = resources.files(__package__).joinpath(
                "record_dictionaries", _DICTIONARIES[mark]).read_bytes()
            data = zstandard.ZstdCompressionDict(raw)
            # Build its decoding tables now, under the lock: zstandard builds them lazily
            # on first use with the GIL released, so two threads could both build them.
            zstandard.ZstdDecompressor(dict_data=data).decompress(
                zstandard.ZstdCompressor(dict_data=data).compress(b"{}"))
            _DATA[mark] = data
        return _DATA[mark]


def _local() -> _Codecs:
    codecs = getattr(_THREAD, "codecs", None)
    if codecs is None:
        codecs = _THREAD.codecs = _Codecs()
    return codecs


def pack(encoded: bytes) -> bytes:
    """The record's JSON as it is kept: a mark byte and a zstd frame (see the module)."""
    if len(encoded) >= _PACKED_LIMIT:
        # A copy: orjson's bytes keep the buffer they grew in (16 KB for a 5 KB record).
        return memoryview(encoded).tobytes()
    return b"\x01" + _local().compress(encoded)


def unpack(kept: bytes) -> bytes:
    """The JSON :func:`pack` (or an earlier version) kept, byte for byte."""
    mark = kept[0]
    if kept[:1] == _PLAIN:
        return kept
    if mark == _LZ4_MARK:
        return _LZ4.decompress(memoryview(kept)[4:], decompressed_size=int.from_bytes(kept[:4], "big"),
                               asbytes=True)
    decompress = _local().decompress.get(mark)
    if decompress is None:
        raise ValueError(f"a kept lead record of an unknown format (first byte {mark})")
    frame = memoryview(kept)[1:]
    if not 0 <= zstandard.frame_content_size(frame) < _PACKED_LIMIT:
        # A damaged length would make the decoder allocate it before failing.
        raise ValueError("a kept lead record whose frame states no length or too large a one")
    return decompress(frame)
