"""Drift detection against the generator's drift onset.

    python bench/drift_detection.py [--investors 1500 --days 20 --drift-at 10 --seed 7]

Generates two worlds of the same size and seed, one with ``--drift-at`` and one without
(reviewers off: they do not change what the detectors see, and they triple the time),
replays both, and prints side by side, per world: the ``drift_detected`` alerts before
the onset (false alarms), the first one after it and its delay in simulated hours, per
tenant and overall, with the subjects each named; then what followed: retraining
challengers started, promoted or retired (when, on how many shared labels, the paired
test's mean log-loss gain and its lower bound), and the AUC of the last week's published scores
against the oracle's (the 90-day protocol of ``replay/quality.py``). Targets (issue 18):
first alert within 48 simulated hours of the onset; at most one false alarm in the world
without drift; a retrain, and the last week's AUC back to >= 0.9 x the oracle's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from esg_leads.flows.config import load_settings
from esg_leads.replay.generator import generate
from esg_leads.replay.quality import evaluate_horizon
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import DAY_S, WorldSpec


def drift_alerts(run: Path) -> list[dict]:
    path = run / "alerts.parquet"
    rows = pq.read_table(path).to_pylist() if path.exists() else []
    return sorted((r for r in rows if r["kind"] == "drift_detected"),
                  key=lambda r: (r["event_time"], r["tenant"] or ""))


def measure(alerts: list[dict], onset_s: float) -> dict:
    """False alarms before ``onset_s``, and the first alert after it, per tenant."""
    before = [a for a in alerts if a["event_time"].timestamp() < onset_s]
    first: dict[str, float] = {}
    for a in alerts:
        t = a["event_time"].timestamp()
        if t >= onset_s and a["tenant"] not in first:
            first[a["tenant"]] = (t - onset_s) / 3600
    return {"alerts": len(alerts), "before_onset": len(before),
            "first_delay_h": min(first.values()) if first else None, "per_tenant": first,
            "subjects": [(a["tenant"], round((a["event_time"].timestamp() - onset_s) / 3600, 1),
                          a["detector"], a["subject"]) for a in alerts]}


#: The governor's decisions about a retraining challenger.
RETRAIN_KINDS = ("retraining_triggered", "model_promoted", "challenger_retired")


def run_world(spec: WorldSpec, base: Path) -> tuple[list[dict], dict]:
    """The world's drift alerts, and what followed: retrains, promotions, retirements
    (``decisions``: tenant, kind, event time, details), the last week's AUC against the
    oracle's."""
    world, run = base / "world", base / "run"
    shutil.rmtree(world, ignore_errors=True)
    generate(spec, world)
    replay(world, run, load_settings(world / "config.toml"))
    kinds = defaultdict(int)
    decisions = []
    for row in pq.read_table(run / "alerts.parquet").to_pylist():
        kinds[row["kind"]] += 1
        if row["kind"] in RETRAIN_KINDS:
            details = json.loads(row["record"]["details"]) if isinstance(
                row["record"]["details"], str) else row["record"]["details"]
            decisions.append((row["event_time"].timestamp(), row["tenant"], row["kind"], details))
    last_week = evaluate_horizon(world, run, from_fraction=max(0.0, 1 - 7 / spec.days))
    return drift_alerts(run), {"retraining_triggered": kinds["retraining_triggered"],
                               "model_promoted": kinds["model_promoted"],
                               "challenger_retired": kinds["challenger_retired"],
                               "decisions": sorted(decisions, key=lambda d: (d[0], d[1])),
                               "auc_ratio": last_week.get("auc_ratio"),
                               "auc": last_week.get("auc"),
                               "oracle_auc": last_week.get("oracle_auc")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=1500)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--drift-at", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="keep worlds and runs here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="esg-drift-"))
    try:
        spec = WorldSpec(investors=args.investors, days=args.days, seed=args.seed,
                         properties=max(100, args.investors // 10), reviewers=False,
                         profile_answers=False)
        onset = spec.start.timestamp() + args.drift_at * DAY_S
        drift_alerts_, drift_after = run_world(
            WorldSpec(**{**_fields(spec), "drift_at": args.drift_at}), base / "drift")
        still_alerts, still_after = run_world(spec, base / "no-drift")
        drifted, stationary = measure(drift_alerts_, onset), measure(still_alerts, onset)
        print(f"{'':34}{'drift world':>16}{'no-drift world':>18}")
        print(f"{'drift_detected alerts':34}{drifted['alerts']:>16}{stationary['alerts']:>18}")
        print(f"{'alerts before day ' + format(args.drift_at, 'g') + ' (false)':34}"
              f"{drifted['before_onset']:>16}{stationary['before_onset']:>18}")
        delay = drifted["first_delay_h"]
        print(f"{'first alert after onset (h)':34}{'-' if delay is None else f'{delay:.1f}':>16}"
              f"{'(all false)':>18}")
        for tenant, hours in sorted(drifted["per_tenant"].items()):
            print(f"{'  ' + tenant:34}{hours:>16.1f}")
        for name, result in (("drift", drifted), ("no-drift", stationary)):
            by_tenant = defaultdict(list)
            for tenant, hours, detector, subject in result["subjects"]:
                by_tenant[tenant].append(f"{hours:+.0f}h {detector} {subject}")
            for tenant, lines in sorted(by_tenant.items()):
                print(f"{name} {tenant}: " + "; ".join(lines))
        for name, after in (("drift", drift_after), ("no-drift", still_after)):
            for at, tenant, kind, d in after["decisions"]:
                print(f"{name} {tenant}: {(at - onset) / 3600:+.0f}h {kind} "
                      f"shared {d.get('shared_labels')} gain {d.get('mean_loss_difference')} "
                      f"lower bound {d.get('lower_bound')} (confidence {d.get('confidence')})")
        for key in ("retraining_triggered", "model_promoted", "challenger_retired", "auc",
                    "oracle_auc", "auc_ratio"):
            label = f"last week's {key}" if "auc" in key else key
            print(f"{label:34}{str(drift_after[key]):>16}{str(still_after[key]):>18}")
        ok = delay is not None and delay <= 48 and stationary["alerts"] <= 1 \
            and drifted["before_onset"] <= 1
        print("targets (first alert <= 48 h after onset; <= 1 false alarm):",
              "met" if ok else "NOT met")
        recovered = drift_after["retraining_triggered"] > 0 and \
            (drift_after["auc_ratio"] or 0) >= 0.9
        print("target (a retrain; last week's AUC >= 0.9 x oracle):",
              "met" if recovered else "NOT met")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _fields(spec: WorldSpec) -> dict:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


if __name__ == "__main__":
    main()
