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
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from bytewax.run import cli_main
from bytewax.testing import run_main

from connectors.parquet_sink import AuditSink, ParquetSink, erased_keys, finalize
from connectors.recording import RecordingReader
from connectors.recording_source import RecordingSource
from flows.pipeline import Sinks, build_flow
from flows.steps import Clock, streaming_gc, system_clock
from flows.telemetry import Telemetry
from schemas.settings import Settings

OUTPUT_KINDS = ("leads", "review", "handoff", "dlq", "alerts")


def replay(recording: str | Path, out: str | Path, settings: Settings, *, workers: int = 1,
           progress: Callable[[int, int], None] | None = None,
           clock: Clock = system_clock, listeners: Sequence[object] = ()) -> dict:
    """Run the flow over ``recording``; write outputs and ``summary.json`` to ``out``.

    ``listeners`` receive the run's telemetry as it happens (e.g. a Prometheus exporter).
    """
    # A replay's outcome must not depend on how fast it runs: no wall-clock closes.
    settings = settings.model_copy(update={"windows": settings.windows.model_copy(
        update={"idle_close_after": None})})
    recording, out = Path(recording), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = out / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    telemetry = Telemetry()
    telemetry.listeners.extend(listeners)
    sinks = Sinks(**{kind: ParquetSink(parts, kind) for kind in (*OUTPUT_KINDS, "tombstones")},
                  audit=AuditSink(out / "audit"))
    # Same batch size as a live run reads Kafka with: replay then decides as it did.
    source = RecordingSource(recording, batch_rows=settings.kafka.batch_size, progress=progress)
    flow = build_flow(settings, source, sinks, telemetry, clock)
    messages = RecordingReader(recording).count()
    started = time.perf_counter()
    # Without recovery, epochs only pace snapshots nobody reads: make them rare.
    epoch = timedelta(hours=1)
    with streaming_gc():
        if workers == 1:
            run_main(flow, epoch_interval=epoch)
        else:
            cli_main(flow, workers_per_process=workers, epoch_interval=epoch)
    seconds = time.perf_counter() - started
    erased = erased_keys(parts)
    outputs = {kind: finalize(parts, kind, out / f"{kind}.parquet", erased)
               for kind in OUTPUT_KINDS}
    shutil.rmtree(parts, ignore_errors=True)
    summary = telemetry.summary(outputs, messages, seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
