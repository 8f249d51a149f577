"""Memory per active investor at issue 16's scale: two worlds, the slope between them.

    python bench/memory_scale.py [--investors 25000 100000] [--days 15] [--plain] [--keep]

Issue 16 asks for at most 8 KB of RSS per active investor at 100k investors. The suite's
memory test (tests/replay/test_runner_memory.py) measures the same slope at 500 and 2,000
investors, where the sinks' buffers (bounded, so constant at scale) still grow with the
world and inflate it. Here both worlds are generated alike but for their investor count
(same seed, tenants, properties, days; no reviewers or profile answers, which would
replay each world several times to settle it), each is replayed in a fresh child
(:func:`esg_leads.replay.memory.held_memory`), and the table gives per investor: RSS
held once the input is read, the interpreter's memory blocks then, peak RSS of the run,
and peak after finalize. ``--plain`` replays through flows/plain.py as well, so
bytewax's share shows as the difference of the two slopes.

Not a test: it takes minutes and the figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from esg_leads.replay.generator import generate
from esg_leads.replay.memory import held_memory, slope
from esg_leads.replay.simulate import WorldSpec

FIGURES = (("state_kb", "RSS held at end of input, KB"), ("blocks", "memory blocks held"),
           ("run_kb", "peak RSS of the run, KB"), ("finalize_kb", "peak RSS after finalize, KB"))


def world(scratch: Path, investors: int, days: int, seed: int) -> Path:
    where = scratch / f"world{investors}"
    started = time.perf_counter()
    generate(WorldSpec(tenants=2, investors=investors, properties=600, days=days, seed=seed,
                       reviewers=False, profile_answers=False), where)
    print(f"generated {investors:,} investors x {days} days in "
          f"{time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--investors", type=int, nargs=2, default=(25_000, 100_000),
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plain", action="store_true",
                        help="also replay without bytewax's runtime (flows/plain.py)")
    parser.add_argument("--scratch", type=Path, help="where worlds and outputs go")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    small, large = args.investors
    if not 0 < small < large:
        parser.error("--investors SMALL LARGE with 0 < SMALL < LARGE")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="esg-memory-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        worlds = {n: world(scratch, n, args.days, args.seed) for n in (small, large)}
        modes = ("flow", "plain") if args.plain else ("flow",)
        measured = {}
        for mode in modes:
            for n, where in worlds.items():
                started = time.perf_counter()
                measured[mode, n] = held_memory(where, scratch / f"out-{mode}-{n}",
                                                plain=mode == "plain")
                print(f"replayed {n:,} investors ({mode}) in "
                      f"{time.perf_counter() - started:.0f}s: {measured[mode, n]}",
                      file=sys.stderr, flush=True)
        print(f"\nper active investor, {small:,} -> {large:,} investors, {args.days} days")
        print(f"{'figure':32}" + "".join(f"{mode:>12}" for mode in modes))
        for figure, label in FIGURES:
            print(f"{label:32}" + "".join(
                f"{slope(measured[mode, small], measured[mode, large], figure, (small, large)):12.1f}"
                for mode in modes))
        for mode in modes:
            print(f"{mode}: " + ", ".join(f"{n:,}: {measured[mode, n]}" for n in (small, large)))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
