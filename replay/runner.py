"""``esg-leads replay``: the very same ``build_flow`` over a recording, into Parquet.

Writes ``leads.parquet``, ``review.parquet``, ``handoff.parquet``, ``dlq.parquet``,
``alerts.parquet``, the audit trail under ``audit/`` (partitioned by tenant and
date) and ``summary.json`` into the output directory. The summary reconciles every
input topic: messages in = messages used + messages dead-lettered. Replaying into an
existing output directory upserts by idempotency key, as a topic consumer would.

A ``stop`` event (``esg-leads replay`` sets it on SIGINT/SIGTERM) ends the input
where it is: the flow finishes what it has read, the outputs and the summary are
written for that part — marked ``"interrupted": true`` and reconciled over the
messages read. An output that cannot be written (full disk, read-only directory)
stops the input the same way and raises :class:`~connectors.parquet_sink.OutputError`
naming the path; nothing is finalized then.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.run import cli_main
from bytewax.testing import run_main

from connectors.key_vault import KeyVault
from connectors.parquet_sink import (
    AuditSink,
    OutputError,
    ParquetSink,
    ensure_writable,
    erased_keys,
    finalize,
)
from connectors.recording import RecordingReader
from connectors.recording_source import RecordingSource
from connectors.retention import expire_audit, expire_dlq
from flows.pipeline import Sinks, build_flow
from flows.steps import Clock, streaming_gc, system_clock
from flows.telemetry import Telemetry
from schemas.settings import Settings

OUTPUT_KINDS = ("leads", "review", "handoff", "dlq", "alerts")


def replay(recording: str | Path, out: str | Path, settings: Settings, *, workers: int = 1,
           progress: Callable[[int, int], None] | None = None,
           clock: Clock = system_clock, listeners: Sequence[object] = (),
           stop: threading.Event | None = None) -> dict:
    """Run the flow over ``recording``; write outputs and ``summary.json`` to ``out``.

    ``listeners`` receive the run's telemetry as it happens (e.g. a Prometheus exporter).
    ``stop``, once set, ends the input early (see the module docstring).
    """
    # A replay's outcome must not depend on how fast it runs: no wall-clock closes.
    settings = settings.model_copy(update={"windows": settings.windows.model_copy(
        update={"idle_close_after": None})})
    recording, out = Path(recording), Path(out)
    ensure_writable(out)  # a typo'd or full --out fails here, before any work
    parts = out / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    stop = stop if stop is not None else threading.Event()
    failures: list[OutputError] = []
    lock = threading.Lock()  # sinks of several workers may fail at once

    def output_failed(path: Path, error: OSError) -> None:
        with lock:
            if not failures:
                failures.append(OutputError(path, error))
        stop.set()  # read no more: nothing more can be written

    telemetry = Telemetry()
    telemetry.listeners.extend(listeners)
    sinks = Sinks(**{kind: ParquetSink(parts, kind, on_error=output_failed)
                     for kind in (*OUTPUT_KINDS, "tombstones")},
                  audit=AuditSink(out / "audit", on_error=output_failed))
    # Same batch size as a live run reads Kafka with: replay then decides as it did.
    source = RecordingSource(recording, batch_rows=settings.kafka.batch_size, progress=progress,
                             stop=stop)
    # Dead letters about investors are sealed under keys kept next to the outputs
    # (operators/erasure.py); an erasure in the recording destroys its investor's key.
    keys = KeyVault(settings.dlq.key_store or out / "dlq-keys.sqlite")
    flow = build_flow(settings, source, sinks, telemetry, clock, keys=keys)
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
    keys.close()
    if failures:
        raise failures[0]
    outputs = {}
    target = parts
    try:
        erased = erased_keys(parts)
        for kind in OUTPUT_KINDS:
            target = out / f"{kind}.parquet"
            outputs[kind] = finalize(parts, kind, target, erased)
        shutil.rmtree(parts, ignore_errors=True)
        expired = _apply_retention(settings, recording, out)
        outputs["dlq"] -= expired.get("dead_letters", 0)
        summary = telemetry.summary(outputs, source.emitted if source.stopped_early else messages,
                                    seconds)
        summary["interrupted"] = source.stopped_early
        if source.stopped_early:
            summary["recording_messages"] = messages
        if expired:
            summary["expired"] = expired
        target = out / "summary.json"
        target.write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as error:
        raise OutputError(target, error) from None
    return summary


def newest_message(recording: Path) -> datetime | None:
    """Timestamp of the recording's newest message (its manifest, else its segments)."""
    reader = RecordingReader(recording)
    newest = (reader.manifest or {}).get("max_timestamp_ms")
    if newest is None:
        stamps = [pq.read_table(p, columns=["timestamp"]).column(0) for p in
                  sorted(recording.glob("segment-*.parquet"))]
        values = [pc.max(s).as_py() for s in stamps if len(s)]
        return max(values) if values else None
    return datetime.fromtimestamp(newest / 1000, tz=timezone.utc)


def _apply_retention(settings: Settings, recording: Path, out: Path) -> dict[str, int]:
    """``retention.audit_days`` / ``dlq_days`` over the replay's output, measured back
    from the recording's newest message (see connectors/retention.py)."""
    retention = settings.retention
    if retention.audit_days is None and retention.dlq_days is None:
        return {}
    newest = newest_message(recording)
    if newest is None:
        return {}
    reference = newest.astimezone(timezone.utc).date()
    expired = {}
    if retention.audit_days is not None:
        expired["audit_partitions"] = len(expire_audit(out / "audit", reference,
                                                       retention.audit_days))
    if retention.dlq_days is not None:
        expired["dead_letters"] = expire_dlq(out / "dlq.parquet", reference, retention.dlq_days)
    return expired
