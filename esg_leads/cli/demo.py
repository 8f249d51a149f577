"""``esg-leads demo`` (``make demo``): generate a world, replay it, show the best leads.

No Kafka needed: the recording stands in for the topics, and the flow that runs
is the same ``build_flow`` that ``esg-leads run`` feeds from Kafka.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console

from esg_leads.flows.config import load_settings
from esg_leads.flows.progress import Progress
from esg_leads.flows.report import write_report
from esg_leads.flows.report_data import latest_leads
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec


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
    console.print("[bold]Top leads[/bold] (each investor's latest published score)")
    top = latest_leads(run_dir / "leads.parquet", 6)
    for rank, record in enumerate(top, 1):
        interval = record["interval"]
        plan = record.get("outreach_plan") or {"steps": [], "claims": []}
        channels = "→".join(step["channel"] for step in plan["steps"]) or "no lawful channel"
        compliance = record.get("compliance") or {}
        pack = f" ({compliance['pack']})" if compliance.get("pack") else ""
        console.print(
            f"{rank:>2}. [bold]{record['investor_id']}[/bold] ({record['tenant']})  score "
            f"{record['score']} [{100 * interval['low']:.0f}–{100 * interval['high']:.0f}] "
            f"{record['tier']} · ESG {record['esg_alignment']['score']:.0f} · "
            f"intent {record['intent']:.0f}\n"
            f"    state {record['state']} · compliance {compliance.get('verdict', '-')}{pack} · "
            f"plan {channels}, {len(plan['claims'])} ESG claims kept\n"
            f"    why: {_reasons(record)}", highlight=False)
    console.print("[bold]Reconciliation[/bold] (messages in = used + dead-lettered)")
    for topic, row in summary["topics"].items():
        reasons = ", ".join(f"{r} {n}" for r, n in row["dlq_by_reason"].items())
        mark = "ok" if row["reconciled"] else "[red]MISMATCH[/red]"
        console.print(f"  {topic:<22} {row['in']:>7,} = {row['used']:>7,} + "
                      f"{row['dead_lettered']:>5,}  {mark}  {reasons}", highlight=False)
    tiers = ", ".join(f"{t} {n:,}" for t, n in summary["leads_by_tier"].items())
    alerts = ", ".join(f"{k} {n}" for k, n in summary["alerts_by_kind"].items()) or "none"
    console.print(f"scorings {sum(summary['leads_by_tier'].values()):,} ({tiers}); published "
                  f"{summary['outputs']['leads']:,}; review cases {summary['review_cases']:,}; "
                  f"handoffs {summary['handoffs']:,}; labels learned "
                  f"{summary['labels_learned']:,}; alerts: {alerts}", highlight=False)
    if report.profile_answers is not None:
        console.print(report.profile_answers.line(report.settled, report.review_rounds),
                      highlight=False)
    console.print(f"replay {summary['events_per_second']:,} events/s; demo total "
                  f"{time.perf_counter() - started:.1f}s; outputs in {run_dir}/", highlight=False)
    from esg_leads.flows.crm_sync import demo_delivery

    crm = demo_delivery(run_dir / "handoff.parquet", settings)
    console.print(f"[bold]CRM delivery[/bold] (esg-leads crm-sync → a fake CRM with a 429 and "
                  f"every 25th request a 503): {crm['handoffs']:,} handoffs of "
                  f"{crm['investors']:,} investors (queued ones coalesce: the latest is sent), "
                  f"{crm['delivered']:,} delivered in {crm['requests']:,} requests, "
                  f"{crm['in_crm']:,} leads now in the CRM"
                  + ("" if crm["handoffs"] else " (this world qualified no lead for handoff)"),
                  highlight=False)
    if top:
        console.print(f"one lead's story: esg-leads explain --out {run_dir} "
                      f"--recording {world_dir} {top[0]['tenant']}/{top[0]['investor_id']}",
                      highlight=False)
    report = write_report(run_dir, run_dir / "report.html", recording=world_dir)
    console.print(f"[bold]Report[/bold] (open in a browser, works offline): {report}",
                  highlight=False)
    return 0 if summary["reconciled"] else 1
