"""Parquet sinks for the replay outputs (``leads.parquet``, ``dlq.parquet``, ...).

Each output file has a few flat columns for quick filtering (tenant, investor,
time, score, reason...) and a ``record`` column holding the full record, as it would
be published to Kafka, typed: a struct with the topic model's fields
(:mod:`connectors.arrow_schema`), so that SQL reaches into it
(``SELECT record.explanation.top_positive FROM 'leads.parquet'``). Read records back,
as a consumer would decode the topic's JSON, with :func:`read_records`. Every worker
writes its own part file, in row groups, so memory stays bounded;
:func:`connectors.parquet_merge.finalize` joins the parts.

A file that cannot be written (a full disk, a read-only or missing directory) is an
operator's problem, not a bug: with an ``on_error`` callback a sink reports it there,
once, and writes nothing more, instead of raising inside the dataflow (where
bytewax turns the exception into a Rust panic and a backtrace). The caller decides:
a replay stops its input and fails with one line; ``run`` exits before the epoch
that lacks these rows is committed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from functools import cache
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from esg_leads.connectors.arrow_schema import array_of, arrow_type, from_arrow
from esg_leads.operators.erasure import ERASURE_AGENT, erased_in, keeps
from esg_leads.schemas.topics import OUTPUT_TOPICS

_TS = pa.timestamp("us", tz="UTC")


class OutputError(Exception):
    """An output path cannot be written; the message is one line naming it.

    >>> import errno
    >>> str(OutputError("/data/out/leads.parquet", OSError(errno.ENOSPC, "Error writing")))
    'cannot write /data/out/leads.parquet: No space left on device'
    """

    def __init__(self, path: str | Path, error: OSError) -> None:
        self.path = Path(path).absolute()  # a log line read elsewhere: no guessing the cwd
        self.error = error
        reason = os.strerror(error.errno) if error.errno else str(error).splitlines()[0]
        super().__init__(f"cannot write {self.path}: {reason}")


#: Told where and why a write failed; the sink then drops what it is given.
OnError = Callable[[Path, OSError], None]


def ensure_writable(directory: str | Path) -> Path:
    """Create ``directory`` if needed and prove that a file can be written in it.

    Raises :class:`OutputError` naming the directory (or the first part of its path
    that is in the way) before any work is done.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OutputError(directory, error) from None
    return directory


#: Flat columns per output kind; every file also has ``record`` (the JSON record).
COLUMNS: dict[str, tuple[tuple[str, pa.DataType], ...]] = {
    "leads": (("idempotency_key", pa.string()), ("tenant", pa.string()),
              ("investor_id", pa.string()), ("event_time", _TS), ("processed_at", _TS),
              ("probability", pa.float64()), ("score", pa.int32()), ("tier", pa.string()),
              ("state", pa.string())),
    "dlq": (("idempotency_key", pa.string()), ("reason", pa.string()), ("topic", pa.string()),
            ("partition", pa.int32()), ("offset", pa.int64()), ("tenant", pa.string()),
            ("event_id", pa.string()), ("processed_at", _TS)),
    "alerts": (("idempotency_key", pa.string()), ("tenant", pa.string()), ("kind", pa.string()),
               ("detector", pa.string()), ("subject", pa.string()), ("event_time", _TS),
               ("processed_at", _TS)),
    "review": (("idempotency_key", pa.string()), ("case_id", pa.string()), ("tenant", pa.string()),
               ("investor_id", pa.string()), ("event_time", _TS), ("processed_at", _TS),
               ("score", pa.int32())),
    "handoff": (("idempotency_key", pa.string()), ("qualification_id", pa.string()),
                ("tenant", pa.string()), ("investor_id", pa.string()), ("event_time", _TS),
                ("processed_at", _TS), ("score", pa.int32()), ("tier", pa.string())),
    "shadow": (("idempotency_key", pa.string()), ("tenant", pa.string()),
               ("investor_id", pa.string()), ("event_time", _TS), ("processed_at", _TS),
               ("champion_version", pa.string()), ("challenger_version", pa.string()),
               ("champion_probability", pa.float64()), ("challenger_probability", pa.float64()),
               ("decided_by", pa.string())),
    "tombstones": (("topic", pa.string()), ("key", pa.string())),
}
#: Output kind -> the topic its records are published on (and typed by).
TOPICS = {"leads": "leads.scored", "review": "leads.review", "handoff": "crm.handoff",
          "dlq": "leads.dlq", "alerts": "ops.alerts", "shadow": "leads.shadow"}
#: Output kinds whose records are deleted by an erasure tombstone, and their topics.
ERASABLE = {kind: TOPICS[kind] for kind in ("leads", "review", "handoff", "shadow")}


@cache
def schema_of(kind: str) -> pa.Schema:
    """The flat columns of ``kind`` and ``record``: the topic model's struct (a JSON
    string for ``tombstones``, a part file of the run's own that no reader sees)."""
    topic = TOPICS.get(kind)
    record = arrow_type(OUTPUT_TOPICS[topic].model) if topic else pa.string()
    return pa.schema([*COLUMNS[kind], ("record", record)])


@cache
def _record_builder(kind: str) -> Callable[[list], pa.Array]:
    return array_of(schema_of(kind).field("record").type)


def to_table(kind: str, records: list[dict]) -> pa.Table:
    """``records`` of ``kind`` as a table of :func:`schema_of` ``kind``.

    The flat columns are fields of the record (``score`` narrowed to int32): they are
    taken from the record column once it is built, not converted from Python again.
    """
    schema = schema_of(kind)
    if kind not in TOPICS:
        stored = [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS).decode() for r in records]
        columns = {name: [r.get(name) for r in records] for name, _ in COLUMNS[kind]}
        columns["record"] = stored
        return pa.table(columns, schema=schema)
    record = _record_builder(kind)(records)  # (chunked beyond 2 GB of text)
    flat = [pc.struct_field(record, name).cast(type_) for name, type_ in COLUMNS[kind]]
    return pa.Table.from_arrays([*flat, record], schema=schema)


def records_of(table: pa.Table) -> list[dict]:
    """The ``record`` column of ``table`` as the records a topic consumer decodes.

    Reads both the typed struct and the JSON text of files written before typed
    columns (the column's type says which).
    """
    column = table.column("record")
    if pa.types.is_string(column.type):
        return [orjson.loads(text) for text in column.to_pylist()]
    back = from_arrow(column.type)
    return [back(value) for value in column.to_pylist()]


def read_records(path: str | Path, filters: list | None = None) -> list[dict]:
    """The records of one output file (e.g. ``leads.parquet``), optionally filtered on
    its flat columns (``[("investor_id", "=", "inv-1")]``, pushed down to row groups)."""
    return records_of(pq.read_table(path, columns=["record"], filters=filters))


def read_output(path: str | Path, kind: str) -> pa.Table:
    """An output file as a table of ``kind``'s current schema.

    A file written by an earlier version (the record as JSON text, or a model since
    extended with fields) is converted through its records, so that an upsert into
    an existing output directory never mixes two schemas.
    """
    table = pq.read_table(path)
    if table.schema.equals(schema_of(kind)):
        return table
    return to_table(kind, records_of(table))


#: Open audit partitions, so that a process stopping early can still close its files.
OPEN_AUDIT: list[_AuditPartition] = []


class _AuditPartition(StatefulSinkPartition[dict, int]):
    """Buffers audit rows per (tenant, date); writes each batch of them as a whole file.

    A Parquet file is readable only once its writer has closed it, and a resumed run
    replays only the epochs after the last snapshot: so the rows of an epoch are
    written — as complete files, renamed into place — before the epoch's snapshot
    returns, and never held in an open file a crash would leave unreadable.

    Within an epoch a buffer is written when it reaches ``row_group`` rows, and a
    tenant's buffers of earlier dates are written when a row of a later date than any
    of its rows since the snapshot arrives: rows come in event-time order, so a past
    day gets few more. Without that, a replay (one epoch) held every audit row of the
    run until its end, ~1.3 rows per input event (issue 16). Both rules read only the
    rows since the last snapshot, so a resumed run, which replays those rows, writes
    the same files under the same numbers as the run it replaces.
    """

    def __init__(self, directory: Path, tag: str, row_group: int, written: int,
                 retention: Callable[[Path], object] | None = None,
                 on_error: OnError | None = None) -> None:
        self._directory = directory
        self._on_error = on_error
        self._failed = False
        self._tag = tag
        self._row_group = row_group
        self._written = written  #: files written so far: numbers the next one
        self._closed = False
        self._buffers: dict[tuple[str, str], list[dict]] = {}
        #: Per tenant, the latest row date since the last snapshot (see the class doc).
        self._latest: dict[str, str] = {}
        #: Investors erased since the last snapshot, by tenant: their rows go (see _purge).
        self._erased: dict[str, set[str]] = {}
        #: The investors in each file this partition wrote, so that a purge reads only
        #: the files holding an erased one (see _purge), and how many ids that is.
        self._ids: dict[Path, pa.Array] = {}
        self._ids_held = 0
        self._retention = retention
        # A stopping `run` closes audit files from its stop thread (close_audit) while
        # the worker may still write or snapshot: one at a time, so no row is appended
        # to a buffer being written and no two files share a number.
        self._lock = threading.RLock()

    def write_batch(self, items: list[dict]) -> None:
        with self._lock:
            if self._failed:
                return
            for tenant, investor_id in erased_in(items):
                self._erased.setdefault(tenant, set()).add(investor_id)
            latest = self._latest
            for record in items:
                tenant, day = key = (record["tenant"], record["date"])
                newest = latest.get(tenant)
                if newest is None or day > newest:  # ISO dates order as strings
                    latest[tenant] = day
                    if newest is not None:
                        for older in [k for k in self._buffers if k[0] == tenant]:
                            self._flush(older)
                        if self._failed:
                            return  # reported once; the run stops reading
                buffer = self._buffers.get(key)
                if buffer is None:
                    buffer = self._buffers[key] = []
                buffer.append(record)
                if len(buffer) >= self._row_group:
                    self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        with self._lock:
            rows = self._buffers.pop(key, [])
            if not rows or self._failed:
                return
            tenant, day = key
            folder = self._directory / f"tenant={tenant}" / f"date={day}"
            name = f"part{self._tag}-{self._written:06d}.parquet"
            # Written under a dot name (which readers skip) and renamed: a crash
            # mid-write leaves no half file where readers look.
            partial = folder / f".{name}.partial"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                table = _audit_table(rows)
                pq.write_table(table, partial, compression="zstd")
                partial.replace(folder / name)
            except OSError as error:
                if self._on_error is None:
                    raise
                self._failed = True
                self._buffers.clear()
                try:
                    partial.unlink(missing_ok=True)  # no half file left behind
                except OSError:
                    pass  # the first error is the one reported
                self._on_error(folder / name, error)
                return
            self._written += 1
            self._remember(folder / name, table)

    def _remember(self, path: Path, table: pa.Table | None) -> None:
        """Note the investors in ``path`` as written (``None``: the file is gone), within
        ``INDEXED_IDS``: the files noted first are forgotten first, and read again by a
        purge, so the note of a long-running process stays bounded."""
        ids = self._ids.pop(path, None)
        if ids is not None:
            self._ids_held -= len(ids)
        if table is None:
            return
        ids = self._ids[path] = pc.unique(table.column("investor_id"))
        self._ids_held += len(ids)
        while self._ids_held > INDEXED_IDS:
            self._ids_held -= len(self._ids.pop(next(iter(self._ids))))

    def _purge(self) -> None:
        """Remove the rows of the investors erased since the last snapshot, in buffers and
        in every audit file of their tenant (rewritten under a dot name and renamed into
        place, or deleted when nothing is left). Only files naming one of them in their
        ``investor_id`` column are read whole: as this partition noted them when it wrote
        them, or read from the file (another process's, or one no longer noted); reading
        that column of every file was most of a replay's purge (issue 16). A crash midway
        leaves every file whole, and the resumed epoch brings the erasure row, and so
        this purge, again."""
        for tenant, erased in self._erased.items():
            for key, rows in self._buffers.items():
                if key[0] == tenant:
                    rows[:] = [r for r in rows if keeps(r, erased)]
            gone = pa.array(sorted(erased))
            for path in sorted((self._directory / f"tenant={tenant}").glob("date=*/part*.parquet")):
                ids = self._ids.get(path)
                if ids is None:
                    ids = pq.read_table(path, columns=["investor_id"]).column("investor_id")
                if not pc.any(pc.is_in(ids, gone)).as_py():
                    continue
                table = pq.read_table(path, schema=AUDIT_SCHEMA)
                kept = table.filter(pc.or_(pc.invert(pc.is_in(table.column("investor_id"), gone)),
                                           pc.equal(table.column("agent"), ERASURE_AGENT)))
                if kept.num_rows == 0:
                    path.unlink()
                    self._remember(path, None)
                    continue
                partial = path.with_name(f".{path.name}.partial")
                pq.write_table(kept, partial, compression="zstd")
                partial.replace(path)
                self._remember(path, kept)
        self._erased.clear()

    def snapshot(self) -> int:
        """End of an epoch: its rows go to disk before bytewax commits it."""
        with self._lock:
            self._purge()
            for key in list(self._buffers):
                self._flush(key)
            self._latest.clear()
            if self._retention is not None:
                self._retention(self._directory)
            return self._written

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._purge()
            for key in list(self._buffers):
                self._flush(key)


#: Investor ids an audit partition notes of the files it wrote (~20 MB): beyond, a
#: purge reads the ``investor_id`` column of the files noted first, as it reads any other.
INDEXED_IDS = 1_000_000


#: Audit rows (``operators.audit.audit_record``); ``tenant`` and ``date`` become the
#: hive partition directories ``tenant=<t>/date=<yyyy-mm-dd>``.
AUDIT_SCHEMA = pa.schema([
    ("audit_id", pa.string()), ("investor_id", pa.string()), ("event_time", _TS),
    ("agent", pa.string()), ("agent_version", pa.string()), ("decision", pa.string()),
    ("reason", pa.string()), ("inputs", pa.string()), ("output", pa.string()),
    ("lineage", pa.string()), ("processed_at", _TS),
])


_AUDIT_FIELDS = itemgetter(*AUDIT_SCHEMA.names)


def _audit_table(rows: list[dict]) -> pa.Table:
    """``rows`` as a table, a column at a time (a quarter cheaper than ``from_pylist``):
    each row's fields taken at once and transposed, which costs a quarter less again
    than one comprehension per column (issue 16)."""
    columns = zip(*map(_AUDIT_FIELDS, rows)) if rows else ([] for _ in AUDIT_SCHEMA)
    return pa.Table.from_arrays([pa.array(column, field.type) for column, field
                                 in zip(columns, AUDIT_SCHEMA, strict=True)], schema=AUDIT_SCHEMA)


class AuditSink(FixedPartitionedSink[dict, int]):
    """The audit trail as Parquet partitioned by tenant and date (``audit/``).

    One sink partition (``audit``) takes every row — bytewax routes them to the
    worker that owns it — so that files are written at each epoch's snapshot (see
    :class:`_AuditPartition`). Files are named ``part<tag>-<n>.parquet``: one per
    tenant and date per snapshot interval (or per ``row_group`` rows), complete
    when they appear. A replay (no tag) writes its own output directory; a
    long-running service tags each start so a restart never overwrites what an
    earlier process wrote. Items are ``(key, row)``: the flow keys them.

    ``partitions`` > 1 (a replay over several workers): partitions ``audit-0000``,
    ``audit-0001``, ... and an item's key is the number of its partition; bytewax
    gives the n-th of the sorted partitions to worker n, so the flow keys each row by
    the worker that made it and no row crosses to another process. One tenant's rows
    all go to one partition (the erasure purge rewrites only its own tenant's files);
    each partition tags its file names (``part<tag>-p<n>-...``).
    """

    def __init__(self, directory: str | Path, row_group: int = 20_000, tag: str = "",
                 retention: Callable[[Path], object] | None = None,
                 on_error: OnError | None = None, partitions: int = 1) -> None:
        self.directory = Path(directory)
        self.row_group = row_group
        self.tag = tag
        #: Sink partitions: with several, item keys are partition numbers (see list_parts).
        self.partitions = partitions
        #: Called with the directory at each snapshot (``run``: expire old partitions).
        self.retention = retention
        self.on_error = on_error

    def list_parts(self) -> list[str]:
        if self.partitions == 1:
            return ["audit"]
        return [f"audit-{n:04d}" for n in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key) if self.partitions > 1 else 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _AuditPartition:
        tag = self.tag if for_part == "audit" else f"{self.tag}-p{for_part.rsplit('-', 1)[1]}"
        partition = _AuditPartition(self.directory, tag, self.row_group, resume_state or 0,
                                    self.retention, self.on_error)
        OPEN_AUDIT.append(partition)
        return partition


def close_audit() -> None:
    """Write out and close every open audit file (a stopping process calls this)."""
    for partition in OPEN_AUDIT:
        partition.close()


#: Records a part converts to Arrow at a time. Records as dicts cost several times
#: their Arrow form (a lead: ~8 KB against ~1.5 KB), and a part held up to a row
#: group of them (20k) until it wrote one: on a run shorter than that, every record.
CONVERT_ROWS = 2_048


def output_keys(table: pa.Table) -> pa.Array | pa.ChunkedArray:
    """The message key of each row, ``<tenant>/<investor_id>`` (schemas.keys.output_key;
    null where either is): tombstones name a tenant's investor, never every tenant's."""
    return pc.binary_join_element_wise(table.column("tenant"), table.column("investor_id"), "/")


class ErasedKeys:
    """The keys (``<tenant>/<investor_id>``) erased so far in a run, by topic, shared by its Parquet sinks: the
    ``tombstones`` sink adds them, and the sinks of erasable outputs leave their rows out
    of the row groups they write from then on. Rows written earlier are deleted by
    :func:`connectors.parquet_merge.finalize`, as every erased row once was; a part that
    holds none is renamed into place instead of read and written again (issue 16: on a
    replay whose leads fit one row group, every leads row was encoded twice)."""

    def __init__(self) -> None:
        self._keys: dict[str, set[str]] = {}
        self._lock = threading.Lock()  # several workers' sinks share it in one process

    def add(self, tombstones: list[dict]) -> None:
        with self._lock:
            for tombstone in tombstones:
                self._keys.setdefault(tombstone["topic"], set()).add(tombstone["key"])

    def of(self, topic: str) -> pa.Array | None:
        """The keys erased on ``topic`` so far; ``None`` when there are none."""
        with self._lock:
            keys = sorted(self._keys.get(topic, ()))
        return pa.array(keys, pa.string()) if keys else None


class _ParquetPartition(StatelessSinkPartition[dict]):
    """Records of one kind into one Parquet file: converted to Arrow ``CONVERT_ROWS``
    at a time, written ``row_group`` rows to a row group (the same file as converting
    a row group at once: the columns are the same, only their chunks differ). With
    ``erased`` (see :class:`ErasedKeys`), a ``tombstones`` partition records the keys it
    writes there, and an erasable kind's partition leaves their rows out."""

    def __init__(self, path: Path, kind: str, row_group: int,
                 on_error: OnError | None = None, erased: ErasedKeys | None = None) -> None:
        self._path = path
        self._kind = kind
        self._row_group = row_group
        self._on_error = on_error
        self._erased = erased
        self._topic = ERASABLE.get(kind)
        self._buffer: list[dict] = []
        #: Converted records not yet written, and how many rows they hold.
        self._tables: list[pa.Table] = []
        self._converted = 0
        self._writer: pq.ParquetWriter | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, schema_of(kind), compression="zstd")
        except OSError as error:
            self._fail(error)

    def _fail(self, error: OSError) -> None:
        if self._on_error is None:
            raise error
        self._buffer, self._tables, self._converted = [], [], 0
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass  # the file is already lost; the first error is the one reported
        self._on_error(self._path, error)

    def write_batch(self, items: list[dict]) -> None:
        if self._writer is None:
            return  # failed: reported once, nothing more is written
        if self._kind == "tombstones" and self._erased is not None:
            self._erased.add(items)
        buffer = self._buffer
        for item in items:
            buffer.append(item)
            if len(buffer) >= min(CONVERT_ROWS, self._row_group - self._converted):
                self._convert()
                if self._converted >= self._row_group:
                    self._flush()
                    if self._writer is None:
                        return
                buffer = self._buffer

    def _convert(self) -> None:
        if self._buffer:
            self._tables.append(to_table(self._kind, self._buffer))
            self._converted += len(self._buffer)
            self._buffer = []

    def _flush(self) -> None:
        self._convert()
        if self._tables and self._writer is not None:
            gone = None if self._erased is None or self._topic is None else \
                self._erased.of(self._topic)
            tables = self._tables if gone is None else [_without(t, gone) for t in self._tables]
            table = pa.concat_tables(tables)
            try:
                if table.num_rows:  # (no empty row group when every row was erased)
                    self._writer.write_table(table, row_group_size=self._row_group)
            except OSError as error:
                self._fail(error)
        self._tables, self._converted = [], 0

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as error:
                self._writer = None
                self._fail(error)


def _without(table: pa.Table, keys: pa.Array) -> pa.Table:
    """``table`` without the rows of the erased ``keys`` (``<tenant>/<investor_id>``):
    the slices between them, which copy nothing (``Table.filter`` copies every nested
    value of every row kept)."""
    erased = pc.fill_null(pc.is_in(output_keys(table), keys), False)
    if not pc.any(erased).as_py():
        return table
    bounds = [-1, *np.flatnonzero(erased.to_numpy(zero_copy_only=False)).tolist(),
              table.num_rows]
    return pa.concat_tables([table.slice(start + 1, end - start - 1)
                             for start, end in zip(bounds, bounds[1:])])


class ParquetSink(DynamicSink[dict]):
    """Writes records of one output ``kind`` to ``directory/<kind>-<worker>.parquet``.

    ``on_error``: see the module docstring; without it a write error raises.
    ``erased``: one :class:`ErasedKeys` given to every sink of a run (``tombstones``
    among them), so that rows of investors erased before they are written never are.
    """

    def __init__(self, directory: str | Path, kind: str, row_group: int = 20_000,
                 on_error: OnError | None = None, erased: ErasedKeys | None = None) -> None:
        if kind not in COLUMNS:
            raise ValueError(f"unknown output kind {kind!r}")
        self.directory = Path(directory)
        self.kind = kind
        self.row_group = row_group
        self.on_error = on_error
        self.erased = erased

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ParquetPartition:
        path = self.directory / f"{self.kind}-{worker_index:03d}.parquet"
        return _ParquetPartition(path, self.kind, self.row_group, self.on_error, self.erased)


def erased_keys(parts_dir: str | Path) -> dict[str, set[str]]:
    """Tombstones written by the run: ``{topic: {keys, <tenant>/<investor_id>}}``."""
    gone: dict[str, set[str]] = {}
    for part in sorted(Path(parts_dir).glob("tombstones-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            gone.setdefault(row["topic"], set()).add(row["key"])
    return gone
