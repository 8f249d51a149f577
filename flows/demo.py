"""``esg-leads demo`` (``make demo``): generate a world, replay it, show the best leads.

No Kafka needed: the recording stands in for the topics, and the flow that runs
is the same ``build_flow`` that ``esg-leads run`` feeds from Kafka.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from flows.config import load_settings
from flows.progress import Progress
from replay.generator import generate
from replay.runner import replay
from replay.simulate import WorldSpec


def _latest_leads(leads_path: Path, limit: int) -> list[dict]:
    """Each investor's latest scored lead, best first."""
    table = pq.read_table(leads_path, columns=["investor_id", "event_time", "probability", "record"])
    table = table.sort_by([("investor_id", "ascending"), ("event_time", "descending")])
    investors = table.column("investor_id").to_pylist()
    keep = [i for i, inv in enumerate(investors) if i == 0 or investors[i - 1] != inv]
    latest = table.take(keep)
    order = pc.sort_indices(latest, sort_keys=[("probability", "descending"),
                                               ("investor_id", "ascending")])
    top = latest.take(order[:limit])
    return [orjson.loads(r) for r in top.column("record").to_pylist()]


def _reasons(record: dict) -> str:
    explanation = record["explanation"]
    parts = [f"+{c['feature']}" for c in explanation["top_positive"][:2]]
    parts += [f"-{c['feature']}" for c in explanation["top_negative"][:1]]
    if explanation["prior_reasons"]:
        parts.append(f"prior: {explanation['prior_reasons'][0]}")
    return ", ".join(parts)


def run_demo(out: Path, seed: int = 7, investors: int = 3000, days: int = 45) -> int:
    console = Console()
    started = time.perf_counter()
    world_dir, run_dir = out / "world", out / "run"
    shutil.rmtree(out, ignore_errors=True)
    spec = WorldSpec(tenants=3, investors=investors, properties=max(90, investors // 8),
                     days=days, seed=seed)
    with Progress("generating world", total=days, unit="days") as progress:
        report = generate(spec, world_dir, progress=progress.update)
    settings = load_settings(config_file=world_dir / "config.toml")
    with Progress("replaying", total=report.messages, unit="messages") as progress:
        summary = replay(world_dir, run_dir, settings, progress=progress.update)

    console.print(f"[bold]esg-leads demo[/bold] — {report.investors:,} investors, "
                  f"{days} days, {report.messages:,} messages (seed {seed})")
    table = Table(title="Top leads (each investor's latest score)", title_justify="left")
    for column in ("investor", "tenant", "score", "90% interval", "tier", "ESG", "intent",
                   "top reasons"):
        table.add_column(column, overflow="fold")
    for record in _latest_leads(run_dir / "leads.parquet", 10):
        interval = record["interval"]
        table.add_row(record["investor_id"], record["tenant"], str(record["score"]),
                      f"{100 * interval['low']:.0f}–{100 * interval['high']:.0f}",
                      record["tier"], f"{record['esg_alignment']['score']:.0f}",
                      f"{record['intent']:.0f}", _reasons(record))
    console.print(table)

    topics = Table(title="Reconciliation per input topic", title_justify="left")
    for column in ("topic", "in", "used", "dead-lettered", "reasons", "ok"):
        topics.add_column(column)
    for topic, row in summary["topics"].items():
        reasons = ", ".join(f"{r} {n}" for r, n in row["dlq_by_reason"].items())
        topics.add_row(topic, f"{row['in']:,}", f"{row['used']:,}", f"{row['dead_lettered']:,}",
                       reasons, "yes" if row["reconciled"] else "NO")
    console.print(topics)
    tiers = ", ".join(f"{t} {n:,}" for t, n in summary["leads_by_tier"].items())
    alerts = ", ".join(f"{k} {n}" for k, n in summary["alerts_by_kind"].items()) or "none"
    console.print(f"leads scored: {summary['outputs']['leads']:,} ({tiers}); "
                  f"labels learned: {summary['labels_learned']:,}; alerts: {alerts}")
    console.print(f"replay: {summary['events_per_second']:,} events/s; demo total "
                  f"{time.perf_counter() - started:.1f}s; outputs in {run_dir}/")
    return 0 if summary["reconciled"] else 1
