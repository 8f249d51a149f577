"""``esg-leads replay``: the very same ``build_flow`` over a recording, into Parquet.

Writes ``leads.parquet``, ``review.parquet``, ``handoff.parquet``, ``dlq.parquet``,
``alerts.parquet``, the audit trail under ``audit/`` (partitioned by tenant and
date) and ``summary.json`` into the output directory. The summary reconciles every
input topic: messages in = messages used + messages dead-lettered. Replaying into an
existing output directory upserts by idempotency key, as a topic consumer would.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bytewax.run import cli_main
from bytewax.testing import run_main

from connectors.parquet_sink import AuditSink, ParquetSink, erased_keys, finalize
from connectors.recording import RecordingReader
from connectors.recording_source import RecordingSource
from flows.pipeline import Sinks, build_flow
from flows.steps import Clock, system_clock, tune_gc
from flows.telemetry import Telemetry
from schemas.settings import Settings

OUTPUT_KINDS = ("leads", "review", "handoff", "dlq", "alerts")


def summarise(telemetry: Telemetry, outputs: dict[str, int], messages: int,
              seconds: float) -> dict:
    """The run summary: per-topic reconciliation, dead letters by reason, stage counts."""
    inputs = telemetry.per_topic("in")
    used = telemetry.per_topic("used")
    topics = {}
    for topic in sorted(inputs):
        reasons = {r: n for (t, r), n in sorted(telemetry.dlq.items()) if t == topic}
        dead = sum(reasons.values())
        topics[topic] = {
            "in": inputs[topic],
            "used": used.get(topic, 0),
            "dead_lettered": dead,
            "dlq_by_reason": reasons,
            "reconciled": inputs[topic] == used.get(topic, 0) + dead,
        }
    by_reason: dict[str, int] = {}
    for (_, reason), n in telemetry.dlq.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    stages = {
        stage: {"items": telemetry.stage_items[stage],
                "seconds": round(telemetry.stage_seconds[stage], 3)}
        for stage in sorted(telemetry.stage_items)
    }
    return {
        "messages": messages,
        "wall_seconds": round(seconds, 3),
        "events_per_second": round(messages / seconds) if seconds else None,
        "reconciled": all(t["reconciled"] for t in topics.values()),
        "topics": topics,
        "dlq_by_reason": dict(sorted(by_reason.items())),
        "outputs": outputs,
        "leads_by_tier": telemetry.per_topic("leads"),
        "lead_states_emitted": telemetry.per_topic("state"),
        "review_cases": sum(telemetry.per_topic("review_cases").values()),
        "handoffs": sum(telemetry.per_topic("handoffs").values()),
        "quiet_rescores": sum(telemetry.per_topic("lifecycle_quiet").values()),
        "alerts_by_kind": telemetry.per_topic("alerts"),
        "feature_vectors": sum(telemetry.per_topic("feature_vectors").values()),
        "labels_learned": sum(telemetry.per_topic("labels").values()),
        "outcomes_without_score": sum(telemetry.per_topic("outcomes_without_score").values()),
        "stages": stages,
    }


def replay(recording: str | Path, out: str | Path, settings: Settings, *, workers: int = 1,
           progress: Callable[[int, int], None] | None = None,
           clock: Clock = system_clock) -> dict:
    """Run the flow over ``recording``; write outputs and ``summary.json`` to ``out``."""
    recording, out = Path(recording), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = out / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    telemetry = Telemetry()
    sinks = Sinks(**{kind: ParquetSink(parts, kind) for kind in (*OUTPUT_KINDS, "tombstones")},
                  audit=AuditSink(out / "audit"))
    flow = build_flow(settings, RecordingSource(recording, progress=progress), sinks,
                      telemetry, clock)
    messages = RecordingReader(recording).count()
    tune_gc()
    started = time.perf_counter()
    # Without recovery, epochs only pace snapshots nobody reads: make them rare.
    epoch = timedelta(hours=1)
    if workers == 1:
        run_main(flow, epoch_interval=epoch)
    else:
        cli_main(flow, workers_per_process=workers, epoch_interval=epoch)
    seconds = time.perf_counter() - started
    erased = erased_keys(parts)
    outputs = {kind: finalize(parts, kind, out / f"{kind}.parquet", erased)
               for kind in OUTPUT_KINDS}
    shutil.rmtree(parts, ignore_errors=True)
    summary = summarise(telemetry, outputs, messages, seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
