"""Outage-world figures (issue 18): how stale-feed degradation shows in a run.

    python bench/outage.py [--investors 300] [--days 14] [--outage 4:120:epc-register]
                           [--max-staleness-days 2] [--seed 5] [--json]

Generates a world with one provider down (``--feed-outage``), replays it twice — once
watching every source (``sources."*".max_staleness``), once watching none, which
degrades nothing — and prints the feed alerts, then for the scoring records before,
during (the affected tenant's ``feed_stale`` to its ``feed_recovered``) and after the
outage: how many name a stale source, and the mean widths of the score interval
(probability and logit half-width) and the ESG alignment interval, against the same
leads in the unwatched run.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import orjson

from esg_leads.connectors.parquet_sink import read_records
from esg_leads.flows.config import load_settings
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec, parse_feed_outage


def _when(record: dict) -> float:
    at = record["event_time"]
    return (at if isinstance(at, datetime) else datetime.fromisoformat(at)).timestamp()


def _logit_half(interval: dict) -> float:
    lo, hi = (min(max(interval[k], 1e-6), 1 - 1e-6) for k in ("low", "high"))
    return (math.log(hi / (1 - hi)) - math.log(lo / (1 - lo))) / 2


def _width(interval: dict) -> float:
    return interval["high"] - interval["low"]


def measure(investors: int, days: int, outage: str, max_staleness_days: float, seed: int,
            work: Path) -> dict:
    spec = WorldSpec(tenants=2, investors=investors, properties=1500, days=days, seed=seed,
                     reviewers=False, profile_answers=False,
                     feed_outages=(parse_feed_outage(outage),))
    down = spec.feed_outages[0]
    generate(spec, work / "world")
    config = work / "world" / "config.toml"
    limit = max_staleness_days * 86_400
    replay(work / "world", work / "run", load_settings(
        config, environ={}, overrides={"sources": {"*": {"max_staleness": limit}}}))
    replay(work / "world", work / "control", load_settings(config, environ={}))
    alerts = sorted((a for a in read_records(work / "run" / "alerts.parquet")
                     if a["kind"] in ("feed_stale", "feed_recovered")), key=_when)
    start = spec.start.timestamp() + down.day * 86_400
    end = start + down.hours * 3600
    source = down.source
    periods: dict[str, tuple[float, float]] = {}  # tenant -> its outage's alert times
    for tenant in sorted({a["tenant"] for a in alerts}):
        mine = [a for a in alerts
                if a["tenant"] == tenant and (source is None or a["subject"] == source)]
        stale = [_when(a) for a in mine if a["kind"] == "feed_stale" and _when(a) >= start]
        if stale:
            back = [_when(a) for a in mine if a["kind"] == "feed_recovered" and _when(a) > stale[0]]
            periods[tenant] = (stale[0], back[0] if back else math.inf)

    def scored(run: str) -> dict[str, dict]:
        return {r["idempotency_key"]: r for r in read_records(work / run / "leads.parquet")
                if r["idempotency_key"].count(":") == 3}

    run, control = scored("run"), scored("control")
    rows: dict[str, list] = {"before": [], "during": [], "after": []}
    for key, lead in run.items():
        t = _when(lead)
        stale, back = periods.get(lead["tenant"], (start, end))
        period = "before" if t < stale else "during" if t < back else "after"
        other = control.get(key)
        if other is not None:
            rows[period].append((lead, other))
    out: dict = {
        "command": f"bench/outage.py --investors {investors} --days {days} --outage {outage} "
                   f"--max-staleness-days {max_staleness_days:g} --seed {seed}",
        "alerts": [(a["tenant"], a["kind"], a["subject"], str(a["event_time"])[:19])
                   for a in alerts],
        "outage_start": datetime.fromtimestamp(start).isoformat()[:16],
        "outage_end": datetime.fromtimestamp(end).isoformat()[:16],
        "periods": {},
    }
    for period, pairs in rows.items():
        affected = [(a, b) for a, b in pairs if a["explanation"].get("stale_sources")]

        def mean(values: list[float]) -> float | None:
            return round(sum(values) / len(values), 4) if values else None

        def figures(selected: list[tuple[dict, dict]]) -> dict:
            return {
                "leads": len(selected),
                "score_width": mean([_width(a["interval"]) for a, _ in selected]),
                "score_width_unwatched": mean([_width(b["interval"]) for _, b in selected]),
                "score_logit_half": mean([_logit_half(a["interval"]) for a, _ in selected]),
                "score_logit_half_unwatched": mean([_logit_half(b["interval"])
                                                    for _, b in selected]),
                "alignment_width": mean([_width(a["esg_alignment"]["interval"])
                                         for a, _ in selected]),
                "alignment_width_unwatched": mean([_width(b["esg_alignment"]["interval"])
                                                   for _, b in selected]),
                "stale_evidence_share": mean([a["explanation"].get("stale_evidence_share") or 0.0
                                              for a, _ in selected]),
            }
        out["periods"][period] = {"all": figures(pairs), "naming_a_stale_source": figures(affected)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--investors", type=int, default=300)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--outage", default="4:120:epc-register")
    parser.add_argument("--max-staleness-days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = measure(args.investors, args.days, args.outage, args.max_staleness_days,
                         args.seed, Path(work))
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print(result["command"])
    print(f"outage {result['outage_start']} to {result['outage_end']}")
    for alert in result["alerts"]:
        print("  ", *alert)
    print(f"{'period':8} {'leads':>5} {'naming':>6} {'score width':>17} {'logit half':>15} "
          f"{'alignment width':>17}   (watched / unwatched, leads naming a stale source)")
    for period, f in result["periods"].items():
        a, n = f["all"], f["naming_a_stale_source"]
        if not n["leads"]:
            print(f"{period:8} {a['leads']:>5} {0:>6}   (none degraded; all: score width "
                  f"{a['score_width']}, alignment width {a['alignment_width']})")
            continue
        print(f"{period:8} {a['leads']:>5} {n['leads']:>6} {n['score_width']:>8} / "
              f"{n['score_width_unwatched']:<7} {n['score_logit_half']:>6} / "
              f"{n['score_logit_half_unwatched']:<7} {n['alignment_width']:>7} / "
              f"{n['alignment_width_unwatched']:<7}  s = {n['stale_evidence_share']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
