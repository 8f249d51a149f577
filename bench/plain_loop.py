"""The flow against the same dataflow run without bytewax's runtime (issue 16's plain loop).

    python bench/plain_loop.py [--world DIR | --investors 3000 --days 20]

``esg_leads.flows.plain.execute`` runs the very ``Dataflow`` that ``esg-leads replay``
builds with bytewax's core operators done as plain calls (see its docstring). This
replays one world both ways, each in a child process measured with ``os.wait4``
(CPU-seconds), checks that they decide the same (``esg-leads diff``), and prints
events/s, CPU-seconds per 1k events and the ratio flow / plain loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

# ------------------------------------------------------------------------------ bench

CHILD = """
import json, sys
from pathlib import Path
from esg_leads.flows.config import load_settings
from esg_leads.replay import runner
world, out, plain = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "plain"
if plain:
    from esg_leads.flows.plain import execute
    runner.run_main = execute  # the one thing that differs
config = world / "config.toml"
settings = load_settings(config if config.exists() else None, environ={})
summary = runner.replay(world, out, settings)
print(json.dumps({"messages": summary["messages"]}))
"""


def measure(world: Path, out: Path, plain: bool) -> dict:
    """One replay in a child process: its messages, wall seconds and CPU-seconds."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(world), str(out), "plain" if plain else "flow"],
        stdout=subprocess.PIPE)
    stdout = child.stdout.read() if child.stdout else b""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the {'plain' if plain else 'flow'} replay failed")
    messages = orjson.loads(stdout.splitlines()[-1])["messages"]
    return {"messages": messages, "seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="a recording (default: generate one)")
    parser.add_argument("--investors", type=int, default=3000)
    parser.add_argument("--days", type=int, default=20)
    args = parser.parse_args(argv)
    from esg_leads.replay.diff import compare, load_run, render

    scratch = Path(tempfile.mkdtemp(prefix="esg-plain-"))
    try:
        world = args.world
        if world is None:
            from esg_leads.replay.generator import generate
            from esg_leads.replay.simulate import WorldSpec
            world = scratch / "world"
            generate(WorldSpec(investors=args.investors, days=args.days, seed=1), world)
        runs = {name: measure(world, scratch / name, name == "plain") for name in ("flow", "plain")}
        for name, run in runs.items():
            print(f"{name:6}: {run['messages']:,} events, {run['seconds']:.1f} s wall = "
                  f"{run['messages'] / run['seconds']:,.0f} events/s, "
                  f"{1000 * run['cpu'] / run['messages']:.3f} CPU-s per 1k events")
        flow, plain = runs["flow"], runs["plain"]
        print(f"flow / plain loop: {plain['cpu'] / flow['cpu']:.2f} in events per CPU-second, "
              f"{plain['seconds'] / flow['seconds']:.2f} in events/s")
        report = compare(load_run(scratch / "flow"), load_run(scratch / "plain"))
        print("decisions equal: " + ("yes" if report["equal"] else "NO\n" + render(report)))
        return 0 if report["equal"] else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
