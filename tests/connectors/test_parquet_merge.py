from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.connectors import parquet_merge
from esg_leads.connectors.parquet_merge import finalize
from esg_leads.connectors.parquet_sink import ERASABLE, read_output, schema_of, to_table

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


def handoff(key: int, investor: int, second: int, tenant: str = "acme") -> dict:
    return {"schema_version": 1, "idempotency_key": f"handoff:{tenant}:inv-{investor}:q{key}",
            "qualification_id": f"q:{key}", "tenant": tenant, "investor_id": f"inv-{investor}",
            "event_time": T0 + timedelta(seconds=second), "processed_at": T0, "score": key,
            "probability": 0.5, "tier": "warm", "consent": {"email": "granted"},
            "approved_by_review": False, "lineage": []}


def whole_table_finalize(parts: list[Path], kind: str, out: Path | None,
                         gone: set[str]) -> pa.Table:
    """The join as it was before it streamed: every input read whole and concatenated."""
    if len(parts) == 1 and out is None and not gone:
        return pq.read_table(parts[0])  # the part is the file, as it stands
    tables = [read_output(out, kind)] if out is not None else []
    tables += [pq.read_table(p) for p in parts] or [schema_of(kind).empty_table()]
    table = pa.concat_tables(tables)
    if gone:
        keys = [f"{t}/{i}" for t, i in zip(table.column("tenant").to_pylist(),
                                           table.column("investor_id").to_pylist(), strict=True)]
        table = table.filter(pa.array([k not in gone for k in keys]))
    keys = table.column("idempotency_key").to_pylist()
    seen: set[str] = set()
    first = [i for i, k in enumerate(keys) if not (k in seen or seen.add(k))]
    if len(first) < len(keys):
        table = table.take(first)
    if len(parts) > 1:
        table = table.sort_by([("event_time", "ascending"), ("idempotency_key", "ascending")])
    return table


# (key, investor, second, tenant): two tenants share investor ids, as they may.
rows = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 4), st.integers(0, 30),
                          st.sampled_from(["acme", "beta"])), max_size=25)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(rows, min_size=1, max_size=3), existing=st.none() | rows,
       erased=st.sets(st.tuples(st.sampled_from(["acme", "beta"]), st.integers(0, 4)),
                      max_size=2), row_group=st.integers(1, 7))
def test_the_streaming_join_writes_what_a_whole_table_join_wrote(
        tmp_path_factory, parts, existing, erased, row_group) -> None:
    """Same rows, same order: upsert by key (the earlier output wins), erasure, and the
    sort by (event time, key) across parts, with row groups of any size (so output
    row groups draw on several input row groups, held and dropped). An erasure is of
    one tenant's investor (``<tenant>/<investor_id>``), never another tenant's."""
    tmp = tmp_path_factory.mktemp("join")
    paths = []
    for n, part in enumerate(parts):
        paths.append(tmp / f"handoff-{n:03d}.parquet")
        pq.write_table(to_table("handoff", [handoff(*r) for r in part]), paths[-1],
                       row_group_size=row_group)
    out = tmp / "handoff.parquet"
    if existing is not None:
        pq.write_table(to_table("handoff", [handoff(*r) for r in existing]), out,
                       row_group_size=row_group)
    gone = {f"{tenant}/inv-{i}" for tenant, i in erased}
    expected = whole_table_finalize(paths, "handoff", out if existing is not None else None, gone)
    original = parquet_merge.ROW_GROUP
    parquet_merge.ROW_GROUP = row_group
    try:
        written = finalize(tmp, "handoff", out, {ERASABLE["handoff"]: gone})
    finally:
        parquet_merge.ROW_GROUP = original
    assert written == expected.num_rows
    assert pq.read_table(out).to_pylist() == expected.to_pylist()
    assert not list(tmp.glob("handoff-*")) and not list(tmp.glob(".*partial"))


def test_a_join_without_parts_or_keys_still_writes_a_file(tmp_path) -> None:
    assert finalize(tmp_path, "handoff", tmp_path / "handoff.parquet") == 0
    assert pq.read_schema(tmp_path / "handoff.parquet").equals(schema_of("handoff"))
    for n, keys in enumerate((["a", "b"], ["a"])):  # tombstones: no key, kept as written
        pq.write_table(to_table("tombstones", [{"topic": "t", "key": k} for k in keys]),
                       tmp_path / f"tombstones-{n:03d}.parquet")
    assert finalize(tmp_path, "tombstones", tmp_path / "tombstones.parquet") == 3


MEASURE = """
import sys, pyarrow as pa, pyarrow.parquet as pq
from pathlib import Path
from esg_leads.connectors import parquet_merge
from esg_leads.connectors.parquet_sink import schema_of
parts = Path(sys.argv[1])
parquet_merge.ROW_GROUP = 1_000  # as the parts': the output is 40 row groups too
parquet_merge.finalize(parts, "handoff", parts / "handoff.parquet", {"crm.handoff": {"acme/inv-3"}})
print(pa.default_memory_pool().max_memory())
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_joining_holds_a_few_row_groups_not_the_whole_output(tmp_path, workers) -> None:
    """Issue 16: the join peaked at the size of the whole output (~90 KB per investor,
    3.2 GB at 32k investors). Arrow's own peak allocation, in a fresh process, while
    joining 40 row groups of 1,000 rows is a small share of the output's size; with two
    parts interleaved in time, each output row group draws on both."""
    per_part = 40 // workers
    for w in range(workers):
        with pq.ParquetWriter(tmp_path / f"handoff-{w:03d}.parquet", schema_of("handoff")) as out:
            for g in range(per_part):
                out.write_table(to_table("handoff", [
                    handoff(i, i % 50, (g * 1000 + i) * workers + w)
                    | {"lineage": [{"event_id": f"e{i}-{k}" * 4, "topic": "investor.events",
                                    "partition": 0, "offset": k} for k in range(8)]}
                    for i in range(g * 1000, g * 1000 + 1000)]))
    whole = sum(pq.read_table(p).nbytes for p in tmp_path.glob("handoff-*.parquet"))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(MEASURE), str(tmp_path)],
                            env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            check=True)
    peak = int(result.stdout)
    assert peak < whole / 4, f"joining {whole:,} bytes of rows peaked at {peak:,} bytes"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tenants_erasure_leaves_another_tenants_investor_of_the_same_id(
        tmp_path: Path, workers: int) -> None:
    """Stop 29's review: finalize and the sinks deleted erased rows by investor id
    alone, so tenant A's erasure of ``inv-1`` deleted tenant B's lead, case and handoff
    of its own ``inv-1``. The lifecycle operators' outputs go through a replay's sinks
    (rows on disk before the erasure: finalize deletes them; rows after it: the sinks
    leave them out), and only B's rows of ``inv-1`` are left."""
    from esg_leads.connectors.parquet_sink import ErasedKeys, ParquetSink, erased_keys
    from tests.two_tenants import EXPECTED, TOPICS, outputs

    before, erasure = outputs()
    erased = ErasedKeys()
    sinks = {kind: [ParquetSink(tmp_path, kind, row_group=1, erased=erased).build(kind, w, workers)
                    for w in range(workers)] for kind in (*TOPICS, "tombstones")}

    def write(emitted: list) -> None:
        for n, e in enumerate(emitted):
            kind = "tombstones" if e.kind == "tombstone" else e.kind
            if kind in sinks:
                sinks[kind][n % workers].write_batch(
                    # (a tombstone's record as flows/pipeline.py makes it)
                    [{"topic": e.topic, "key": e.key} if e.kind == "tombstone" else e.record])

    write(before)
    write(erasure)
    write([e for e in before if e.kind in TOPICS])  # re-emitted after the erasure (a resume)
    for parts in sinks.values():
        for part in parts:
            part.close()
    gone = erased_keys(tmp_path)
    left = set()
    for kind, topic in TOPICS.items():
        finalize(tmp_path, kind, tmp_path / f"{kind}.parquet", gone)
        left |= {(topic, r["tenant"], r["investor_id"])
                 for r in pq.read_table(tmp_path / f"{kind}.parquet").to_pylist()}
    assert left == EXPECTED
