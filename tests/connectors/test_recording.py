"""Tests for connectors/recording/ (the Parquet recording format)."""

from __future__ import annotations

import gc
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esg_leads.connectors.recording import (
    SCHEMA,
    RecordedMessage,
    RecordingReader,
    RecordingWriter,
    read_messages,
    write_messages,
)
from esg_leads.connectors.recording import format as recording_format
from esg_leads.connectors.recording import reader as recording_reader

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_messages(n: int, *, seed: int = 0, ts_range: int = 50) -> list[RecordedMessage]:
    """Messages with many sort-key ties (few timestamps, topics, partitions)."""
    rng = random.Random(seed)
    topics = ["leads", "esg.scores", "investors", "ä-topic"]
    out = []
    for i in range(n):
        headers: tuple[tuple[str, bytes | None], ...] = ()
        r = rng.random()
        if r < 0.2:
            headers = (("trace", f"{i}".encode()), ("schema", b"v1"))
        elif r < 0.3:
            headers = (("only", None),)
        elif r < 0.35:
            headers = (("a", b""), ("b", b"x"), ("a", b"dup-name"))
        out.append(
            RecordedMessage(
                topic=rng.choice(topics),
                partition=rng.randrange(3),
                offset=rng.randrange(40),
                timestamp_ms=1_700_000_000_000 + rng.randrange(ts_range),
                key=rng.choice([None, b"", f"k{i % 7}".encode()]),
                value=rng.choice([None, b"", f'{{"i": {i}}}'.encode()]),
                headers=headers,
            )
        )
    return out


def file_hashes(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
    }


def sort_expected(msgs: list[RecordedMessage]) -> list[RecordedMessage]:
    return sorted(msgs, key=RecordedMessage.sort_key)


# --------------------------------------------------------------------------- round trip


def test_round_trip_preserves_all_fields(tmp_path: Path) -> None:
    msgs = [
        RecordedMessage("t", 0, 0, 1_000, None, None),
        RecordedMessage("t", 0, 1, 1_001, b"", b""),
        RecordedMessage("t", 2**31 - 1, 2**63 - 1, 1_002, b"\x00\xff", b"\x00" * 1000),
        RecordedMessage("t", 0, 2, -5_000, b"k", b"v", (("h", None),)),
        RecordedMessage("ünïcode", 1, 3, 1_003, b"k", b"v", (("a", b""), ("a", b"2"))),
        RecordedMessage("t", 0, 4, 1_004, b"k", None, (("x", b"1"), ("y", None), ("z", b"3"))),
    ]
    assert write_messages(tmp_path, msgs) == len(msgs)
    got = list(read_messages(tmp_path))
    assert got == sort_expected(msgs)
    assert all(type(m) is RecordedMessage for m in got)
    assert all(isinstance(m.headers, tuple) for m in got)
    assert all(isinstance(h, tuple) for m in got for h in m.headers)
    # Values survive exactly, including None vs b"".
    by_offset = {m.offset: m for m in got}
    assert by_offset[0].key is None and by_offset[0].value is None
    assert by_offset[1].key == b"" and by_offset[1].value == b""
    assert by_offset[2].headers == (("h", None),)
    assert by_offset[3].topic == "ünïcode"
    assert hash(got[0]) == hash(sort_expected(msgs)[0])


def test_segment_schema_and_per_segment_sort(tmp_path: Path) -> None:
    msgs = make_messages(300, seed=3)
    write_messages(tmp_path, msgs, segment_rows=70, row_group_rows=20)
    segments = sorted(tmp_path.glob("segment-*.parquet"))
    assert [p.name for p in segments] == [f"segment-{i:06d}.parquet" for i in range(5)]
    for path in segments:
        schema = pq.read_schema(path)
        assert schema.equals(SCHEMA, check_metadata=False)
        assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
        assert not schema.field("headers").nullable and schema.field("key").nullable
        md = pq.ParquetFile(path).metadata
        assert md.row_group(0).num_rows <= 20
        table = pq.read_table(path)
        keys = list(
            zip(
                table.column("timestamp").cast(pa.int64()).to_pylist(),
                table.column("topic").to_pylist(),
                table.column("partition").to_pylist(),
                table.column("offset").to_pylist(),
                strict=True,
            )
        )
        assert keys == sorted(keys)


def test_headers_decoding_variants(tmp_path: Path) -> None:
    """Batches with no headers, uniform header counts, and mixed counts."""
    base = 1_000
    no_headers = [RecordedMessage("t", 0, i, base + i, None, b"v") for i in range(10)]
    uniform_all = [
        RecordedMessage("t", 0, i, base + i, None, b"v", (("a", bytes([i])), ("b", None)))
        for i in range(10, 20)
    ]
    mixed = [
        RecordedMessage("t", 0, i, base + i, None, b"v", (("h", b"1"),) * (i % 4))
        for i in range(20, 30)
    ]
    msgs = no_headers + uniform_all + mixed
    write_messages(tmp_path, msgs)
    assert list(RecordingReader(tmp_path, batch_rows=10)) == msgs


# --------------------------------------------------------------------------- merge order


@pytest.mark.parametrize("prefetch_limit", [64, 0], ids=["prefetch", "synchronous"])
def test_merge_order_across_many_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefetch_limit: int
) -> None:
    monkeypatch.setattr(recording_reader, "_MAX_PREFETCH_SEGMENTS", prefetch_limit)
    msgs = make_messages(3_000, seed=1)
    random.Random(2).shuffle(msgs)
    write_messages(tmp_path, msgs, segment_rows=97, row_group_rows=13)
    reader = RecordingReader(tmp_path, batch_rows=17)
    assert reader.segment_count == 31
    got = list(reader)
    # sorted() is stable: exact duplicates of a sort key keep write order.
    assert got == sort_expected(msgs)
    assert [b for batch in reader.iter_batches() for b in batch] == got


def test_ties_broken_by_topic_partition_offset(tmp_path: Path) -> None:
    t = 5_000
    msgs = [
        RecordedMessage("b", 0, 0, t, None, b"1"),
        RecordedMessage("a", 1, 0, t, None, b"2"),
        RecordedMessage("a", 0, 9, t, None, b"3"),
        RecordedMessage("a", 0, 2, t, None, b"4"),
        RecordedMessage("a", 0, 2, t - 1, None, b"5"),
        RecordedMessage("a", 0, 2, t, None, b"6"),  # full-key duplicate of "4"
    ]
    # One message per segment, so every tie is resolved by the merge.
    write_messages(tmp_path, msgs, segment_rows=1)
    got = [m.value for m in RecordingReader(tmp_path, batch_rows=2)]
    assert got == [b"5", b"4", b"6", b"3", b"2", b"1"]


def test_interleaved_and_disjoint_segments(tmp_path: Path) -> None:
    """Time-ordered input (disjoint segments) and fully interleaved segments."""
    ordered = [
        RecordedMessage("t", i % 3, i, 10 * i + (i % 5), None, str(i).encode())
        for i in range(2_000)
    ]
    write_messages(tmp_path / "ordered", ordered, segment_rows=300)
    assert list(RecordingReader(tmp_path / "ordered", batch_rows=64)) == sort_expected(ordered)

    # Each segment holds every 7th timestamp: maximal interleaving.
    interleaved = [
        RecordedMessage("t", 0, i, (i % 7) * 1_000 + i // 7, None, None) for i in range(2_100)
    ]
    write_messages(tmp_path / "inter", interleaved, segment_rows=300)
    got = list(RecordingReader(tmp_path / "inter", batch_rows=50))
    assert got == sort_expected(interleaved)


message_strategy = st.builds(
    RecordedMessage,
    topic=st.sampled_from(["a", "b", "c.d"]),
    partition=st.integers(0, 2),
    offset=st.integers(0, 5),
    timestamp_ms=st.integers(-3, 3) | st.integers(-(2**40), 2**40),
    key=st.none() | st.binary(max_size=4),
    value=st.none() | st.binary(max_size=8),
    headers=st.lists(
        st.tuples(st.sampled_from(["h", "x-trace", ""]), st.none() | st.binary(max_size=3)),
        max_size=3,
    ).map(tuple),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    msgs=st.lists(message_strategy, max_size=60),
    segment_rows=st.integers(1, 25),
    batch_rows=st.integers(1, 12),
    data=st.data(),
)
def test_property_replay_equals_stable_sort(
    msgs: list[RecordedMessage], segment_rows: int, batch_rows: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_messages(tmp, msgs, segment_rows=segment_rows, row_group_rows=7)
        expected = sort_expected(msgs)
        reader = RecordingReader(tmp, batch_rows=batch_rows)
        assert reader.count() == len(msgs)
        assert list(reader) == expected
        batches = list(reader.iter_batches())
        assert all(len(b) == batch_rows for b in batches[:-1])
        assert all(0 < len(b) <= batch_rows for b in batches)
        start = data.draw(st.integers(0, len(msgs)), label="start_at")
        resumed = RecordingReader(tmp, batch_rows=batch_rows, start_at=start)
        assert list(resumed) == expected[start:]


# --------------------------------------------------------------------------- determinism


def test_writes_are_byte_identical(tmp_path: Path) -> None:
    msgs = make_messages(2_000, seed=5)
    write_messages(tmp_path / "a", msgs, segment_rows=600)
    time.sleep(1.1)  # a wall-clock timestamp in the files would now differ
    with RecordingWriter(tmp_path / "b", segment_rows=600) as w:
        # Different call pattern, same messages in the same order.
        for m in msgs[:333]:
            w.write(m)
        w.write_many(iter(msgs[333:1500]))
        w.write_many(msgs[1500:])
    ha, hb = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert len([n for n in ha if n.startswith("segment-")]) == 4
    assert ha == hb


_SUBPROCESS_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from tests.connectors.test_recording import make_messages
    from esg_leads.connectors.recording import write_messages
    write_messages(sys.argv[1], make_messages(1_500, seed=9), segment_rows=400)
    """
)


def test_writes_are_byte_identical_across_processes(tmp_path: Path) -> None:
    write_messages(tmp_path / "here", make_messages(1_500, seed=9), segment_rows=400)
    subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_WRITER, str(tmp_path / "there"), str(REPO_ROOT)],
        check=True,
        env={"PYTHONHASHSEED": "12345"},  # different str hashing than this process
    )
    assert file_hashes(tmp_path / "here") == file_hashes(tmp_path / "there")


def test_different_input_gives_different_bytes(tmp_path: Path) -> None:
    """Guards the determinism test against comparing e.g. empty directories."""
    msgs = make_messages(200, seed=5)
    write_messages(tmp_path / "a", msgs)
    write_messages(tmp_path / "b", msgs[:-1])
    assert file_hashes(tmp_path / "a") != file_hashes(tmp_path / "b")


# --------------------------------------------------------------------------- resume / count


@pytest.mark.parametrize("prefetch_limit", [64, 0], ids=["prefetch", "synchronous"])
@pytest.mark.parametrize("segment_rows", [10_000, 64])
def test_start_at_resumes_after_n_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segment_rows: int, prefetch_limit: int
) -> None:
    monkeypatch.setattr(recording_reader, "_MAX_PREFETCH_SEGMENTS", prefetch_limit)
    msgs = make_messages(1_000, seed=11)
    random.Random(4).shuffle(msgs)
    write_messages(tmp_path, msgs, segment_rows=segment_rows, row_group_rows=50)
    full = list(RecordingReader(tmp_path))
    for n in [0, 1, 49, 50, 51, 333, 640, 999, 1_000]:
        reader = RecordingReader(tmp_path, batch_rows=32, start_at=n)
        assert list(reader) == full[n:], n
        assert reader.count() == 1_000  # total, independent of start_at
        sizes = [len(b) for b in reader.iter_batches()]
        assert sum(sizes) == 1_000 - n
    with pytest.raises(ValueError, match="exceeds"):
        RecordingReader(tmp_path, start_at=1_001)
    with pytest.raises(ValueError):
        RecordingReader(tmp_path, start_at=-1)


def test_resume_matches_interrupted_consumer(tmp_path: Path) -> None:
    """A consumer that stops after k messages and resumes sees every message once."""
    msgs = make_messages(800, seed=12)
    write_messages(tmp_path, msgs, segment_rows=90)
    seen: list[RecordedMessage] = []
    emitted = 0
    for stop_after in (123, 250, 1_000):
        for m in RecordingReader(tmp_path, batch_rows=40, start_at=emitted):
            seen.append(m)
            emitted += 1
            if emitted == stop_after:
                break
    assert seen == sort_expected(msgs)


def test_count_reads_only_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_messages(tmp_path, make_messages(500), segment_rows=120)
    reader = RecordingReader(tmp_path)

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("count() must not scan the data")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", no_scan)
    monkeypatch.setattr(pq, "read_table", no_scan)
    assert reader.count() == 500
    assert reader.segment_count == 5


def test_manifest_and_topics(tmp_path: Path) -> None:
    msgs = make_messages(700, seed=6)
    write_messages(tmp_path, msgs, segment_rows=300)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    counts: dict[str, int] = {}
    for m in msgs:
        counts[m.topic] = counts.get(m.topic, 0) + 1
    assert manifest["format_version"] == 1
    assert manifest["row_count"] == 700
    assert manifest["segment_count"] == 3
    assert [s["row_count"] for s in manifest["segments"]] == [300, 300, 100]
    assert manifest["topics"] == counts
    assert manifest["min_timestamp_ms"] == min(m.timestamp_ms for m in msgs)
    assert manifest["max_timestamp_ms"] == max(m.timestamp_ms for m in msgs)
    reader = RecordingReader(tmp_path)
    assert reader.topics() == sorted(counts)
    assert reader.manifest == manifest
    (tmp_path / "manifest.json").unlink()
    assert reader.manifest is None
    assert reader.topics() == sorted(counts)  # by scanning the segments
    assert list(reader) == sort_expected(msgs)


def test_empty_recording(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path):
        pass
    reader = RecordingReader(tmp_path)
    assert reader.count() == 0
    assert list(reader) == []
    assert list(reader.iter_batches()) == []
    assert reader.topics() == []
    assert reader.manifest is not None and reader.manifest["row_count"] == 0


# --------------------------------------------------------------------------- writer guards


def test_refuses_directory_with_existing_recording(tmp_path: Path) -> None:
    old = make_messages(50, seed=1)
    write_messages(tmp_path, old, segment_rows=10)
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        RecordingWriter(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(FileExistsError):
        RecordingWriter(tmp_path)  # segments alone are enough to refuse
    new = make_messages(5, seed=2)
    write_messages(tmp_path, new, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "notes.txt",
        "segment-000000.parquet",
    ]
    assert list(read_messages(tmp_path)) == sort_expected(new)


def test_writer_into_unrelated_nonempty_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("x")
    write_messages(tmp_path, make_messages(3))
    assert RecordingReader(tmp_path).count() == 3


def test_exception_in_with_block_discards_buffer_and_manifest(tmp_path: Path) -> None:
    msgs = make_messages(25)
    with pytest.raises(RuntimeError), RecordingWriter(tmp_path, segment_rows=10) as w:
        w.write_many(msgs)
        raise RuntimeError("producer failed")
    assert not (tmp_path / "manifest.json").exists()
    assert RecordingReader(tmp_path).count() == 20  # the two full segments
    with pytest.raises(ValueError, match="closed"):
        w.write(msgs[0])


def test_rejects_null_in_required_columns(tmp_path: Path) -> None:
    bad = RecordedMessage(None, 0, 0, 0, None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topic"), RecordingWriter(tmp_path) as w:
        w.write(bad)
    headers = ((None, b"x"),)
    bad_header = RecordedMessage("t", 0, 0, 0, None, None, headers)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header"):
        write_messages(tmp_path / "h", [bad_header])


def test_reader_rejects_foreign_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "segment-000000.parquet")
    with pytest.raises(ValueError, match="not a recording segment"):
        RecordingReader(tmp_path)
    with pytest.raises(FileNotFoundError):
        RecordingReader(tmp_path / "missing")


# --------------------------------------------------------------------------- bounded memory


def test_iter_batches_yields_bounded_lists(tmp_path: Path) -> None:
    msgs = make_messages(1_000, seed=8)
    random.Random(0).shuffle(msgs)
    write_messages(tmp_path, msgs, segment_rows=150)
    batches = list(RecordingReader(tmp_path, batch_rows=64).iter_batches())
    assert [len(b) for b in batches] == [64] * 15 + [40]


def test_reader_streams_instead_of_loading_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consuming one output batch decodes only a few Arrow batches per segment."""
    msgs = make_messages(4_000, seed=13, ts_range=10_000)
    random.Random(1).shuffle(msgs)
    write_messages(tmp_path, msgs, segment_rows=1_000, row_group_rows=500)
    decoded: list[int] = []
    requested_sizes: list[int] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        requested_sizes.append(kwargs["batch_size"])  # type: ignore[arg-type]
        for batch in original(self, *args, **kwargs):  # type: ignore[arg-type]
            decoded.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    reader = RecordingReader(tmp_path, batch_rows=50)
    it = reader.iter_batches()
    first = next(it)
    time.sleep(0.2)  # let prefetch threads run as far ahead as they can
    assert len(first) == 50
    assert requested_sizes == [50] * 4
    assert max(decoded) <= 50
    # 4 segments x (current + one prefetched) batches, far below 4,000 rows.
    assert sum(decoded) <= 4 * 2 * 50
    it.close()


def test_python_memory_stays_bounded_while_replaying(tmp_path: Path) -> None:
    """Replaying ~60 MB of values holds only a few batches of Python objects."""
    n, size = 30_000, 2_000
    msgs = (
        RecordedMessage("t", i % 3, i, i, None, (b"%08d" % i) * (size // 8)) for i in range(n)
    )
    write_messages(tmp_path, msgs, segment_rows=7_500)  # 4 segments, values compress well
    reader = RecordingReader(tmp_path, batch_rows=500)
    gc.collect()
    tracemalloc.start()
    try:
        count = 0
        for m in reader:
            count += 1
            assert m.value is not None and len(m.value) == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    total = n * size
    # (4 segments + 1 output) x 500 rows x 2 KB is ~5 MB; everything would be 60 MB.
    assert peak < 15 * 2**20, f"peak {peak / 2**20:.1f} MiB of Python allocations"
    assert peak < total / 4


def test_abandoned_iteration_stops_prefetch_threads(tmp_path: Path) -> None:
    write_messages(tmp_path, make_messages(2_000), segment_rows=300)
    before = threading.active_count()
    it = iter(RecordingReader(tmp_path, batch_rows=20))
    for _ in range(10):
        next(it)
    assert threading.active_count() > before
    it.close()  # what garbage collection of the generator also does
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_fast_construction_matches_the_constructor() -> None:
    built = recording_format._build_messages(
        (["t"], [1], [2], [3], [b"k"], [None], [(("h", b"v"),)])
    )[0]
    normal = RecordedMessage("t", 1, 2, 3, b"k", None, (("h", b"v"),))
    assert built == normal and hash(built) == hash(normal)
    assert repr(built) == repr(normal)
    with pytest.raises(AttributeError):
        built.topic = "x"  # type: ignore[misc]


def test_failed_flush_poisons_the_writer(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path, segment_rows=2)
    w.write(RecordedMessage("t", 0, 0, 0, None, None))
    with pytest.raises(ValueError, match="topic"):
        w.write(RecordedMessage(None, 0, 1, 0, None, None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failed"):
        w.write(RecordedMessage("t", 0, 2, 0, None, None))
    with pytest.raises(ValueError, match="incomplete"):
        w.close()
    assert not (tmp_path / "manifest.json").exists()


def test_decode_headers_respects_array_slicing() -> None:
    headers = [(), (("a", b"1"),), (("b", None), ("c", b"")), (), (("d", b"4"),)]
    column = pa.array(
        [[{"key": k, "value": v} for k, v in h] for h in headers],
        type=SCHEMA.field("headers").type,
    )
    assert recording_reader._decode_headers(column) == headers
    assert recording_reader._decode_headers(column.slice(1, 3)) == headers[1:4]
    assert recording_reader._decode_headers(column.slice(3, 2)) == headers[3:5]
    assert recording_reader._decode_headers(column.slice(0, 1)) == [()]


# --------------------------------------------------------------------------- row filters


class _ByValue:
    """Rows whose value's first byte is in ``keep`` (on the Arrow batch), and asks about
    the rows starting with ``?``: handed on when their offset is even."""

    def __init__(self, keep: bytes) -> None:
        self.keep = keep
        self.asked: list[RecordedMessage] = []

    def classify(self, values: list[bytes | None],
                 topics: list[str] | None = None) -> list[bool | None]:
        return [None if v and v[:1] == b"?" else bool(v) and v[:1] in self.keep
                for v in values]

    def decide(self, message: RecordedMessage) -> bool:
        self.asked.append(message)
        return message.offset % 2 == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 400), st.integers(1, 120), st.integers(1, 50), st.data())
def test_a_row_filter_hands_on_its_rows_in_replay_order_in_batches_of_the_whole_order(
        n: int, segment_rows: int, batch_rows: int, data: st.DataObject) -> None:
    """Every row the filter keeps, or asks about and is told yes, comes out in replay
    order; nothing else is built or handed on; batches span ``batch_rows`` rows of the
    whole order (so the k-th batch ends where an unfiltered reader's does), and
    ``start_at`` counts every row."""
    rng = random.Random(n)
    msgs = [m._replace(value=rng.choice([None, b"a1", b"b2", b"?3", b"c4"])) for m in
            make_messages(n, seed=n)]
    def wanted(m: RecordedMessage) -> bool:
        return bool(m.value) and (m.value[:1] == b"a" or (m.value[:1] == b"?" and m.offset % 2 == 0))

    with tempfile.TemporaryDirectory() as tmp:
        write_messages(tmp, msgs, segment_rows=segment_rows, row_group_rows=7)
        expected = sort_expected(msgs)
        rows = _ByValue(b"a")
        filtered = list(RecordingReader(tmp, batch_rows=batch_rows, rows=rows).iter_batches())
        assert [m for b in filtered for m in b] == [m for m in expected if wanted(m)]
        assert sorted(map(RecordedMessage.sort_key, rows.asked)) == sorted(
            m.sort_key() for m in expected if m.value and m.value[:1] == b"?")
        whole = list(RecordingReader(tmp, batch_rows=batch_rows).iter_batches())
        assert len(filtered) == len(whole)
        assert [[m for m in b if wanted(m)] for b in whole] == filtered
        start = data.draw(st.integers(0, n), label="start_at")
        resumed = RecordingReader(tmp, batch_rows=batch_rows, start_at=start, rows=_ByValue(b"a"))
        assert list(resumed) == [m for m in expected[start:] if wanted(m)]
