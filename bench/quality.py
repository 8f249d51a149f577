"""Calibration and ranking of the 90-day probability, and handoff precision, against the truth.

    python bench/quality.py [--investors 20000 --days 60 --seed 1] [--reviewers] [--keep DIR]
    python bench/quality.py --world DIR/world --run DIR/run     # evaluate a kept run

Generates a world, replays it and evaluates the scores published in the world's last
third under the 90-day protocol of :mod:`replay.quality`: each score of an open lead
is labelled by whether the investor converted within 90 days of the score; a score
whose outcome the world ends before knowing is censored (counted, not scored).
Targets (issue 18): ECE <= 0.03, AUC >= 0.95 x the oracle's. Also prints the run's
own online ECE (``summary.json`` ``calibration``) and the handoff precision.

The world has no reviewer teams unless ``--reviewers``: generating them replays the
flow up to four times to time their decisions (slow at 20,000 investors), and they
change no label (the CRM's outcomes come from the truth alone) — only which review
cases end in a handoff.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from esg_leads.flows.config import load_settings
from esg_leads.replay.generator import generate
from esg_leads.replay.quality import evaluate_horizon, handoff_precision
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=20000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reviewers", action="store_true", help="generate reviewer teams")
    parser.add_argument("--keep", type=Path, default=None, help="keep world and run here")
    parser.add_argument("--world", type=Path, default=None, help="evaluate this world ...")
    parser.add_argument("--run", type=Path, default=None, help="... and this run of it")
    args = parser.parse_args()
    result: dict = {}
    base = None
    if args.world and args.run:
        world, run = args.world, args.run
    else:
        base = args.keep or Path(tempfile.mkdtemp(prefix="esg-quality-"))
        world, run = base / "world", base / "run"
        shutil.rmtree(world, ignore_errors=True)
        started = time.perf_counter()
        generate(WorldSpec(investors=args.investors, days=args.days, seed=args.seed,
                           properties=max(100, args.investors // 10),
                           reviewers=args.reviewers, profile_answers=False), world)
        summary = replay(world, run, load_settings(world / "config.toml"))
        result["world"] = {"investors": args.investors, "days": args.days, "seed": args.seed,
                           "reviewers": args.reviewers,
                           "seconds": round(time.perf_counter() - started)}
    try:
        result["horizon_90d"] = evaluate_horizon(world, run)
        result["handoff"] = handoff_precision(world, run)
        summary = json.loads((run / "summary.json").read_text())
        result["online_calibration"] = summary.get("calibration")
        print(json.dumps(result, indent=2))
        h = result["horizon_90d"]
        if h.get("scores_evaluated"):
            print(f"90-day ECE {h['ece']:.4f} (target <= 0.03); AUC {h['auc']:.4f} = "
                  f"{100 * h['auc_ratio']:.1f}% of oracle {h['oracle_auc']:.4f} (target >= 95%); "
                  f"handoff precision {result['handoff']['precision']}")
    finally:
        if base is not None and args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
