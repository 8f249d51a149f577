"""Benchmark the recording format (connectors/recording/).

Writes ``--n`` synthetic Kafka messages (~300-byte JSON values, 6 topics,
4 partitions each, mostly increasing timestamps with jitter, ~20% with
headers) into a temporary recording, then replays it in a fresh subprocess
(so the reader's peak RSS is measured on its own) and prints:

* write throughput (time spent in ``write_many``/``close`` only; generating
  the synthetic messages is excluded),
* read throughput of the full k-way merge (``for msg in reader``), also per
  CPU-second (less sensitive to other load on a shared machine), and of
  ``iter_batches()``,
* on-disk size and peak RSS of writer and reader (``VmHWM`` on Linux, which
  unlike ``getrusage().ru_maxrss`` is not inherited across fork/exec;
  ``getrusage`` elsewhere), plus the reader's RSS at 25/50/75/100 % of the
  replay to show that it does not grow with the recording's length.

Usage::

    .venv/bin/python bench/recording_speed.py --n 1000000
    .venv/bin/python bench/recording_speed.py --n 1000000 --segment-rows 1000000
    .venv/bin/python bench/recording_speed.py --n 1000000 --segment-rows 100000
    .venv/bin/python bench/recording_speed.py --n 1000000 --timestamps random
    .venv/bin/python bench/recording_speed.py --n 500000 --compare-sort

``--timestamps random`` draws timestamps uniformly over the whole time span,
so every segment covers the full range and the merge interleaves row by row
(the reader's worst case).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from esg_leads.connectors.recording import RecordedMessage, RecordingReader, RecordingWriter  # noqa: E402

TOPICS = (
    "leads.raw",
    "leads.enriched",
    "investors.profiles",
    "properties.listings",
    "esg.scores",
    "leads.qualified",
)
PARTITIONS = 4
REGIONS = ("DE-BE", "DE-HH", "FR-IDF", "NL-NH", "AT-9", "ES-MD", "IT-MI")
EVENTS = ("created", "updated", "contacted", "scored", "qualified", "rejected")


def peak_rss_mb() -> float:
    """Peak RSS of this process in MiB.

    ``getrusage().ru_maxrss`` (KiB on Linux) is used, except that on Linux a
    freshly exec'd child inherits the parent's ``ru_maxrss``; ``VmHWM`` from
    /proc is the high-water mark of the current address space only, so it is
    preferred when available.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_mb() -> float:
    """Current RSS in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def synthetic_messages(n: int, timestamps: str, seed: int = 7) -> Iterator[RecordedMessage]:
    rng = random.Random(seed)
    offsets = {(t, p): 0 for t in TOPICS for p in range(PARTITIONS)}
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    span = n * 2  # ~500 messages/s of wall-clock time
    for i in range(n):
        topic = TOPICS[rng.randrange(len(TOPICS))]
        partition = rng.randrange(PARTITIONS)
        offset = offsets[topic, partition]
        offsets[topic, partition] = offset + 1
        if timestamps == "random":
            ts = base + rng.randrange(span)
        else:  # mostly increasing, +-1.5 s of jitter (producer clocks, batching)
            ts = base + 2 * i + (rng.randrange(-1500, 1500) if rng.random() < 0.3 else 0)
        lead = f"lead-{rng.randrange(200_000):06d}"
        doc = {
            "lead_id": lead,
            "event": EVENTS[rng.randrange(len(EVENTS))],
            "ts": ts,
            "seq": i,
            "investor": {
                "id": f"inv-{rng.randrange(50_000):05d}",
                "type": "family_office" if rng.random() < 0.3 else "institutional",
                "ticket_eur": rng.randrange(250_000, 80_000_000),
            },
            "property": {
                "region": REGIONS[rng.randrange(len(REGIONS))],
                "sqm": rng.randrange(200, 40_000),
                "energy_class": "ABCDEFG"[rng.randrange(7)],
            },
            "esg": {
                "e": round(rng.random(), 4),
                "s": round(rng.random(), 4),
                "g": round(rng.random(), 4),
            },
            "source": "crm" if rng.random() < 0.5 else "web",
            "consent": {"email": rng.random() < 0.7, "phone": rng.random() < 0.4},
        }
        # Copy through bytearray: orjson leaves each result in a ~4 KiB
        # allocation, which would inflate the writer's RSS ten-fold.
        value = bytes(bytearray(orjson.dumps(doc)))
        headers: tuple[tuple[str, bytes | None], ...] = ()
        if rng.random() < 0.2:
            headers = (("trace-id", rng.randbytes(8).hex().encode()), ("schema", b"v3"))
        yield RecordedMessage(topic, partition, offset, ts, lead.encode(), value, headers)


def run_write(args: argparse.Namespace, directory: Path) -> dict[str, float]:
    gen = synthetic_messages(args.n, args.timestamps)
    chunk_size = 50_000
    write_s = 0.0
    value_bytes = 0
    with RecordingWriter(directory, segment_rows=args.segment_rows, overwrite=True) as writer:
        while True:
            chunk = [m for _, m in zip(range(chunk_size), gen)]
            if not chunk:
                break
            value_bytes += sum(len(m.value or b"") for m in chunk)
            t0 = time.perf_counter()
            writer.write_many(chunk)
            write_s += time.perf_counter() - t0
        t0 = time.perf_counter()
    writer_close = time.perf_counter() - t0  # the with-exit flushes + writes the manifest
    write_s += writer_close
    size = sum(p.stat().st_size for p in directory.iterdir())
    return {
        "write_s": write_s,
        "avg_value_bytes": value_bytes / max(args.n, 1),
        "size_mb": size / 1e6,
        "segments": writer.segments_written,
        "writer_peak_rss_mb": peak_rss_mb(),
    }


def run_read(directory: Path, batch_rows: int) -> dict[str, Any]:
    """Replay the recording twice; runs in its own process (see main)."""
    reader = RecordingReader(directory, batch_rows=batch_rows)
    expected = reader.count()
    marks = {expected * q // 4 for q in (1, 2, 3, 4)}
    rss_curve: list[float] = []
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    n = 0
    last = None
    for msg in reader:
        n += 1
        last = msg
        if n in marks:
            rss_curve.append(current_rss_mb())
    iter_s = time.perf_counter() - t0
    iter_cpu = cpu_seconds() - cpu0
    assert n == expected and last is not None, (n, expected)
    t0 = time.perf_counter()
    nb = sum(len(batch) for batch in reader.iter_batches())
    batches_s = time.perf_counter() - t0
    assert nb == expected
    return {
        "rows": n,
        "read_iter_s": iter_s,
        "read_iter_cpu_s": iter_cpu,
        "read_batches_s": batches_s,
        "reader_peak_rss_mb": peak_rss_mb(),
        "reader_rss_curve_mb": rss_curve,
    }


def compare_sort(directory: Path) -> None:
    """Time the writer's sort (pyarrow sort_indices) against sorting Python tuples."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(next(iter(sorted(directory.glob("segment-*.parquet")))))
    rng = random.Random(1)
    perm = list(range(table.num_rows))
    rng.shuffle(perm)
    table = table.take(perm)
    t0 = time.perf_counter()
    idx = pc.sort_indices(
        table,
        sort_keys=[(c, "ascending") for c in ("timestamp", "topic", "partition", "offset")],
    )
    arrow_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = table.column("timestamp").cast("int64").to_pylist()
    topic = table.column("topic").to_pylist()
    part = table.column("partition").to_pylist()
    off = table.column("offset").to_pylist()
    keys = list(zip(ts, topic, part, off))
    py_idx = sorted(range(len(keys)), key=keys.__getitem__)
    python_s = time.perf_counter() - t0
    assert idx.to_pylist() == py_idx
    print(
        f"sort {table.num_rows:,} shuffled rows: pyarrow.compute.sort_indices"
        f" {arrow_s * 1e3:.0f} ms, Python tuple sort (incl. to_pylist) {python_s * 1e3:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="messages to write")
    parser.add_argument("--segment-rows", type=int, default=500_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--timestamps", choices=("jitter", "random"), default="jitter")
    parser.add_argument("--compare-sort", action="store_true", help="also time sort methods")
    parser.add_argument("--dir", type=Path, help="recording directory (default: a temp dir)")
    parser.add_argument("--read-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.read_only is not None:  # child process: replay only
        print(json.dumps(run_read(args.read_only, args.batch_rows)))
        return

    tmp = None
    if args.dir is None:
        tmp = tempfile.mkdtemp(prefix="recording-bench-")
        directory = Path(tmp)
    else:
        directory = args.dir
    try:
        w = run_write(args, directory)
        child = subprocess.run(
            [sys.executable, __file__, "--read-only", str(directory)]
            + ["--batch-rows", str(args.batch_rows)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(child.stdout.strip().splitlines()[-1])
        n = args.n
        print(
            f"messages           {n:,} ({w['avg_value_bytes']:.0f}-byte values avg,"
            f" timestamps={args.timestamps})"
        )
        print(f"segments           {w['segments']} x segment_rows={args.segment_rows:,}")
        print(f"write              {n / w['write_s']:,.0f} msgs/s  ({w['write_s']:.2f} s)")
        print(
            f"read (full merge)  {n / r['read_iter_s']:,.0f} msgs/s  ({r['read_iter_s']:.2f} s,"
            f" batch_rows={args.batch_rows:,}; {n / r['read_iter_cpu_s']:,.0f} msgs per CPU-s,"
            " incl. prefetch threads)"
        )
        print(
            f"read iter_batches  {n / r['read_batches_s']:,.0f} msgs/s"
            f"  ({r['read_batches_s']:.2f} s)"
        )
        print(f"file size          {w['size_mb']:.1f} MB ({w['size_mb'] * 1e6 / n:.0f} B/msg)")
        print(f"peak RSS writer    {w['writer_peak_rss_mb']:.0f} MB")
        print(f"peak RSS reader    {r['reader_peak_rss_mb']:.0f} MB (separate process)")
        curve = " / ".join(f"{x:.0f}" for x in r["reader_rss_curve_mb"])
        print(f"reader RSS at 25/50/75/100% of the replay: {curve} MB")
        if args.compare_sort:
            compare_sort(directory)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
