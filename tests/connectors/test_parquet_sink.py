"""The audit sink: complete files at every snapshot, nothing half-written where readers look."""

from __future__ import annotations

import errno
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors import parquet_merge, parquet_sink
from esg_leads.connectors.parquet_merge import finalize
from esg_leads.connectors.parquet_sink import (
    AuditSink,
    ErasedKeys,
    OutputError,
    ParquetSink,
    ensure_writable,
    erased_keys,
)
from esg_leads.operators.audit import audit_record

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


def rows(tenant: str, n: int, start: int = 0) -> list[dict]:
    return [audit_record(tenant, f"inv-{i}", T0, T0, "scoring", "scoring/1", "warm", "top positive: x",
                         {"prior_weight": 0.2}, {"score": 40}, []) for i in range(start, start + n)]


def test_a_snapshot_leaves_readable_files_without_close(tmp_path: Path) -> None:
    part = AuditSink(tmp_path, tag="-t").build_part("audit_out", "audit", None)
    part.write_batch(rows("acme", 3) + rows("beta", 2))
    assert part.snapshot() == 2  # one file per tenant and date
    part.write_batch(rows("acme", 4, start=3))  # buffered when the process dies: no close()
    table = pq.read_table(tmp_path)
    assert sorted(table.column("investor_id").to_pylist()) == sorted(
        [f"inv-{i}" for i in range(3)] + ["inv-0", "inv-1"])
    assert sorted(p.name for p in tmp_path.rglob("*.parquet")) == ["part-t-000000.parquet",
                                                                   "part-t-000001.parquet"]


def test_resume_numbers_files_after_the_snapshot_and_close_writes_the_rest(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path, row_group=2)
    part = sink.build_part("audit_out", "audit", 5)  # resumed: five files written before
    part.write_batch(rows("acme", 3))  # the row-group bound writes two rows at once
    part.close()
    names = sorted(p.name for p in tmp_path.rglob("*.parquet"))
    assert names == ["part-000005.parquet", "part-000006.parquet"]
    assert pq.read_table(tmp_path).num_rows == 3
    assert not list(tmp_path.rglob(".*"))  # no partial files left behind


def erasure_row(tenant: str, investor_id: str) -> dict:
    return audit_record(tenant, investor_id, T0, T0, "erasure", "lifecycle/1", "erased",
                        "right to erasure", {}, {}, [])


def test_an_erasure_rewrites_the_files_written_before_it(tmp_path: Path) -> None:
    """Finding 8: audit rows written before an erasure are removed at its snapshot, from
    every earlier file of the tenant (also other processes' tags), but no other tenant's."""
    AuditSink(tmp_path, tag="-old").build_part("audit_out", "audit", None).close()
    old = AuditSink(tmp_path, tag="-old").build_part("audit_out", "audit", None)
    old.write_batch(rows("acme", 3) + rows("beta", 3))
    old.close()
    part = AuditSink(tmp_path, row_group=2, tag="-new").build_part("audit_out", "audit", None)
    part.write_batch(rows("acme", 3))  # a second file of acme, on disk at the row-group bound
    part.snapshot()
    only_inv_1 = tmp_path / "tenant=acme" / "date=2026-03-02" / "part-new-000099.parquet"
    pq.write_table(pq.read_table(next((tmp_path / "tenant=acme").rglob("part-new-*.parquet")),
                                 columns=None).slice(1, 1), only_inv_1)
    part.write_batch([*rows("acme", 1, start=1), erasure_row("acme", "inv-1")])
    part.snapshot()
    acme = pq.read_table(tmp_path / "tenant=acme").to_pylist()
    assert [r["agent"] for r in acme if r["investor_id"] == "inv-1"] == ["erasure"]
    assert sorted(r["investor_id"] for r in acme if r["agent"] == "scoring") == [
        "inv-0", "inv-0", "inv-2", "inv-2"]
    assert not only_inv_1.exists()  # nothing left in it: deleted
    beta = pq.read_table(tmp_path / "tenant=beta").column("investor_id").to_pylist()
    assert sorted(beta) == ["inv-0", "inv-1", "inv-2"]
    assert not list(tmp_path.rglob(".*"))


def on_day(day: int, *investors: str) -> list[dict]:
    at = T0 + timedelta(days=day)
    return [audit_record("acme", i, at, at, "scoring", "scoring/1", "warm", "top positive: x",
                         {}, {}, []) for i in investors]


@pytest.mark.parametrize("noted", [1_000_000, 3])
def test_a_purge_reads_only_the_files_naming_an_erased_investor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noted: int) -> None:
    """Issue 16: the partition notes the investors of each file it writes, so that an
    erasure reads only the files holding the erased investor, and the column of files
    it did not write (another process's) or no longer notes (beyond ``INDEXED_IDS``)."""
    monkeypatch.setattr(parquet_sink, "INDEXED_IDS", noted)
    part = AuditSink(tmp_path, tag="-t").build_part("audit_out", "audit", None)
    for day, investors in enumerate([("inv-0", "inv-1"), ("inv-2",), ("inv-3", "inv-4")]):
        part.write_batch(on_day(day, *investors))  # a later day writes the earlier one
    part.snapshot()
    foreign = tmp_path / "tenant=acme" / "date=2026-03-04" / "part-other-000000.parquet"
    pq.write_table(pq.read_table(next(foreign.parent.glob("part-t-*.parquet"))), foreign)
    read: list[tuple[str, object]] = []
    real_read = pq.read_table

    def counted(path, columns=None, **kwargs):
        read.append((Path(path).name, columns))
        return real_read(path, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", counted)
    part.write_batch([erasure_row("acme", "inv-3")])  # (on T0's day: a row of day 0)
    part.snapshot()
    whole = sorted(name for name, columns in read if columns is None)
    assert whole == ["part-other-000000.parquet", "part-t-000002.parquet"]
    columns_read = sorted(name for name, columns in read if columns == ["investor_id"])
    # With room for three ids, the first file written (inv-0, inv-1) is no longer noted.
    assert columns_read == ["part-other-000000.parquet"] + (
        [] if noted > 3 else ["part-t-000000.parquet"])
    monkeypatch.undo()
    acme = pq.read_table(tmp_path / "tenant=acme").to_pylist()
    assert sorted((r["investor_id"], r["agent"]) for r in acme) == [
        ("inv-0", "scoring"), ("inv-1", "scoring"), ("inv-2", "scoring"),
        ("inv-3", "erasure"), ("inv-4", "scoring"), ("inv-4", "scoring")]


def test_rows_of_investors_erased_before_they_are_written_never_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16: the sinks of a run share the keys its tombstones erase; an erasable
    output leaves their rows out of what it writes from then on, so that a part without
    any is renamed into place by finalize, not read and encoded a second time. Rows
    written before the erasure are deleted by finalize, as they always were."""
    from tests.connectors.test_parquet_merge import handoff

    erased = ErasedKeys()
    handoffs = ParquetSink(tmp_path, "handoff", row_group=2, erased=erased).build("h", 0, 1)
    tombstones = ParquetSink(tmp_path, "tombstones", erased=erased).build("t", 0, 1)
    handoffs.write_batch([handoff(1, 1, 1), handoff(2, 2, 2)])  # a row group: written
    tombstones.write_batch([{"topic": "crm.handoff", "key": "acme/inv-1"},
                            {"topic": "crm.handoff", "key": "beta/inv-2"},  # another tenant's
                            {"topic": "leads.scored", "key": "acme/inv-3"}])  # another topic's
    handoffs.write_batch([handoff(3, 1, 3), handoff(4, 3, 4), handoff(5, 4, 5)])
    handoffs.close()
    tombstones.close()
    part = tmp_path / "handoff-000.parquet"
    assert pq.read_table(part).column("investor_id").to_pylist() == [
        "inv-1", "inv-2", "inv-3", "inv-4"]  # the first inv-1 row was on disk already
    out = tmp_path / "handoff.parquet"
    assert finalize(tmp_path, "handoff", out, erased_keys(tmp_path)) == 3
    assert pq.read_table(out).column("investor_id").to_pylist() == ["inv-2", "inv-3", "inv-4"]

    # Erased before any of their rows was written: the part is the file.
    (tmp_path / "again").mkdir()
    handoffs = ParquetSink(tmp_path / "again", "handoff", erased=erased).build("h", 0, 1)
    handoffs.write_batch([handoff(6, 1, 6), handoff(7, 5, 7)])
    handoffs.close()
    monkeypatch.setattr(parquet_merge.pq, "ParquetWriter", None)  # finalize writes nothing
    out = tmp_path / "again" / "handoff.parquet"
    assert finalize(tmp_path / "again", "handoff", out, erased_keys(tmp_path)) == 1
    assert pq.read_table(out).column("investor_id").to_pylist() == ["inv-5"]


@given(ids=st.lists(st.tuples(st.sampled_from(["acme", "beta"]),
                              st.sampled_from(["inv-0", "inv-1", "inv-2", None])), max_size=12),
       gone=st.sets(st.sampled_from(["acme/inv-0", "acme/inv-1", "beta/inv-1", "acme/inv-3"]),
                    min_size=1))
def test_leaving_out_erased_rows_keeps_every_other_row_in_order(ids: list, gone: set) -> None:
    """The slices ``_without`` keeps are the rows finalize keeps (a row without an
    investor stays, and another tenant's investor of an erased id), in their order."""
    table = pa.table({"tenant": pa.array([t for t, _ in ids], pa.string()),
                      "investor_id": pa.array([i for _, i in ids], pa.string()),
                      "n": list(range(len(ids)))})
    kept = parquet_sink._without(table, pa.array(sorted(gone)))
    assert kept.schema == table.schema
    assert kept.column("n").to_pylist() == [n for n, (t, i) in enumerate(ids)
                                            if f"{t}/{i}" not in gone]


def test_retention_runs_at_each_snapshot(tmp_path: Path) -> None:
    seen: list[Path] = []
    part = AuditSink(tmp_path, retention=seen.append).build_part("audit_out", "audit", None)
    part.write_batch(rows("acme", 1))
    part.snapshot()
    assert seen == [tmp_path]


# ------------------------------------------------------- write errors (issue 14, faults)


def enospc(*args, **kwargs) -> None:  # noqa: ANN002, ANN003 - stands in for any writer call
    raise OSError(errno.ENOSPC, "Error writing bytes to file")


def test_an_unwritable_output_is_reported_once_and_never_raised(tmp_path: Path) -> None:
    """Raising inside bytewax is a Rust panic and a backtrace: with ``on_error`` the sink
    reports the path and the error once, then drops what it is given."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    errors: list[tuple[Path, OSError]] = []
    part = ParquetSink(blocker / "parts", "alerts",
                       on_error=lambda p, e: errors.append((p, e))).build("out", 0, 1)
    part.write_batch([{"idempotency_key": "k"}])
    part.close()
    assert [(p, e.errno) for p, e in errors] == [(blocker / "parts" / "alerts-000.parquet",
                                                  errno.ENOTDIR)]
    with pytest.raises(NotADirectoryError):  # without on_error: raised, as before
        ParquetSink(blocker / "parts", "alerts").build("out", 0, 1)


def test_a_full_disk_mid_run_is_reported_once(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[tuple[Path, OSError]] = []
    part = ParquetSink(tmp_path, "tombstones", row_group=1,
                       on_error=lambda p, e: errors.append((p, e))).build("out", 0, 1)
    part.write_batch([{"topic": "t", "key": "a"}])
    monkeypatch.setattr(pq.ParquetWriter, "write_table", enospc)
    part.write_batch([{"topic": "t", "key": "b"}])
    part.write_batch([{"topic": "t", "key": "c"}])
    part.close()
    assert [(p.name, e.errno) for p, e in errors] == [("tombstones-000.parquet", errno.ENOSPC)]


def test_a_full_disk_under_the_audit_trail_is_reported_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import esg_leads.connectors.parquet_sink as parquet_sink

    errors: list[tuple[Path, OSError]] = []
    part = AuditSink(tmp_path, on_error=lambda p, e: errors.append((p, e))).build_part(
        "audit_out", "audit", None)
    part.write_batch(rows("acme", 2))
    monkeypatch.setattr(parquet_sink.pq, "write_table", enospc)
    part.snapshot()
    part.write_batch(rows("acme", 2))
    part.close()
    assert len(errors) == 1 and errors[0][1].errno == errno.ENOSPC
    assert "tenant=acme" in str(errors[0][0])
    assert not list(tmp_path.rglob("*.partial"))
    plain = AuditSink(tmp_path).build_part("audit_out", "audit", None)
    plain.write_batch(rows("acme", 1))
    with pytest.raises(OSError):  # without on_error: raised, so no epoch commits without it
        plain.snapshot()


def test_ensure_writable_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*/file/out: Not a directory"):
        ensure_writable(tmp_path / "file" / "out")
    assert ensure_writable(tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe is gone
