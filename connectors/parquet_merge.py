"""Joining the workers' part files into one output file, a row group at a time.

A run's outputs are written per worker (:class:`connectors.parquet_sink.ParquetSink`);
:func:`finalize` joins them into ``leads.parquet`` etc. The join upserts by
idempotency key (a replay into an existing output adds nothing twice), deletes the
rows of erased investors and, with several workers, orders rows by event time and
key so that the file does not depend on how work was spread over workers. A single
part none of this changes is renamed into place: the sinks leave out the rows of
investors erased before they write them (``parquet_sink.ErasedKeys``).

Memory stays at the size of the key columns plus a few row groups, whatever the
size of the output: the first pass reads only the key columns (``idempotency_key``,
``tenant``, ``investor_id``, ``event_time``) and decides which rows survive and in what order;
the second copies surviving rows row group by row group. Reading every part whole
and concatenating them, as this module once did, peaked at ~90 KB per investor —
more than the run itself (issue 16).

With several parts, the output's row groups are taken in the sorted order: each
reads the input row groups holding its rows, and an input row group is dropped as
soon as no later output row group needs it. Parts are written in the flow's order,
which follows event time, so few input row groups are held at once; an input in no
order at all would hold them all, no worse than a whole-table sort.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from esg_leads.connectors.parquet_sink import ERASABLE, output_keys, records_of, schema_of, to_table

#: Rows per row group of a joined file (the sinks write parts with the same).
ROW_GROUP = 20_000
#: Rows read at a time when copying in order: a whole row group of leads decoded is
#: ~40 MB, more than the run's own growth per 1k investors (tests/replay/test_runner_memory.py).
READ_ROWS = 2_048


class _Source:
    """One input file: an earlier output (possibly of an older schema) or a part."""

    def __init__(self, path: Path, kind: str) -> None:
        self.file = pq.ParquetFile(path)
        self.kind = kind
        self.current = self.file.schema_arrow.equals(schema_of(kind))
        sizes = [self.file.metadata.row_group(i).num_rows
                 for i in range(self.file.metadata.num_row_groups)]
        #: First row of each row group, and one past the last.
        self.starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def column(self, name: str) -> pa.ChunkedArray | None:
        if name not in self.file.schema_arrow.names:
            return None
        return self.file.read(columns=[name]).column(name)

    def columns(self, names: tuple[str, ...]) -> pa.Table | None:
        if not set(names) <= set(self.file.schema_arrow.names):
            return None
        return self.file.read(columns=list(names))

    def row_group(self, index: int) -> pa.Table:
        return self._current(self.file.read_row_group(index))

    def batches(self, index: int):
        """Row group ``index`` as tables of at most ``READ_ROWS`` rows."""
        for batch in self.file.iter_batches(batch_size=READ_ROWS, row_groups=[index],
                                            use_threads=False):
            yield self._current(pa.Table.from_batches([batch]))

    def _current(self, table: pa.Table) -> pa.Table:
        # An output written by an earlier version (JSON records, fewer model fields) is
        # converted through its records, so that the joined file has one schema.
        return table if self.current else to_table(self.kind, records_of(table))


def finalize(parts_dir: str | Path, kind: str, out_path: str | Path,
             erased: dict[str, set[str]] | None = None) -> int:
    """Join the workers' part files into ``out_path``; returns the rows written.

    With one worker the part is the file (its order is the flow's, deterministic);
    with several, rows are sorted by event time and idempotency key so that the
    result does not depend on how work was spread over workers. Like a consumer
    of the topic, the file upserts by idempotency key: replaying into an existing
    output adds nothing twice (the earlier row stays). Rows whose key
    (``<tenant>/<investor_id>``) is in ``erased[topic]`` are deleted: a tenant's
    erasure, never another tenant's investor of the same id.
    """
    parts = sorted(Path(parts_dir).glob(f"{kind}-*.parquet"))
    out_path = Path(out_path)
    gone = (erased or {}).get(ERASABLE.get(kind, ""), set())
    if len(parts) == 1 and not out_path.exists() and not gone:
        parts[0].replace(out_path)
        return pq.ParquetFile(out_path).metadata.num_rows
    sources = [_Source(p, kind) for p in ([out_path] if out_path.exists() else []) + parts]
    keep = _surviving(sources, gone)
    if len(sources) == 1 == len(parts) and keep[0].all():
        # Nothing to delete (the sink left out the rows of investors erased before it
        # wrote them, see parquet_sink.ErasedKeys): the part is the file, as above.
        parts[0].replace(out_path)
        return sources[0].rows
    partial = out_path.with_name(f".{out_path.name}.partial")
    written = 0
    with pq.ParquetWriter(partial, schema_of(kind), compression="zstd") as writer:
        sort = len(parts) > 1 and "idempotency_key" in schema_of(kind).names
        chunks = _sorted_chunks(sources, keep) if sort else _in_order(sources, keep)
        for chunk in chunks:
            if chunk.num_rows:
                writer.write_table(chunk, row_group_size=ROW_GROUP)
                written += chunk.num_rows
    # Renamed into place only once complete: a crash leaves the earlier output whole.
    os.replace(partial, out_path)
    for p in parts:
        p.unlink()
    return written


def _surviving(sources: list[_Source], gone: set[str]) -> list[np.ndarray]:
    """Per source, which rows the joined file keeps: not erased, and the first row of
    its idempotency key over all sources in order (an earlier output first)."""
    keep = [np.ones(s.rows, dtype=bool) for s in sources]
    if gone:
        erased = pa.array(sorted(gone), pa.string())
        for mask, source in zip(keep, sources, strict=True):
            mask &= ~_erased_rows(source, erased)
    keys = [s.column("idempotency_key") for s in sources]
    if any(k is None for k in keys) or not sources:
        return keep
    total = sum(s.rows for s in sources)
    table = pa.table({"key": pa.chunked_array([c for k in keys for c in k.chunks], pa.string()),
                      "at": pa.array(np.arange(total, dtype=np.int64))})
    table = table.filter(pa.array(np.concatenate(keep)))  # an erased row upserts nothing
    first = table.group_by("key", use_threads=False).aggregate([("at", "min")])
    firsts = np.zeros(total, dtype=bool)
    firsts[first.column("at_min").to_numpy()] = True
    offset = 0
    for mask, source in zip(keep, sources, strict=True):
        mask &= firsts[offset:offset + source.rows]
        offset += source.rows
    return keep


def _erased_rows(source: _Source, erased: pa.Array) -> np.ndarray:
    """Which rows of ``source`` are of an erased key; the key columns are read in a
    call of their own so that they are freed before the idempotency keys are grouped."""
    ids = source.columns(("tenant", "investor_id"))
    if ids is None:
        return np.zeros(source.rows, dtype=bool)
    return pc.fill_null(pc.is_in(output_keys(ids), erased), False).to_numpy(zero_copy_only=False)


def _in_order(sources: list[_Source], keep: list[np.ndarray]):
    """The kept rows source after source, ``READ_ROWS`` at a time."""
    for source, mask in zip(sources, keep, strict=True):
        for index in range(len(source.starts) - 1):
            rows = mask[source.starts[index]:source.starts[index + 1]]
            if not rows.any():
                continue
            at = 0
            for table in source.batches(index):
                part, at = rows[at:at + table.num_rows], at + table.num_rows
                if part.all():
                    yield table
                elif part.any():
                    yield table.filter(pa.array(part))


def _sorted_chunks(sources: list[_Source], keep: list[np.ndarray]):
    """The kept rows ordered by (event time, idempotency key), ``ROW_GROUP`` at a time."""
    columns = ["event_time", "idempotency_key"] if "event_time" in schema_of(
        sources[0].kind).names else ["idempotency_key"]
    pieces = []
    for number, (source, mask) in enumerate(zip(sources, keep, strict=True)):
        rows = np.flatnonzero(mask)
        piece = {name: source.column(name).take(pa.array(rows)) for name in columns}
        piece["source"] = pa.array(np.full(len(rows), number, dtype=np.int32))
        piece["row"] = pa.array(rows.astype(np.int64))
        pieces.append(pa.table(piece))
    order = pa.concat_tables(pieces).sort_by([(name, "ascending") for name in columns])
    del pieces
    where = order.column("source").to_numpy()
    rows = order.column("row").to_numpy()
    del order
    # Which row group each output row comes from, and the last output chunk needing it.
    groups = [np.searchsorted(s.starts, rows, side="right") - 1 for s in sources]
    group_of = np.zeros(len(rows), dtype=np.int64)
    for number in range(len(sources)):
        chosen = where == number
        group_of[chosen] = groups[number][chosen]
    last_use: dict[tuple[int, int], int] = {}
    for chunk_start in range(0, len(rows), ROW_GROUP):
        span = slice(chunk_start, chunk_start + ROW_GROUP)
        for pair in set(zip(where[span].tolist(), group_of[span].tolist(), strict=True)):
            last_use[pair] = chunk_start
    held: dict[tuple[int, int], pa.Table] = {}
    for chunk_start in range(0, len(rows), ROW_GROUP):
        span = slice(chunk_start, chunk_start + ROW_GROUP)
        wanted: dict[tuple[int, int], list[int]] = defaultdict(list)
        pairs = list(zip(where[span].tolist(), group_of[span].tolist(), strict=True))
        for position, pair in enumerate(pairs):
            wanted[pair].append(position)
        out_rows: list[pa.Table] = []
        positions: list[int] = []
        for pair, at in wanted.items():
            number, group = pair
            if pair not in held:
                held[pair] = sources[number].row_group(group)
            start = sources[number].starts[group]
            local = rows[span][at] - start
            out_rows.append(held[pair].take(pa.array(local)))
            positions.extend(at)
            if last_use[pair] == chunk_start:
                del held[pair]
        chunk = pa.concat_tables(out_rows)
        # Back from grouped-by-input to the sorted order within the chunk.
        yield chunk.take(pa.array(np.argsort(np.asarray(positions), kind="stable")))
