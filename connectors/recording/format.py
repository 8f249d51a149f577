"""The on-disk layout of a recording: the Arrow schema, segment names, one message.

See :mod:`connectors.recording` for the format as a whole.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, Final, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from esg_leads.schemas.records import RawMessage

#: Version of the on-disk layout, stored in ``manifest.json``.
FORMAT_VERSION: Final = 1
#: File name of the manifest inside a recording directory.
MANIFEST_NAME: Final = "manifest.json"

_HEADER_STRUCT: Final = pa.struct(
    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.binary())]
)
_HEADERS_TYPE: Final = pa.list_(pa.field("element", _HEADER_STRUCT, nullable=False))

#: Arrow schema of every segment file.
SCHEMA: Final = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", _HEADERS_TYPE, nullable=False),
    ],
    metadata={"esg_leads.recording.format_version": str(FORMAT_VERSION)},
)

_KEY_COLUMNS: Final = ["topic", "partition", "offset", "timestamp"]
_SORT_KEYS: Final = [
    ("timestamp", "ascending"),
    ("topic", "ascending"),
    ("partition", "ascending"),
    ("offset", "ascending"),
]
_SEGMENT_RE: Final = re.compile(r"^segment-(\d{6,})\.parquet$")


def _segment_name(index: int) -> str:
    return f"segment-{index:06d}.parquet"


def _list_segments(directory: Path) -> list[Path]:
    found: list[tuple[int, Path]] = []
    for entry in os.scandir(directory):
        match = _SEGMENT_RE.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return [path for _, path in found]


#: A recording row is one raw Kafka message: the very type sources hand the flow.
RecordedMessage = RawMessage


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building a batch of (acyclic) objects.

    Allocating ~10k tracked objects per batch otherwise triggers dozens of
    young-generation collections that also promote every live message into
    older generations; pausing per batch made replay 25-60% faster.  The
    previous state is restored on exit, so callers that disabled the GC
    themselves are unaffected.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# Building messages is the hot path of the reader: tuple.__new__ over zipped
# columns runs the per-row work in C loops.
_new_message = partial(tuple.__new__, RecordedMessage)


def _build_messages(columns: tuple[list[Any], ...]) -> list[RecordedMessage]:
    """Build messages from per-field lists, in field order."""
    return list(map(_new_message, zip(*columns, strict=True)))


def _check_schema(schema: pa.Schema, path: Path) -> None:
    got = [(f.name, f.type) for f in schema]
    want = [(f.name, f.type) for f in SCHEMA]
    if got != want:
        raise ValueError(f"{path} is not a recording segment: schema {got} != expected {want}")


def _decode_headers(column: pa.ListArray) -> list[tuple[tuple[str, bytes | None], ...]]:
    n = len(column)
    out: list[tuple[tuple[str, bytes | None], ...]] = [()] * n
    flat = column.flatten()  # the header structs of all rows, in row order
    if len(flat) == 0:
        return out  # no headers in this batch
    pairs = list(zip(flat.field(0).to_pylist(), flat.field(1).to_pylist(), strict=True))
    lengths = pc.list_value_length(column)
    rows = pc.indices_nonzero(lengths)
    bounds = pc.min_max(lengths.take(rows))
    width = bounds["min"].as_py()
    if width == bounds["max"].as_py():
        # Every row with headers has the same number of them (typical: one
        # producer, one header set): group the pairs in C.
        grouped: Iterable[tuple[tuple[str, bytes | None], ...]] = zip(*[iter(pairs)] * width)
    else:
        counts = lengths.take(rows).to_pylist()
        grouped = (tuple(pairs[e - k : e]) for e, k in zip(accumulate(counts), counts))
    if len(rows) == n:
        return list(grouped)
    for i, headers in zip(rows.to_pylist(), grouped):
        out[i] = headers
    return out


class RowFilter(Protocol):
    """Which rows of a recording one reader hands on (see :class:`RecordingReader`'s ``rows``).

    :meth:`classify` looks at the topics and values of a batch of rows and says for
    each: ``True`` (handed on), ``False`` (skipped, never built as a message) or ``None``
    (built and passed to :meth:`decide`). Both must be functions of the row alone, so
    that a row is classified the same whichever batch it is read in.
    """

    def classify(self, values: list[bytes | None],
                 topics: list[str] | None = None) -> list[bool | None]: ...

    def decide(self, message: RecordedMessage) -> bool: ...
