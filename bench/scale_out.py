"""Scale-out: one replay on P=1 and P=2 processes (one worker each), side by side.

    python bench/scale_out.py [--world DIR | --investors 35000 --days 60] [--repeat N]

``esg-leads generate --investors 35000 --days 60`` makes ~1M events (the issue's
size); ``--investors 5000 --days 20`` runs in a couple of minutes. For each P the
bench prints events/s (recording messages over the wall time of the whole replay:
starting the cluster, the flow, joining the outputs) and CPU-seconds per 1k events
(this process's CPU during the replay plus every cluster process's own, as
``summary.json`` reports it), then the ratios P=2 / P=1. With ``--repeat N`` each
figure is the best of N runs, alternating P=1 and P=2 so that a noisy neighbour
hurts both alike. The last row divides P=1's CPU by the busier P=2 process's: the
speed-up P=2 reaches with a core per process (on a machine shared with other work,
two processes also take a larger share of it than one, which flatters events/s).

Not counted: the one-off import of the flow's modules (done before the first run
here; the cluster's fork server is started before timing). Both runs decide the
same (checked: ``replay.diff.compare``). The issue's target: P=2 at ≥ 1.7× the
events/s of P=1, with CPU per event within 1.15×.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from esg_leads.connectors.recording import RecordingReader
from esg_leads.flows.config import load_settings
from esg_leads.replay.cluster import replay_cluster
from esg_leads.replay.diff import compare, load_run
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(world: Path, out: Path, processes: int, settings) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cpu, started = cpu_self(), time.perf_counter()
    summary = replay_cluster(world, out, settings, processes=processes, workers=1)
    wall = time.perf_counter() - started
    cpu = cpu_self() - cpu + sum(p["cpu_seconds"] for p in summary.get("processes", ()))
    assert summary["reconciled"] and not summary["interrupted"], summary
    return {"wall": wall, "cpu": cpu,
            "process_cpu": [p["cpu_seconds"] for p in summary.get("processes", ())]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=None, help="reuse this recording")
    parser.add_argument("--investors", type=int, default=35_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per P")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="scale-out-"))
    try:
        world = args.world
        if world is None:
            world = scratch / "world"
            print(f"generating {args.investors:,} investors over {args.days} days ...",
                  file=sys.stderr, flush=True)
            generate(WorldSpec(investors=args.investors, properties=max(3, args.investors // 10),
                               days=args.days), world)
        messages = RecordingReader(world).count()
        settings = load_settings(world / "config.toml" if (world / "config.toml").exists()
                                 else None)
        tenants = len(settings.tenants)
        print(f"{messages:,} events, {tenants} tenants, "
              f"{settings.windows.shards_per_tenant} shards per tenant", file=sys.stderr)
        # Start the fork server (it imports the flow once) outside the timed runs.
        replay_cluster(world, scratch / "warm", settings, processes=2, stop=_Stopped())
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for attempt in range(args.repeat):
            for processes in (1, 2):
                run = one_run(world, scratch / f"p{processes}", processes, settings)
                runs[processes].append(run)
                print(f"run {attempt + 1}/{args.repeat} P={processes}: {run['wall']:.1f}s wall, "
                      f"{run['cpu']:.1f} CPU-s {run['process_cpu'] or ''}", file=sys.stderr,
                      flush=True)
        report = compare(load_run(scratch / "p1"), load_run(scratch / "p2"))
        best = {p: {"events_per_s": messages / min(r["wall"] for r in rs),
                    "cpu_s_per_1k": 1000 * min(r["cpu"] for r in rs) / messages}
                for p, rs in runs.items()}
        ratio = {"events_per_s": best[2]["events_per_s"] / best[1]["events_per_s"],
                 "cpu_s_per_1k": best[2]["cpu_s_per_1k"] / best[1]["cpu_s_per_1k"]}
        label = f"best of {args.repeat}" if args.repeat > 1 else "one run"
        print(f"\nscale-out, {messages:,} events, W=1 per process ({label})")
        print(f"{'':24}{'P=1':>12}{'P=2':>12}{'P=2 / P=1':>12}   target")
        print(f"{'events/s':24}{best[1]['events_per_s']:>12,.0f}{best[2]['events_per_s']:>12,.0f}"
              f"{ratio['events_per_s']:>11.2f}×   ≥ 1.70×")
        print(f"{'CPU-seconds / 1k events':24}{best[1]['cpu_s_per_1k']:>12.3f}"
              f"{best[2]['cpu_s_per_1k']:>12.3f}{ratio['cpu_s_per_1k']:>11.2f}×   ≤ 1.15×")
        # On a shared machine two processes also take a larger share of the cores than one,
        # which flatters the events/s ratio; P=1's CPU over the busiest process's is the
        # speed-up with a core per process, whatever the neighbours do.
        busiest = min(max(r["process_cpu"]) for r in runs[2] if r["process_cpu"])
        bound = min(r["cpu"] for r in runs[1]) / busiest
        print(f"{'P=1 CPU / busiest P=2':24}{'':>24}{bound:>11.2f}×   (the speed-up with a "
              "core per process)")
        print(f"decisions equal: {'yes' if report['equal'] else 'NO'}")
        if args.json:
            print(json.dumps({"messages": messages, "repeat": args.repeat, "best": best,
                              "ratio": ratio, "cpu_bound": bound, "runs": runs,
                              "equal": report["equal"]}))
        return 0 if report["equal"] else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Stopped:
    """A stop already set: the warm-up cluster starts, reads nothing, and exits."""

    def is_set(self) -> bool:
        return True


if __name__ == "__main__":
    sys.exit(main())
