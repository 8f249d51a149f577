"""End-to-end replay throughput, and the no-framework limit of the same operators.

    python bench/replay_throughput.py [--recording DIR | --investors 28000 --days 60]

1. ``esg-leads replay`` (bytewax, one worker) over the recording: events/s.
2. The same operator objects — parser, property catalog, investor windows, investor
   shards, tenant scorers, global learner, lifecycle — called in a plain Python loop
   with the same keying and batching, and outputs encoded as the sinks would:
   events/s and time per stage.
3. Their ratio (bytewax / plain loop).

Run it on an idle machine; both figures come from the same run, so their ratio is
meaningful even when the absolute numbers are not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import orjson

from esg_leads.connectors.recording import RecordingReader
from esg_leads.flows.config import load_settings
from esg_leads.flows.steps import shard_key, streaming_gc
from esg_leads.operators.investor_state import InvestorShard
from esg_leads.operators.investor_window import InvestorWindows
from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.operators.property_catalog import PropertyCatalog
from esg_leads.operators.scoring import GlobalLearner, TenantScorer
from esg_leads.operators.validation import Parser
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.records import (
    FeatureVector,
    GlobalModelUpdate,
    Ingested,
    InvestorNotice,
    InvestorWindow,
    LabelledExample,
)
from esg_leads.schemas.settings import Settings

CATALOG = {"esg.property-signals", "investor.engagements", "investor.erasure"}
INVESTOR = {"investor.profiles", "crm.outcomes", "investor.erasure"}


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, stage: str, fn, *args):
        started = time.perf_counter()
        result = fn(*args)
        self.seconds[stage] += time.perf_counter() - started
        return result


def group(items, key) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


def plain_loop(recording: Path, settings: Settings) -> tuple[int, float, dict[str, float], int]:
    """The flow's operators without bytewax. Returns (messages, seconds, stages, leads).

    Same keys, same batch size, same operators; outputs encoded as the sinks encode them.
    """
    watch = Stopwatch()
    parser = Parser(settings.tenants)
    catalogs: dict[str, PropertyCatalog] = {}
    shards: dict[str, InvestorShard] = {}
    scorers: dict[str, TenantScorer] = {}
    lifecycles: dict[str, LifecycleShard] = {}
    global_learner = GlobalLearner(settings)
    windows: dict[str, InvestorWindows] = {}
    n_shards = settings.windows.shards_per_tenant
    leads = 0

    def route_windows(closed: list, investor_inputs: dict) -> None:
        for window in closed:
            if isinstance(window, InvestorWindow):
                investor_inputs[shard_key(window.tenant, window.investor_id, n_shards)].append(window)
            else:
                sink([window])

    def sink(records: list) -> None:
        started = time.perf_counter()
        for record in records:
            orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)
        watch.seconds["sinks"] += time.perf_counter() - started

    def downstream(investor_inputs: dict, lifecycle_inputs: dict, now: datetime) -> int:
        investor_out = []
        for key, items in investor_inputs.items():
            shard = shards.get(key) or shards.setdefault(key, InvestorShard(settings))
            investor_out.extend(watch.time("investors", shard.process, items, now))
        scoring_in = [i for i in investor_out if isinstance(i, (FeatureVector, LabelledExample))]
        for notice in (i for i in investor_out if isinstance(i, InvestorNotice)):
            lifecycle_inputs[shard_key(notice.tenant, notice.investor_id, n_shards)].append(notice)
        sink([i for i in investor_out if isinstance(i, dict)])
        labels = [i for i in scoring_in if isinstance(i, LabelledExample)]
        for model, n in watch.time("global_model", global_learner.process, labels, now):
            for tenant in settings.tenants:
                scoring_in.append(GlobalModelUpdate(tenant, model, n))
        for tenant, batch in group(scoring_in, lambda i: i.tenant).items():
            scorer = scorers.get(tenant) or scorers.setdefault(tenant, TenantScorer(tenant, settings))
            for item in watch.time("scoring", scorer.process, batch, now):
                if isinstance(item, dict):
                    sink([item])
                else:
                    record = item.record
                    key = shard_key(record["tenant"], record["investor_id"], n_shards)
                    lifecycle_inputs[key].append(item)
        published = 0
        for key, items in lifecycle_inputs.items():
            stage = lifecycles.get(key) or lifecycles.setdefault(key, LifecycleShard(settings))
            emitted = watch.time("lifecycle", stage.process, items, now)
            sink([e.record for e in emitted if e.record is not None])
            published += sum(1 for e in emitted if e.kind == "leads")
        return published

    started = time.perf_counter()
    messages = 0
    for batch in RecordingReader(recording, batch_rows=settings.kafka.batch_size).iter_batches():
        messages += len(batch)
        now = datetime.now(timezone.utc)
        parsed = watch.time("parse", parser.parse_batch, batch, now)
        sink([p for p in parsed if isinstance(p, dict)])
        valid = [p for p in parsed if isinstance(p, Ingested)]
        investor_inputs: dict[str, list] = defaultdict(list)
        lifecycle_inputs: dict[str, list] = defaultdict(list)
        for tenant, items in group([v for v in valid if v.topic in CATALOG], lambda i: i.tenant).items():
            catalog = catalogs.get(tenant) or catalogs.setdefault(tenant, PropertyCatalog(settings))
            engagements = []
            for item in watch.time("catalog", catalog.process, items, now):
                if isinstance(item, dict):
                    sink([item])
                elif item.ingested.event.action == "unsubscribe":
                    event = item.ingested.event
                    investor_inputs[shard_key(tenant, event.investor_id, n_shards)].append(item.ingested)
                else:
                    engagements.append(item)
            stage = windows.get(tenant) or windows.setdefault(tenant, InvestorWindows(tenant, settings))
            route_windows(watch.time("windows", stage.process, engagements, now), investor_inputs)
        for v in valid:
            if v.topic in INVESTOR:
                investor_inputs[shard_key(v.tenant, v.event.investor_id, n_shards)].append(v)
            elif v.topic == "lead.review-decisions":
                lifecycle_inputs[shard_key(v.tenant, v.event.investor_id, n_shards)].append(v)
        leads += downstream(investor_inputs, lifecycle_inputs, now)
    # End of stream: every window closes.
    investor_inputs = defaultdict(list)
    for stage in windows.values():
        route_windows(stage.flush(datetime.now(timezone.utc)), investor_inputs)
    leads += downstream(investor_inputs, defaultdict(list), datetime.now(timezone.utc))
    seconds = time.perf_counter() - started
    return messages, seconds, dict(watch.seconds), leads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, default=None)
    parser.add_argument("--investors", type=int, default=28000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="esg-bench-"))
    try:
        recording = args.recording
        if recording is None:
            recording = tmp / "world"
            report = generate(WorldSpec(investors=args.investors, days=args.days, seed=args.seed,
                                        properties=args.investors // 10), recording)
            print(f"generated {report.messages:,} messages in {report.seconds:.1f}s "
                  f"({report.events_per_second:,.0f} events/s)")
        config = recording / "config.toml"
        settings = load_settings(config if config.exists() else None)

        summary = replay(recording, tmp / "run", settings)
        flow_eps = summary["messages"] / summary["wall_seconds"]
        print(f"bytewax flow : {summary['messages']:,} messages in {summary['wall_seconds']:.1f}s "
              f"= {flow_eps:,.0f} events/s ({summary['outputs']['leads']:,} leads)")
        print("  stage seconds (operator time inside bytewax): "
              + json.dumps({k: v["seconds"] for k, v in summary["stages"].items()}))

        with streaming_gc():  # as the flow runs
            messages, seconds, stages, leads = plain_loop(recording, settings)
        loop_eps = messages / seconds
        print(f"plain loop   : {messages:,} messages in {seconds:.1f}s = {loop_eps:,.0f} events/s "
              f"({leads:,} leads)")
        print("  stage seconds: " + json.dumps({k: round(v, 2) for k, v in sorted(stages.items())}))
        print(f"ratio flow/plain: {flow_eps / loop_eps:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
