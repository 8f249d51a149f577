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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.run import cli_main
from bytewax.testing import run_main

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.connectors.parquet_sink import (
    AuditSink,
    ErasedKeys,
    OutputError,
    ParquetSink,
    ensure_writable,
    erased_keys,
)
from esg_leads.connectors.parquet_merge import finalize
from esg_leads.connectors.recording import RecordingReader
from esg_leads.connectors.recording_source import RecordingSource
from esg_leads.connectors.retention import expire_audit, expire_dlq
from esg_leads.flows.pipeline import Sinks, build_flow
from esg_leads.flows.steps import Clock, streaming_gc, system_clock
from esg_leads.flows.telemetry import Telemetry
from esg_leads.schemas.settings import Settings

OUTPUT_KINDS = ("leads", "review", "handoff", "dlq", "alerts", "shadow")


def replay(recording: str | Path, out: str | Path, settings: Settings, *, workers: int = 1,
           progress: Callable[[int, int], None] | None = None,
           clock: Clock = system_clock, listeners: Sequence[object] = (),
           stop: threading.Event | None = None) -> dict:
    """Run the flow over ``recording``; write outputs and ``summary.json`` to ``out``.

    ``listeners`` receive the run's telemetry as it happens (e.g. a Prometheus exporter).
    ``stop``, once set, ends the input early (see the module docstring). Several
    processes: :func:`replay.cluster.replay_cluster`, which shares the steps below.
    """
    settings = replay_settings(settings)
    recording, out = Path(recording), Path(out)
    prepare_output(out)
    run = run_flow(recording, out, settings, workers=workers, progress=progress, clock=clock,
                   listeners=listeners, stop=stop)
    if run.failure is not None:
        raise run.failure
    return write_outputs(settings, recording, out, run.telemetry, emitted=run.emitted,
                         stopped_early=run.stopped_early, seconds=run.seconds)


def replay_settings(settings: Settings) -> Settings:
    """A replay's outcome must not depend on how fast it runs: no wall-clock closes."""
    return settings.model_copy(update={"windows": settings.windows.model_copy(
        update={"idle_close_after": None})})


def prepare_output(out: Path) -> None:
    """Prove ``out`` writable (a typo'd or full --out fails here, before any work) and
    clear the part files an earlier, unfinished run may have left."""
    ensure_writable(out)
    shutil.rmtree(out / ".parts", ignore_errors=True)


def key_vault(settings: Settings, out: Path) -> KeyVault:
    """Dead letters about investors are sealed under keys kept next to the outputs
    (operators/erasure.py); an erasure in the recording destroys its investor's key.

    Always there, never ``dlq.key_store``: that is the live deployment's store, and a
    replay run with the deployment's config must neither destroy live keys (a synthetic
    world's ``inv-1`` erased would shred the real ``inv-1``'s) nor seal by erasures it
    did not read (its letters would depend on the store's past, not on its input)."""
    return KeyVault(out / "dlq-keys.sqlite")


@dataclass
class FlowRun:
    """What one process's run of the flow leaves for :func:`write_outputs`."""

    telemetry: Telemetry
    emitted: int  #: messages this process's source handed to the flow
    stopped_early: bool  #: ``stop`` cut the recording short
    failure: OutputError | None  #: the first output that could not be written
    seconds: float


def tenant_weights(recording: Path, tenants: Sequence[str]) -> dict[str, int]:
    """Each tenant's messages in ``recording`` (its values spelling ``"tenant":"<id>"``,
    as producers of compact JSON do): the weights that place tenants on workers
    (:func:`flows.placement.assign_tenants`). ~2 CPU-s per million messages."""
    needles = [b'"tenant":' + json.dumps(t, ensure_ascii=False).encode() for t in tenants]
    return dict(zip(tenants, RecordingReader(recording).count_containing(needles), strict=True))


def run_flow(recording: Path, out: Path, settings: Settings, *, workers: int = 1,
             progress: Callable[[int, int], None] | None = None,
             clock: Clock = system_clock, listeners: Sequence[object] = (),
             stop: threading.Event | None = None, process_id: int | None = None,
             addresses: Sequence[str] | None = None,
             weights: dict[str, int] | None = None) -> FlowRun:
    """Run the flow of one process over ``recording``, its part files into ``out/.parts``.

    With ``addresses`` (``host:port`` of every process) this process is ``process_id``
    of a bytewax cluster: the recording's one partition is read by one worker of the
    cluster, keyed steps spread over all workers, and each worker writes its own part
    files (numbered by its index in the whole cluster). Tenants are placed on workers
    by ``weights`` (default: :func:`tenant_weights`, counted here).
    """
    parts = out / ".parts"
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
    placement = workers * (len(addresses) if addresses else 1)
    if placement > 1 and weights is None:
        weights = tenant_weights(recording, sorted(settings.tenants))
    erased = ErasedKeys()  # rows of investors erased before they are written never are
    sinks = Sinks(**{kind: ParquetSink(parts, kind, on_error=output_failed, erased=erased)
                     for kind in (*OUTPUT_KINDS, "tombstones")},
                  audit=AuditSink(out / "audit", on_error=output_failed, partitions=placement))
    # Same batch size as a live run reads Kafka with: replay then decides as it did.
    source = RecordingSource(recording, batch_rows=settings.kafka.batch_size, progress=progress,
                             stop=stop)
    keys = key_vault(settings, out)
    # A replay never resumes from snapshots: its keys may be placed (flows/placement.py).
    flow = build_flow(settings, source, sinks, telemetry, clock, keys=keys,
                      placement=placement, snapshots=False, tenant_weights=weights,
                      processes=len(addresses) if addresses else 1)
    started = time.perf_counter()
    # Without recovery, epochs only pace snapshots nobody reads: make them rare.
    epoch = timedelta(hours=1)
    try:
        with streaming_gc():
            if addresses is not None:
                cli_main(flow, workers_per_process=workers, process_id=process_id,
                         addresses=list(addresses), epoch_interval=epoch)
            elif workers == 1:
                run_main(flow, epoch_interval=epoch)
            else:
                cli_main(flow, workers_per_process=workers, epoch_interval=epoch)
    finally:
        keys.close()
    return FlowRun(telemetry, source.emitted, source.stopped_early,
                   failures[0] if failures else None, time.perf_counter() - started)


def write_outputs(settings: Settings, recording: Path, out: Path, telemetry: Telemetry, *,
                  emitted: int, stopped_early: bool, seconds: float,
                  extra: dict | None = None) -> dict:
    """Join the part files into the outputs, apply retention, write ``summary.json``.

    ``telemetry`` holds the counts of every process of the run (merged); ``emitted``
    is what the reading process handed to the flow, the reconciliation's total when
    the input was stopped early. ``extra`` entries are added to the summary.
    """
    parts = out / ".parts"
    messages = RecordingReader(recording).count()
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
        summary = telemetry.summary(outputs, emitted if stopped_early else messages, seconds)
        summary["interrupted"] = stopped_early
        if stopped_early:
            summary["recording_messages"] = messages
        if expired:
            summary["expired"] = expired
        summary.update(extra or {})
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
