"""Recordings of Kafka topics: a directory of sorted Parquet segments.

A *recording* is a directory holding one or more Parquet *segment* files
(``segment-000000.parquet``, ``segment-000001.parquet``, ...) and, once the
writer has been closed cleanly, a small ``manifest.json``.  Each row is one
Kafka message with the columns

============  ==========================================  ========
column        Arrow type                                  nullable
============  ==========================================  ========
topic         ``string``                                  no
partition     ``int32``                                   no
offset        ``int64``                                   no
timestamp     ``timestamp[ms, tz=UTC]`` (message time)    no
key           ``binary``                                  yes
value         ``binary``                                  yes
headers       ``list<struct<key: string, value: binary>>``  no (may be empty;
                                                          header values may
                                                          be null)
============  ==========================================  ========

Every segment is sorted by the *replay order* ``(timestamp_ms, topic,
partition, offset)`` (:meth:`RecordedMessage.sort_key`).  The reader performs
a streaming k-way merge of the segments, each read in record batches of
``batch_rows``, so the whole recording is replayed in that global order while
holding O(``segments x batch_rows``) rows in memory (as Python objects: at most
one batch per segment plus one output batch; as Arrow data: at most three
batches per segment, because the next batches are decoded in background
threads).  The sort is stable: messages with equal sort keys come back in the
order they were written, i.e. replaying a recording yields exactly
``sorted(written_messages, key=RecordedMessage.sort_key)``.

Writing is deterministic: for a given pyarrow version, the same messages
written in the same order with the same options produce byte-identical files.

Examples
--------
>>> import tempfile
>>> msgs = [
...     RecordedMessage("leads", 0, 1, 2_000, b"k1", b'{"a": 1}'),
...     RecordedMessage("leads", 0, 0, 1_000, None, b'{"a": 0}', (("src", b"crm"),)),
... ]
>>> with tempfile.TemporaryDirectory() as tmp:
...     write_messages(tmp, msgs)
...     [(m.offset, m.headers) for m in read_messages(tmp)]
2
[(0, (('src', b'crm'),)), (1, ())]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from esg_leads.connectors.recording.format import FORMAT_VERSION, MANIFEST_NAME, SCHEMA, RecordedMessage
from esg_leads.connectors.recording.reader import RecordingReader
from esg_leads.connectors.recording.writer import RecordingWriter

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SCHEMA",
    "RecordedMessage",
    "RecordingReader",
    "RecordingWriter",
    "read_messages",
    "write_messages",
]


def read_messages(
    directory: str | os.PathLike[str], *, start_at: int = 0
) -> Iterator[RecordedMessage]:
    """Iterate over a recording in replay order (see :class:`RecordingReader`).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_messages(tmp, [RecordedMessage("t", 0, 7, 5, b"", None)])
    ...     for msg in read_messages(tmp):
    ...         print(msg.topic, msg.offset, msg.key, msg.value, msg.headers)
    t 7 b'' None ()
    """
    return iter(RecordingReader(directory, start_at=start_at))


def write_messages(
    directory: str | os.PathLike[str], messages: Iterable[RecordedMessage], **kwargs: Any
) -> int:
    """Write ``messages`` as a new recording; returns the number written.

    Keyword arguments are passed to :class:`RecordingWriter`.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_messages(tmp, [RecordedMessage("t", 0, i, i, None, None) for i in range(3)])
    3
    """
    with RecordingWriter(directory, **kwargs) as writer:
        return writer.write_many(messages)
