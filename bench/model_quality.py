"""Model quality against the generator's ground truth.

    python bench/model_quality.py [--investors 20000 --days 60 --seed 1 --drift-at DAY]

Generates a world, replays it, and evaluates, on the later part of the stream
(decisions after ``--from-day``, default half the days), each decided investor's
*last score before the CRM decided* (what sales saw when it acted):

* ROC AUC of those scores against whether the investor converted, and the same for
  the oracle (the true conversion probability), and their ratio (target >= 0.9);
* expected calibration error over 10 equal-width bins (target <= 0.05);
* how often the 90% interval contains the true probability.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from esg_leads.flows.config import load_settings
from esg_leads.online_models.quality import expected_calibration_error, roc_auc
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec


def evaluate(world: Path, run: Path, from_day: float) -> dict:
    truth = {r["investor_id"]: r for r in pq.read_table(world / "truth.parquet").to_pylist()
             if r["decision_at"] is not None}
    start = json.loads((world / "world.json").read_text())["spec"]["start"]
    from datetime import datetime, timedelta

    cutoff = datetime.fromisoformat(start) + timedelta(days=from_day)
    leads = pq.read_table(run / "leads.parquet",
                          columns=["investor_id", "event_time", "probability", "record"]).to_pylist()
    last: dict[str, dict] = {}
    for lead in leads:
        row = truth.get(lead["investor_id"])
        if row is None or lead["event_time"] > row["decision_at"]:
            continue
        best = last.get(lead["investor_id"])
        if best is None or lead["event_time"] >= best["event_time"]:
            last[lead["investor_id"]] = lead
    ids = sorted(i for i in last if truth[i]["decision_at"] >= cutoff)
    scores = [last[i]["probability"] for i in ids]
    oracle = [truth[i]["p_convert"] for i in ids]
    labels = [bool(truth[i]["converted"]) for i in ids]
    covered = 0
    for i in ids:
        interval = last[i]["record"]["interval"]  # a struct: its fields read directly
        covered += interval["low"] <= truth[i]["p_convert"] <= interval["high"]
    auc, oracle_auc = roc_auc(scores, labels), roc_auc(oracle, labels)
    return {
        "investors_evaluated": len(ids),
        "conversion_rate": round(sum(labels) / len(labels), 4),
        "mean_score": round(sum(scores) / len(scores), 4),
        "auc": round(auc, 4),
        "oracle_auc": round(oracle_auc, 4),
        "auc_ratio": round(auc / oracle_auc, 4),
        "ece": round(expected_calibration_error(scores, labels), 4),
        "oracle_ece": round(expected_calibration_error(oracle, labels), 4),
        "interval_coverage_of_true_p": round(covered / len(ids), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=20000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drift-at", type=float, default=None)
    parser.add_argument("--from-day", type=float, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep world and run here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="esg-quality-"))
    try:
        world, run = base / "world", base / "run"
        shutil.rmtree(world, ignore_errors=True)
        generate(WorldSpec(investors=args.investors, days=args.days, seed=args.seed,
                           properties=max(100, args.investors // 10), drift_at=args.drift_at), world)
        summary = replay(world, run, load_settings(world / "config.toml"))
        result = evaluate(world, run, args.from_day if args.from_day is not None else args.days / 2)
        result["replay_events_per_second"] = summary["events_per_second"]
        result["alerts"] = summary["alerts_by_kind"]
        print(json.dumps(result, indent=2))
        print(f"AUC {result['auc']:.3f} = {100 * result['auc_ratio']:.1f}% of oracle "
              f"{result['oracle_auc']:.3f} (target >= 90%); ECE {result['ece']:.3f} (target <= 0.05)")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
