"""``esg-leads run``: the flow as a Kafka service.

Reads every input topic (merged in replay order, see ``connectors.kafka_source``),
writes every output topic, snapshots state to a bytewax recovery directory and
serves Prometheus metrics. On SIGTERM/SIGINT it stops taking input; with recovery
it waits for the current epoch's snapshot, flushes the producers and exits (a
restart resumes from that snapshot); without recovery, where state would be lost
anyway, it drains: open windows close, their leads are published, then it exits.
A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from esg_leads.connectors import kafka_sink, kafka_source
from esg_leads.connectors.kafka_sink import KafkaTopicSink
from esg_leads.connectors.kafka_source import KafkaInput, wait_for_metadata
from esg_leads.connectors.key_vault import KeyVault
from esg_leads.connectors.metrics import PrometheusListener, serve
from esg_leads.connectors.parquet_sink import AuditSink, OutputError, close_audit
from esg_leads.connectors.retention import audit_expiry
from esg_leads.connectors.signals import on_signals
from esg_leads.flows.config import scrubber
from esg_leads.flows.heartbeat import Heartbeat
from esg_leads.flows.logs import say
from esg_leads.flows.pipeline import OUTPUT_KINDS, Sinks, build_flow
from esg_leads.flows.steps import streaming_gc, system_clock
from esg_leads.flows.telemetry import Telemetry
from esg_leads.schemas.settings import DEV_CONTACT_HASH_SALT, Settings
from esg_leads.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS

log = logging.getLogger("esg_leads.run")
#: What the run's own lines start with in text logs.
PREFIX = "esg-leads run: "
#: Seconds between offset commits without recovery (what lag tools see).
COMMIT_INTERVAL = 5.0


def _lag_reporter(telemetry: Telemetry):
    """librdkafka statistics -> consumer lag gauges (topic:partition labels)."""
    import orjson

    class Lag:
        gauges: dict = {}

    lag = Lag()

    def on_stats(raw: str) -> None:
        stats = orjson.loads(raw)
        for topic, info in stats.get("topics", {}).items():
            for partition, p in info.get("partitions", {}).items():
                if partition != "-1" and p.get("consumer_lag", -1) >= 0:
                    lag.gauges[("consumer_lag", f"{topic}:{partition}")] = p["consumer_lag"]
        telemetry.drain(lag)

    return on_stats


def _recovery(settings: Settings) -> RecoveryConfig | None:
    directory = settings.recovery.directory
    if directory is None:
        return None
    path = Path(directory)
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, settings.recovery.partitions)  # first run: empty partitions
    backup = settings.recovery.backup_interval
    return RecoveryConfig(path, backup if backup.total_seconds() else None)


@contextmanager
def _stopping(source: KafkaInput, recovering: bool, epoch_seconds: float) -> Iterator[None]:
    """Within the block, SIGTERM / SIGINT stop the input (a second one: exit at once).

    The work happens on a relay thread, not in a signal handler: a handler calling
    ``STOP.set()`` while the main thread was inside ``STOP.wait`` deadlocked
    (connectors/signals.py)."""
    def stop(signum: int) -> None:
        if kafka_source.STOP.is_set():
            os._exit(130)  # second signal: now
        say(log, PREFIX, f"{signal.Signals(signum).name}: stopping "
            f"({'after the next snapshot' if recovering else 'draining open windows'})")
        kafka_source.STOP.set()

    with on_signals((signal.SIGTERM, signal.SIGINT), stop):
        if recovering:  # whoever stops the input (a signal, the source itself), exit after a snapshot
            threading.Thread(target=_exit_after_snapshot, args=(source, epoch_seconds),
                             daemon=True).start()
        yield


def _exit_after_snapshot(source: KafkaInput, epoch_seconds: float) -> None:
    """With recovery: once the input stopped and every input partition has snapshotted
    twice since (the first snapshot's epoch is then durably written), flush producers
    and exit."""
    kafka_source.STOP.wait()
    deadline = time.monotonic() + 3 * epoch_seconds + 10
    while time.monotonic() < deadline:
        if source.partitions and all(p.epochs_since_stop >= 2 for p in source.partitions):
            break
        time.sleep(0.05)
    left = kafka_sink.flush_all()
    close_audit()
    say(log, PREFIX, f"stopped ({left} messages undelivered)")
    os._exit(_failed_exit() or (0 if left == 0 else 1))


#: Exit code of a run the input stopped because a position was lost (``fail`` policy).
EXIT_OFFSETS_LOST = 3


def _failed_exit() -> int:
    """:data:`EXIT_OFFSETS_LOST` (after one error line) if the source stopped the run."""
    if not kafka_source.FAILED:
        return 0
    say(log, PREFIX, f"error: {kafka_source.FAILED[0]}", logging.ERROR)
    return EXIT_OFFSETS_LOST


def startup_line(settings: Settings, workers: int, metrics_url: str | None) -> str:
    """What this run reads, writes and keeps, with every secret of ``settings`` masked."""
    kafka = settings.kafka
    recovery = settings.recovery
    return scrubber(settings)(
        f"esg-leads run: brokers={kafka.bootstrap_servers} "
        f"inputs={','.join(kafka.topic(t) for t in INPUT_TOPICS)} "
        f"outputs={','.join(kafka.topic(t) for t in OUTPUT_TOPICS)} "
        f"tenants={','.join(settings.tenants)} workers={workers} "
        f"recovery={recovery.directory or 'off'}"
        + (f" (snapshot every {recovery.snapshot_interval.total_seconds():g}s)"
           if recovery.directory else "")
        + f" metrics={metrics_url or 'off'} audit={settings.audit.directory or 'off'}"
    )


def key_store_path(settings: Settings) -> str:
    """Where the dead-letter keys live (``dlq.key_store``; see operators/erasure.py)."""
    if settings.dlq.key_store:
        return settings.dlq.key_store
    if settings.recovery.directory:
        return str(Path(settings.recovery.directory) / "dlq-keys.sqlite")
    return ":memory:"


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator should fix before trusting this deployment."""
    warnings = []
    if key_store_path(settings) == ":memory:":
        warnings.append("dead letters about investors are sealed under keys held in memory "
                        "only: set recovery.directory or dlq.key_store to open them later")
    if settings.contact_hash_salt.get_secret_value() == DEV_CONTACT_HASH_SALT:
        # Hashes under a public salt can be reversed by hashing known e-mail addresses.
        warnings.append("contact_hash_salt is the development default; "
                        "set ESG_LEADS_CONTACT_HASH_SALT for this deployment")
    unsigned = sorted(t for t, cfg in settings.tenants.items() if cfg.erasure_signing_key is None)
    if unsigned:
        warnings.append("erasure requests are accepted unsigned for "
                        + ", ".join(unsigned) + ": set tenants.<id>.erasure_signing_key so "
                        "that only the privacy desk can erase (operators/erasure_auth.py)")
    return warnings


def run(settings: Settings, *, workers: int = 1, until_end: bool = False,
        process_id: int | None = None, addresses: list[str] | None = None,
        summary_path: Path | None = None) -> int:
    """Run the flow against Kafka until stopped (or, with ``until_end``, drained).

    A bounded or drained run writes the same summary as a replay to ``summary_path``.
    """
    kafka = settings.kafka
    config = kafka.client_config()
    telemetry = Telemetry()
    metrics_url = None
    if settings.metrics.port is not None:
        listener = PrometheusListener()
        telemetry.listeners.append(listener)
        port = serve(listener, settings.metrics.port + (process_id or 0), settings.metrics.host)
        metrics_url = f"http://{settings.metrics.host}:{port}/metrics"
    recovery = _recovery(settings)
    say(log, PREFIX, startup_line(settings, workers, metrics_url).removeprefix(PREFIX))
    for warning in startup_warnings(settings):
        say(log, PREFIX, f"WARNING {warning}", logging.WARNING)

    inputs = [kafka.topic(t) for t in INPUT_TOPICS]
    try:
        scrub = scrubber(settings)
        wait_for_metadata(config, inputs,
                          log_fn=lambda m: say(log, PREFIX, scrub(m), logging.WARNING))
    except TimeoutError:
        return 0
    source = _ReportingInput(config, inputs, starting_offset=kafka.starting_offset,
                             batch_size=kafka.batch_size,
                             merge_max_wait_ms=(kafka.merge_max_wait_ms if until_end
                                                else kafka.live_merge_wait_ms),
                             until_end=until_end, on_stats=_lag_reporter(telemetry),
                             group_id=kafka.group_id, on_loss=kafka.offset_reset_on_loss,
                             # With recovery, commits follow snapshots; without, every 5 s.
                             commit_interval=None if recovery is not None else COMMIT_INTERVAL)
    source.recovery_dir = settings.recovery.directory
    source_drains = recovery is None
    kafka_source.DRAIN_ON_STOP = source_drains
    def sent(kind: str, records: int) -> None:
        telemetry.count("published", kind, records)

    sinks = Sinks(
        **{kind: KafkaTopicSink(config, kafka.topic(topic), kind, on_sent=sent)
           for kind, topic in OUTPUT_KINDS.items()},
        # Each topic's sink deletes its own keys: one producer keeps a lead and its
        # erasure's tombstone in order (flows.pipeline.Sinks.tombstones).
        tombstones=None,
        audit=AuditSink(settings.audit.directory, tag=f"-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}",
                        retention=audit_expiry(settings.retention.audit_days, system_clock),
                        on_error=_audit_failed)
        if settings.audit.directory else _discard(),
    )
    flow = build_flow(settings, source, sinks, telemetry, keys=KeyVault(key_store_path(settings)),
                      tick_interval=settings.kafka.tick_interval_ms / 1000,
                      snapshots=recovery is not None)
    # Epochs pace snapshots; without recovery nobody reads them, and bytewax still
    # takes them (deep copies of window state included): make them rare.
    epoch = settings.recovery.snapshot_interval if recovery is not None else timedelta(hours=1)
    with _stopping(source, recovery is not None, epoch.total_seconds()):
        started = time.perf_counter()
        heartbeat = Heartbeat(telemetry.pulse, settings.logging.heartbeat.total_seconds(),
                              lambda message, fields: say(log, PREFIX, message, **fields)).start()
        try:
            with streaming_gc():
                cli_main(flow, workers_per_process=workers, process_id=process_id,
                         addresses=addresses, epoch_interval=epoch, recovery_config=recovery)
        finally:
            heartbeat.stop()
        left = kafka_sink.flush_all()
        if kafka_source.FAILED:
            return _failed_exit()
        seconds = time.perf_counter() - started
        summary = telemetry.summary(telemetry.per_topic("published"),
                                    sum(telemetry.per_topic("in").values()), seconds)
        if summary_path is not None:
            import json

            Path(summary_path).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        say(log, PREFIX, f"done: {summary['messages']:,} messages in {seconds:.1f}s; outputs "
            f"{summary['outputs']}; reconciled: {'yes' if summary['reconciled'] else 'NO'}")
        return 0 if left == 0 else 1


def _audit_failed(path: Path, error: OSError) -> None:
    """An audit file cannot be written (disk full, directory gone): exit 2 with one line,
    before the epoch that lacks these rows is committed — a restart redoes it."""
    say(log, PREFIX, f"error: {OutputError(path, error)}", logging.ERROR)
    kafka_sink.flush_all()  # what was published stays published (consumers dedup)
    os._exit(2)


def start_position(resume_state: dict | None, recovery_dir: str | None,
                   starting_offset: str) -> str:
    """Where the input starts: the snapshot's positions when resuming, else the policy.

    >>> start_position({"lead.events:1": 120, "lead.events:0": 98}, "/data/r", "beginning")
    'resumed from the snapshot in /data/r: lead.events:0@98, lead.events:1@120'
    >>> start_position(None, "/data/r", "end")
    'no snapshot in /data/r yet: starting at the end of every input partition'
    """
    if not resume_state:
        where = f"no snapshot in {recovery_dir} yet" if recovery_dir else "recovery off"
        return f"{where}: starting at the {starting_offset} of every input partition"

    def shown(offset: int) -> str:
        return {OFFSET_BEGINNING: "beginning", OFFSET_END: "end"}.get(offset, str(offset))

    def order(key: str) -> tuple[str, int]:
        topic, _, partition = key.rpartition(":")
        return topic, int(partition) if partition.isdigit() else -1

    positions = [f"{key}@{shown(resume_state[key])}" for key in sorted(resume_state, key=order)]
    more = f" (+{len(positions) - 12} more)" if len(positions) > 12 else ""
    return f"resumed from the snapshot in {recovery_dir}: {', '.join(positions[:12])}{more}"


class _ReportingInput(KafkaInput):
    """The Kafka input, saying once where it starts: resumed from a snapshot (and the
    positions it holds), or the first run's starting offset."""

    recovery_dir: str | None = None

    def build_part(self, step_id: str, for_part: str, resume_state: dict | None):
        part = super().build_part(step_id, for_part, resume_state)
        say(log, PREFIX, start_position(resume_state, self.recovery_dir,
                                        "beginning" if self.start == OFFSET_BEGINNING else "end"),
            resumed=bool(resume_state))
        return part


def _discard():
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    class _Nothing(StatelessSinkPartition):
        def write_batch(self, items: list) -> None:
            pass

    class Discard(DynamicSink):
        def build(self, *args) -> _Nothing:  # noqa: ANN002
            return _Nothing()

    return Discard()
