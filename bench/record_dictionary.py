"""Train the zstd dictionary lead records are kept against (operators/kept_record.py).

    python bench/record_dictionary.py OUT.zdict [--world RECORDING] [--size 16384]

Without ``--world`` it generates the world ``v1.zdict`` was trained on (``esg-leads
generate --investors 3000 --days 20 --seed 1``, three tenants: 37,645 messages), replays
it with the plain loop (``flows/plain.py``: the flow's own steps) and trains on the last
record of every lead the lifecycle keeps at the end (2,729 records; zstd's COVER
training is deterministic for the same samples, but a record's ``processed_at`` is the
wall clock, so a new run gives a dictionary of equal quality, not the same bytes).

It prints the mean kept size of the same records with LZ4 (what stops 29–30 kept),
zstd without a dictionary and zstd with the new one. A shipped dictionary never
changes (snapshots hold frames made against it): a new one becomes ``v2``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import zstandard

sys.path.insert(0, str(Path(__file__).parent))
from state_size import replay_keyed  # noqa: E402  - a sibling bench script

from esg_leads.operators import kept_record  # noqa: E402


def kept_records(world: Path) -> list[bytes]:
    """The JSON of each lead's last record the lifecycle keeps after replaying ``world``."""
    with tempfile.TemporaryDirectory() as tmp:
        keyed = replay_keyed(world, Path(tmp) / "out")
    return [kept_record.unpack(lead.last_record)
            for _, operators in keyed for operator in operators
            if type(operator).__name__ == "LifecycleShard"
            for lead in operator.leads.values() if isinstance(lead.last_record, bytes)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--world", type=Path, help="a recording (default: generate v1's)")
    parser.add_argument("--size", type=int, default=16384, help="dictionary bytes")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        # A shipped dictionary never changes (snapshots hold frames made against it).
        parser.error(f"{args.out} exists: a new dictionary is a new version (v2.zdict ...)")
    with tempfile.TemporaryDirectory() as tmp:
        world = args.world
        if world is None:
            world = Path(tmp) / "world"
            subprocess.run([sys.executable, "-m", "esg_leads.cli.main", "generate", "--investors", "3000",
                            "--days", "20", "--seed", "1", "--out", str(world)], check=True)
        records = kept_records(world)
    trained = zstandard.train_dictionary(args.size, records, level=3)
    args.out.write_bytes(trained.as_bytes())
    lz4 = pa.Codec("lz4")
    plain = zstandard.ZstdCompressor(level=3)
    with_dict = zstandard.ZstdCompressor(level=3, dict_data=trained, write_dict_id=False,
                                         write_checksum=False)
    for name, size in (("json", len), ("lz4", lambda r: 4 + len(lz4.compress(r, asbytes=True))),
                       ("zstd", lambda r: len(plain.compress(r))),
                       ("zstd+dictionary", lambda r: 1 + len(with_dict.compress(r)))):
        print(f"{name:>16}: {statistics.mean(map(size, records)):7.0f} bytes a record "
              f"(mean of {len(records)})")
    print(f"wrote {args.out} ({len(trained.as_bytes())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
