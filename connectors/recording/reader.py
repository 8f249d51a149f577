"""Reading a recording: a streaming k-way merge of its segments in replay order."""

from __future__ import annotations

import json
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from esg_leads.connectors.recording.format import (
    _KEY_COLUMNS,
    _SORT_KEYS,
    MANIFEST_NAME,
    RecordedMessage,
    RowFilter,
    _build_messages,
    _check_schema,
    _decode_headers,
    _gc_paused,
    _list_segments,
)
from esg_leads.connectors.recording.prefetch import Prefetcher

# Above this many segments the reader does not start a prefetch thread per
# segment and decodes synchronously instead.
_MAX_PREFETCH_SEGMENTS: Final = 64


class _Cursor:
    """Streams one segment batch by batch, exposing the sort-key columns.

    ``ts``/``topic``/``partition``/``offset`` are Python lists for the current
    batch; :meth:`messages` builds the batch's :class:`RecordedMessage` list on
    first use.  ``base`` is the segment row number of the batch's first row.
    """

    __slots__ = (
        "_pf",
        "_prefetcher",
        "_batches",
        "_skip",
        "_batch",
        "_msgs",
        "_rows",
        "index",
        "base",
        "n",
        "pos",
        "ts",
        "topic",
        "partition",
        "offset",
    )

    def __init__(
        self,
        index: int,
        pf: pq.ParquetFile,
        batch_rows: int,
        start_row: int = 0,
        columns: list[str] | None = None,
        prefetch: bool = True,
        rows: RowFilter | None = None,
    ) -> None:
        self.index = index
        self._rows = rows
        md = pf.metadata
        first_group = 0
        base = 0
        while first_group < md.num_row_groups:
            group_rows = md.row_group(first_group).num_rows
            if base + group_rows > start_row:
                break
            base += group_rows
            first_group += 1
        batches = pf.iter_batches(
            batch_size=batch_rows,
            row_groups=range(first_group, md.num_row_groups),
            columns=columns,
        )
        self._pf = pf
        self._prefetcher = Prefetcher(batches) if prefetch else None
        self._batches: Iterator[pa.RecordBatch] = (
            batches if self._prefetcher is None else self._prefetcher
        )
        self._skip = start_row - base
        self._batch: pa.RecordBatch | None = None
        self._msgs: list[RecordedMessage] | None = None
        self.base = base
        self.n = 0
        self.pos = 0
        self.ts: list[int] = []
        self.topic: list[str] = []
        self.partition: list[int] = []
        self.offset: list[int] = []

    def advance(self) -> bool:
        """Load the next non-empty batch; False when the segment is exhausted."""
        self.base += self.n
        for batch in self._batches:
            rows = batch.num_rows
            if self._skip:
                if self._skip >= rows:
                    self._skip -= rows
                    self.base += rows
                    continue
                pos, self._skip = self._skip, 0
            else:
                pos = 0
            if pos == rows:
                continue
            topic = batch.column(0)
            if isinstance(topic, pa.DictionaryArray):
                names = topic.dictionary.to_pylist()
                self.topic = list(map(names.__getitem__, topic.indices.to_pylist()))
            else:
                self.topic = topic.to_pylist()
            self.partition = batch.column(1).to_pylist()
            self.offset = batch.column(2).to_pylist()
            self.ts = batch.column(3).view(pa.int64()).to_pylist()
            self._batch = batch
            self._msgs = None
            self.n = rows
            self.pos = pos
            return True
        self._batch = None
        self._msgs = None
        self.n = self.pos = 0
        self.ts = self.topic = self.partition = self.offset = []
        return False

    def close(self) -> None:
        """Stop prefetching and close the file (safe to call more than once)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
        self._pf.close()

    def arrow_batch(self) -> pa.RecordBatch:
        """The current Arrow batch."""
        assert self._batch is not None
        return self._batch

    def key(self, i: int) -> tuple[int, str, int, int]:
        return (self.ts[i], self.topic[i], self.partition[i], self.offset[i])

    def messages(self) -> list[RecordedMessage | None]:
        """All messages of the current batch (built once per batch); with a row filter,
        ``None`` in place of each row it does not hand on (skipped rows are never built)."""
        msgs = self._msgs
        if msgs is None:
            batch = self._batch
            assert batch is not None
            if self._rows is not None:
                msgs = self._msgs = self._selected(batch)
                return msgs
            with _gc_paused():
                msgs = self._msgs = _build_messages(
                    (
                        self.topic,
                        self.partition,
                        self.offset,
                        self.ts,
                        batch.column(4).to_pylist(),
                        batch.column(5).to_pylist(),
                        _decode_headers(batch.column(6)),
                    )
                )
        return msgs

    def _selected(self, batch: pa.RecordBatch) -> list[RecordedMessage | None]:
        rows = self._rows
        assert rows is not None
        values = batch.column(5).to_pylist()
        codes = rows.classify(values, self.topic)
        at = [i for i, code in enumerate(codes) if code is not False]
        msgs: list[RecordedMessage | None] = [None] * batch.num_rows
        if not at:
            return msgs
        keys = batch.column(4)
        headers = batch.column(6)
        if len(at) < batch.num_rows:
            index = pa.array(at, pa.int64())
            keys, headers = keys.take(index), headers.take(index)
        topic, partition, offset, ts = self.topic, self.partition, self.offset, self.ts
        with _gc_paused():
            built = _build_messages((
                [topic[i] for i in at],
                [partition[i] for i in at],
                [offset[i] for i in at],
                [ts[i] for i in at],
                keys.to_pylist(),
                [values[i] for i in at],
                _decode_headers(headers),
            ))
        decide = rows.decide
        for i, message in zip(at, built, strict=True):
            if codes[i] or decide(message):
                msgs[i] = message
        return msgs


def _every(batch: list[Any]) -> list[RecordedMessage]:
    return batch


def _handed(batch: list[Any]) -> list[RecordedMessage]:
    return [m for m in batch if m is not None]


_Part = tuple["_Cursor", int, int]


def _block_order(parts: list[_Part]) -> list[int]:
    """Permutation sorting the concatenated parts by the replay key.

    Sorted in C++ on the Arrow key columns (no Python key tuples); the sort
    is stable, so equal keys keep part (cursor) order, then position.
    """
    cols: list[list[pa.Array]] = [[], [], [], []]
    for c, lo, hi in parts:
        batch = c.arrow_batch().slice(lo, hi - lo)
        topic = batch.column(0)
        if isinstance(topic, pa.DictionaryArray):
            topic = topic.dictionary_decode()
        cols[0].append(batch.column(3))
        cols[1].append(topic)
        cols[2].append(batch.column(1))
        cols[3].append(batch.column(2))
    table = pa.table(
        [pa.concat_arrays(chunks) for chunks in cols],
        names=["timestamp", "topic", "partition", "offset"],
    )
    order: list[int] = pc.sort_indices(table, sort_keys=_SORT_KEYS).to_pylist()
    return order


def _merge_blocks(cursors: list[_Cursor]) -> Iterator[tuple[list[_Part], list[int] | None]]:
    """Streaming k-way merge of sorted cursors, one block at a time.

    Yields ``(parts, order)``.  ``parts`` lists ``(cursor, lo, hi)`` slices of
    the cursors' current batches that together are the next rows in global
    order; ``order`` is ``None`` when there is a single part (already in
    order), else the permutation of the concatenated parts that sorts them.

    Each step takes the *frontier* ``F``: the smallest last key among the
    current batches (ties: lowest cursor index).  Every row ``<= F`` in any
    current batch precedes every row not yet loaded, so those rows form the
    next block; the frontier's batch is always consumed entirely, so every
    step makes progress and the number of steps is at most the number of
    batches.  Rows with equal sort keys are ordered by cursor (segment)
    index, then by position, which keeps the merge stable.

    Disjoint segments (the usual case: time-ordered input) yield whole
    batches without any sorting; blocks drawn from several interleaved
    segments are ordered by a stable Arrow sort (:func:`_block_order`).
    """
    active = [c for c in cursors if c.advance()]
    while len(active) > 1:
        frontier = active[0].key(active[0].n - 1)
        fi = 0
        for j in range(1, len(active)):
            c = active[j]
            last = c.key(c.n - 1)
            if last < frontier:
                frontier, fi = last, j
        f_ts = frontier[0]
        parts: list[_Part] = []
        for j, c in enumerate(active):
            lo, n = c.pos, c.n
            if j == fi:
                hi = n
            else:
                ts = c.ts
                hi = bisect_left(ts, f_ts, lo, n)
                if hi < n and ts[hi] == f_ts:
                    # Equal timestamps: compare full keys; on a full tie the
                    # lower cursor index goes first.
                    topic, partition, offset = c.topic, c.partition, c.offset
                    while hi < n and ts[hi] == f_ts:
                        key = (f_ts, topic[hi], partition[hi], offset[hi])
                        if key < frontier or (key == frontier and j < fi):
                            hi += 1
                        else:
                            break
            if hi > lo:
                parts.append((c, lo, hi))
        order: list[int] | None = None
        if len(parts) > 1:
            order = _block_order(parts)
        yield parts, order
        exhausted = False
        for c, _, hi in parts:
            c.pos = hi
            if hi == c.n and not c.advance():
                exhausted = True
        if exhausted:
            active = [c for c in active if c.n]
    if active:
        c = active[0]
        while True:
            yield [(c, c.pos, c.n)], None
            if not c.advance():
                return


class RecordingReader:
    """Replay a recording in ``(timestamp_ms, topic, partition, offset)`` order.

    Parameters
    ----------
    directory
        A recording directory written by :class:`RecordingWriter`.
    batch_rows
        Rows decoded per segment at a time, and the size of the lists yielded
        by :meth:`iter_batches`.  At most ``segments + 1`` batches of
        :class:`RecordedMessage` objects are alive inside the reader, and at
        most two decoded Arrow batches per segment.
    start_at
        Number of messages (in replay order) to skip -- the resume state of a
        consumer that already emitted that many messages.  Skipping merges
        only the four sort-key columns and never builds message objects.
    rows
        Hand on only the rows this :class:`RowFilter` selects (one reader of several,
        each reading its own share of one recording). Batches still span
        ``batch_rows`` messages of the replay order, so they are shorter by the rows
        left out (an empty list when none is this reader's), and ``start_at`` counts
        every message, selected or not. Rows left out are never built as messages.

    Notes
    -----
    Each iteration (:meth:`__iter__` / :meth:`iter_batches`) is an independent
    pass that starts at ``start_at``.  While it runs, every segment (up to 64)
    has a daemon thread decoding its next Parquet batch; the threads stop when
    the pass ends or its generator is closed or garbage-collected.  The cyclic
    GC is paused while each batch of messages is built (see ``_gc_paused``).

    Examples
    --------
    >>> import tempfile
    >>> from esg_leads.connectors.recording import write_messages
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_messages(
    ...         tmp,
    ...         [RecordedMessage("t", i % 2, i, 100 - i, None, b"x") for i in range(6)],
    ...         segment_rows=4,
    ...     )
    ...     reader = RecordingReader(tmp, batch_rows=4)
    ...     print(reader.count(), reader.topics(), reader.segment_count)
    ...     print([len(b) for b in reader.iter_batches()])
    ...     print([m.offset for m in RecordingReader(tmp, start_at=2)])
    6 ['t'] 2
    [4, 2]
    [3, 2, 1, 0]
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        batch_rows: int = 10_000,
        start_at: int = 0,
        rows: RowFilter | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        if start_at < 0:
            raise ValueError(f"start_at must be >= 0, got {start_at}")
        self._dir = Path(directory)
        if not self._dir.is_dir():
            raise FileNotFoundError(f"recording directory not found: {self._dir}")
        self._paths = _list_segments(self._dir)
        self._batch_rows = batch_rows
        self._start_at = start_at
        self._rows = rows
        for path in self._paths:
            _check_schema(pq.read_schema(path), path)
        total = self.count()
        if start_at > total:
            raise ValueError(f"start_at={start_at} exceeds the recording's {total} messages")

    @property
    def directory(self) -> Path:
        """The recording directory."""
        return self._dir

    @property
    def segment_count(self) -> int:
        """Number of segment files."""
        return len(self._paths)

    @property
    def manifest(self) -> dict[str, Any] | None:
        """Parsed ``manifest.json``, or ``None`` if the writer never closed."""
        try:
            text = (self._dir / MANIFEST_NAME).read_text()
        except FileNotFoundError:
            return None
        manifest: dict[str, Any] = json.loads(text)
        return manifest

    def count(self) -> int:
        """Total messages in the recording (from Parquet footers; ignores ``start_at``)."""
        return sum(pq.read_metadata(path).num_rows for path in self._paths)

    def count_containing(self, needles: Sequence[bytes], rows_per_group: int | None = None
                         ) -> list[int]:
        """How many messages' values contain each of ``needles``, counted in the first
        ``rows_per_group`` rows of every row group (``None``: all rows): a cheap census
        of a large recording (Arrow's substring count, no message objects).

        >>> import tempfile
        >>> from esg_leads.connectors.recording import write_messages
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = write_messages(tmp, [RecordedMessage("t", 0, i, i, None, b"ab" if i % 3 else b"b")
        ...                              for i in range(6)])
        ...     RecordingReader(tmp).count_containing([b"a", b"b", b"c"])
        [4, 6, 0]
        """
        counts = [0] * len(needles)
        for path in self._paths:
            pf = self._open(path)
            for group in range(pf.metadata.num_row_groups):
                for batch in pf.iter_batches(batch_size=rows_per_group or 65_536,
                                             row_groups=[group], columns=["value"]):
                    values = batch.column(0)
                    for i, needle in enumerate(needles):
                        counts[i] += pc.sum(pc.count_substring(values, needle)).as_py() or 0
                    if rows_per_group is not None:
                        break
        return counts

    def topics(self) -> list[str]:
        """Sorted topic names (from the manifest, else by scanning the topic column)."""
        manifest = self.manifest
        if manifest is not None and "topics" in manifest:
            return sorted(manifest["topics"])
        names: set[str] = set()
        for path in self._paths:
            pf = pq.ParquetFile(path, read_dictionary=["topic"])
            for batch in pf.iter_batches(batch_size=65_536, columns=["topic"]):
                names.update(pc.unique(batch.column(0).dictionary_decode()).to_pylist())
        return sorted(names)

    def _open(self, path: Path) -> pq.ParquetFile:
        # Buffered, page-by-page reads: no memory map (mapped file pages would
        # count towards RSS for the whole file) and no pre-buffering of whole
        # row groups, so memory stays proportional to batch_rows.
        return pq.ParquetFile(
            path,
            read_dictionary=["topic"],
            memory_map=False,
            pre_buffer=False,
            buffer_size=1 << 20,
        )

    def _start_rows(self) -> list[int]:
        """Per-segment row positions after skipping ``start_at`` merged messages."""
        remaining = self._start_at
        rows = [0] * len(self._paths)
        if len(self._paths) == 1 or remaining == 0:
            rows[0] = remaining
            return rows
        # Merge the sort-key columns only (keys, values and headers are not
        # even read) to find how far into each segment the first
        # ``start_at`` messages reach.
        cursors: list[_Cursor] = []
        prefetch = len(self._paths) <= _MAX_PREFETCH_SEGMENTS
        try:
            for i, path in enumerate(self._paths):
                cursors.append(
                    _Cursor(i, self._open(path), self._batch_rows, 0, _KEY_COLUMNS, prefetch)
                )
            for parts, order in _merge_blocks(cursors):
                size = sum(hi - lo for _, lo, hi in parts)
                if size <= remaining:
                    for c, _, hi in parts:
                        rows[c.index] = c.base + hi
                    remaining -= size
                else:
                    # Only a prefix (in merged order) of this block is skipped;
                    # it is a prefix of every part, so count rows per part.
                    taken = [0] * len(parts)
                    if order is None:
                        taken[0] = remaining
                    else:
                        starts = list(accumulate([hi - lo for _, lo, hi in parts]))
                        for x in order[:remaining]:
                            taken[bisect_right(starts, x)] += 1
                    for (c, lo, _), k in zip(parts, taken, strict=True):
                        rows[c.index] = c.base + lo + k
                    remaining = 0
                if remaining == 0:
                    break
        finally:
            for c in cursors:
                c.close()
        return rows

    def iter_batches(self) -> Iterator[list[RecordedMessage]]:
        """Yield lists of up to ``batch_rows`` messages in global replay order.

        Every list but the last has exactly ``batch_rows`` messages.
        """
        if not self._paths:
            return
        starts = self._start_rows()
        cursors: list[_Cursor] = []
        prefetch = len(self._paths) <= _MAX_PREFETCH_SEGMENTS
        try:
            for i, (path, start) in enumerate(zip(self._paths, starts, strict=True)):
                cursors.append(
                    _Cursor(i, self._open(path), self._batch_rows, start, None, prefetch,
                            self._rows)
                )
            size = self._batch_rows
            out: list[Any] = []
            handed = _handed if self._rows is not None else _every
            for parts, order in _merge_blocks(cursors):
                if order is None:
                    c, lo, hi = parts[0]
                    msgs = c.messages()
                    if not out and lo == 0 and hi == size == len(msgs):
                        yield handed(msgs)  # fast path: a whole decoded batch
                        continue
                else:
                    cat: list[Any] = []
                    for c, lo, hi in parts:
                        cat.extend(c.messages()[lo:hi])
                    msgs = list(map(cat.__getitem__, order))
                    lo, hi = 0, len(msgs)
                while lo < hi:
                    take = min(hi - lo, size - len(out))
                    out.extend(msgs[lo : lo + take])
                    lo += take
                    if len(out) == size:
                        yield handed(out)
                        out = []
            if out:
                yield handed(out)
        finally:
            for c in cursors:
                c.close()

    def __iter__(self) -> Iterator[RecordedMessage]:
        """Yield every message (after ``start_at``) in global replay order."""
        for batch in self.iter_batches():
            yield from batch
