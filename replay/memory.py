"""What a replay holds in memory, measured in a fresh child process.

Memory is a property of a whole process (imports, allocator arenas, bytewax's runtime),
so each measurement replays one world in a child of its own and reports, in KB: RSS held
once the whole input is read (``state_kb``: every investor's state is in memory then,
nothing finalized yet), the interpreter's allocated blocks at that moment (``blocks``,
after a full collection: the same to the block from run to run, unlike RSS), the peak
RSS of the run (``run_kb``) and after finalize (``finalize_kb``).

One figure alone says little; what grows with investors is the difference of two worlds
alike but for their investor count (:func:`slope`). ``tests/replay/test_runner_memory.py``
asserts it at a size the suite affords, ``bench/memory_scale.py`` measures it at issue
16's 100k investors.

``plain=True`` runs the same flow through :mod:`esg_leads.flows.plain` (no bytewax
runtime), which tells bytewax's share apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import gc, json, resource, sys
from pathlib import Path
from esg_leads.flows.config import load_settings
from esg_leads.replay import runner

world, out, plain = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "plain"
if plain:
    from esg_leads.flows.plain import execute
    runner.run_main = execute
settings = runner.replay_settings(load_settings(world / "config.toml", environ={}))
runner.prepare_output(out)
held = {}

def high_water_kb():
    # The peak RSS of this process's own memory. Not getrusage's ru_maxrss: Linux carries
    # that over from the parent at fork and exec, so a parent bigger than the replay (one
    # that generated a large world) would be measured instead of the child.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")

def progress(done, total):
    # The whole input read: the state of every investor is held (current RSS, in KB).
    if done == total and not held:
        gc.collect()
        held["state_kb"] = int(open("/proc/self/statm").read().split()[1]) * (
            resource.getpagesize() // 1024)
        held["blocks"] = sys.getallocatedblocks()

run = runner.run_flow(world, out, settings, progress=progress)
assert run.failure is None, run.failure
during = high_water_kb()
runner.write_outputs(settings, world, out, run.telemetry, emitted=run.emitted,
                     stopped_early=run.stopped_early, seconds=run.seconds)
after = high_water_kb()
print(json.dumps({**held, "run_kb": during, "finalize_kb": after}))
"""


def held_memory(world: str | Path, out: str | Path, *, plain: bool = False) -> dict[str, int]:
    """Replay ``world`` into ``out`` in a fresh child and return its memory figures.

    The child sees none of the caller's ``ESG_LEADS_*`` settings (the world's
    ``config.toml`` alone decides) and a fixed hash seed, so two calls differ only by
    their world.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESG_LEADS_")}
    env["PYTHONHASHSEED"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(world), str(out), "plain" if plain else "flow"],
        env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"replay of {world} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def slope(small: dict[str, int], large: dict[str, int], figure: str,
          investors: tuple[int, int]) -> float:
    """``figure`` per investor between two worlds of ``investors`` = (small, large).

    >>> slope({"state_kb": 1000}, {"state_kb": 4000}, "state_kb", (500, 2000))
    2.0
    """
    return (large[figure] - small[figure]) / (investors[1] - investors[0])
