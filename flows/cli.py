"""The ``esg-leads`` command line: one sub-command per job, each a thin shell.

Heavy imports (bytewax, river, pyarrow) happen inside the sub-command that needs
them, so ``esg-leads schema`` answers instantly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from flows.models_cli import add_commands as add_model_commands, model_overrides

EXIT_USAGE = 2


class UsageError(Exception):
    """A user mistake (bad flag value, invalid config), or an output that cannot be
    written (full disk, read-only directory): one clear line, exit code 2."""


# ----------------------------------------------------------------------- schema


def cmd_schema(args: argparse.Namespace) -> int:
    from schemas.codec import json_schema
    from schemas.topics import ALL_TOPICS

    if args.topic is not None:
        if args.topic not in ALL_TOPICS:
            raise UsageError(f"unknown topic {args.topic!r}; topics: {', '.join(ALL_TOPICS)}")
        print(json.dumps(json_schema(args.topic), indent=2))
    else:
        print(json.dumps({topic: json_schema(topic) for topic in ALL_TOPICS}, indent=2))
    return 0


# --------------------------------------------------------------------- generate


def _world_spec(args: argparse.Namespace):
    from replay.simulate import WorldSpec

    try:
        return WorldSpec(
            tenants=args.tenants,
            investors=args.investors,
            properties=args.properties if args.properties is not None else max(
                args.tenants, args.investors // 10),
            days=args.days,
            seed=args.seed,
            malformed_rate=args.malformed_rate,
            drift_at=args.drift_at,
            partitions=args.partitions,
            reviewers=getattr(args, "reviewers", "on") == "on",
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    from flows.progress import Progress
    from replay.generator import generate

    spec = _world_spec(args)
    with Progress("generating", total=spec.days, unit="days") as progress:
        report = generate(spec, args.out, progress=progress.update, overwrite=args.overwrite)
    print(
        f"wrote {report.messages:,} messages ({report.malformed:,} malformed, "
        f"{report.duplicates:,} duplicates) for {report.investors:,} investors to {args.out} "
        f"in {report.seconds:.1f}s ({report.events_per_second:,.0f} events/s)",
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------------- replay


def _settings(config: Path | None, overrides: dict | None = None):
    from flows.config import ConfigError, load_settings

    try:
        return load_settings(config_file=config, overrides=overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def cmd_replay(args: argparse.Namespace) -> int:
    from flows.progress import Progress
    from replay.runner import replay

    if not args.recording.is_dir():
        raise UsageError(f"no recording at {args.recording}")
    config = args.config
    if config is None and (args.recording / "config.toml").exists():
        config = args.recording / "config.toml"
        print(f"using {config} (the generated world's tenants)", file=sys.stderr)
    settings = _settings(config, model_overrides(args))
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.processes > 1 and args.metrics_port is not None:
        raise UsageError("--metrics-port serves one process's counters: use it without "
                         "--processes (summary.json merges every process's)")
    listeners = []
    if args.metrics_port is not None:
        from connectors.metrics import PrometheusListener, serve

        listeners.append(PrometheusListener())
        port = serve(listeners[0], args.metrics_port, settings.metrics.host)
        print(f"metrics on http://{settings.metrics.host}:{port}/metrics", file=sys.stderr)
    stop, received = threading.Event(), []

    def on_signal(signum: int, frame: object) -> None:
        if received:  # a second signal: now, without outputs
            os._exit(128 + signum)
        received.append(signum)
        print(f"esg-leads replay: {signal.Signals(signum).name}: stopping; writing the outputs "
              "of what was read so far (again to quit at once)", file=sys.stderr, flush=True)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Progress("replaying", total=1, unit="messages") as progress:
            if args.processes == 1:
                summary = replay(args.recording, args.out, settings, workers=args.workers,
                                 progress=progress.update, listeners=listeners, stop=stop)
            else:
                from replay.cluster import ClusterError, replay_cluster

                try:
                    summary = replay_cluster(args.recording, args.out, settings,
                                             processes=args.processes, workers=args.workers,
                                             progress=progress.update, stop=stop)
                except ClusterError as error:
                    print(f"esg-leads replay: error: {error}", file=sys.stderr)
                    return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    cut = (f"; INTERRUPTED after {summary['messages']:,} of "
           f"{summary['recording_messages']:,} messages" if summary["interrupted"] else "")
    print(
        f"{summary['messages']:,} messages in {summary['wall_seconds']:.1f}s "
        f"({summary['events_per_second']:,} events/s): {summary['outputs']['leads']:,} leads, "
        f"{summary['outputs']['dlq']:,} dead letters, {summary['outputs']['alerts']:,} alerts; "
        f"reconciled: {'yes' if summary['reconciled'] else 'NO'}{cut}. Outputs in {args.out}",
        file=sys.stderr,
    )
    if received:
        return 128 + received[0]
    return 0 if summary["reconciled"] else 1


# ------------------------------------------------------------------ run / config


def _run_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if getattr(args, "bootstrap", None):
        overrides.setdefault("kafka", {})["bootstrap_servers"] = args.bootstrap
    if getattr(args, "recovery_dir", None):
        overrides.setdefault("recovery", {})["directory"] = str(args.recovery_dir)
    if getattr(args, "metrics_port", None) is not None:
        overrides.setdefault("metrics", {})["port"] = args.metrics_port
    return overrides | model_overrides(args)


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from flows.run import run

    from flows.config import scrubber

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    settings = _settings(args.config, _run_overrides(args))
    for handler in logging.getLogger().handlers:  # no log line carries a secret
        handler.addFilter(scrubber(settings))
    from connectors.parquet_sink import ensure_writable

    for directory in (settings.audit.directory, settings.recovery.directory):
        if directory is not None:  # full or read-only: one line and exit 2, now
            ensure_writable(directory)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    addresses = args.addresses.split(";") if args.addresses else None
    from confluent_kafka import KafkaError, KafkaException

    try:
        return run(settings, workers=args.workers, until_end=args.until_end,
                   process_id=args.process_id, addresses=addresses, summary_path=args.summary)
    except KafkaException as error:
        # librdkafka refuses its configuration when a client is created (a Java-only
        # key such as sasl.jaas.config, a bad value): the operator's mistake, one line.
        if error.args[0].code() != KafkaError._INVALID_ARG:
            raise
        raise UsageError("invalid Kafka client setting (kafka.client / kafka.secrets): "
                         + scrubber(settings)(error.args[0].str())) from None


def cmd_config(args: argparse.Namespace) -> int:
    from flows.config import masked

    print(json.dumps(masked(_settings(args.config, _run_overrides(args))), indent=2))
    return 0


# ---------------------------------------------------------------- broker / produce


def cmd_broker(args: argparse.Namespace) -> int:
    from connectors.dev_broker import run_forever
    from schemas.topics import ALL_TOPICS

    if args.brokers < 1:
        raise UsageError("--brokers must be at least 1")
    if args.partitions < 1:
        raise UsageError("--partitions must be at least 1")
    run_forever(args.brokers, args.port, list(ALL_TOPICS), args.partitions)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from connectors.publish import publish_recording
    from flows.progress import Progress

    if not args.recording.is_dir():
        raise UsageError(f"no recording at {args.recording}")
    if args.speed is not None and args.speed <= 0:
        raise UsageError("--speed must be positive")
    with Progress("publishing", total=1, unit="messages") as progress:
        result = publish_recording(args.recording, args.bootstrap, speed=args.speed,
                                   progress=progress.update)
    print(f"published {result['messages']:,} messages in {result['seconds']:.1f}s "
          f"({result['messages_per_s']:,.0f}/s) to {args.bootstrap}", file=sys.stderr)
    for topic, dropped in sorted((result["evicted"] or {}).items()):
        if dropped:
            print(f"warning: {topic}: the broker has already dropped {dropped:,} of the messages "
                  "just published (its log start moved past them); a consumer will not see "
                  "them. The dev broker keeps ~5 MB per partition: give it more "
                  "(esg-leads broker --partitions N), consume as you publish (start "
                  "esg-leads run first), or use a real cluster",
                  file=sys.stderr)
    return 0


# ------------------------------------------------------------------ record / diff


def cmd_record(args: argparse.Namespace) -> int:
    from flows.progress import Progress
    from replay.record import record
    from schemas.topics import INPUT_TOPICS

    if not args.until_end and args.duration is None:
        raise UsageError("say when to stop: --until-end or --duration S")
    settings = _settings(args.config, _run_overrides(args))
    topics = args.topics or [settings.kafka.topic(t) for t in INPUT_TOPICS]
    with Progress("recording", total=1, unit="messages") as progress:
        result = record(settings.kafka.client_config(), topics, args.out,
                        until_end=args.until_end, duration=args.duration,
                        overwrite=args.overwrite, progress=progress.update)
    print(f"recorded {result['messages']:,} messages from {len(topics)} topics to {args.out} "
          f"in {result['seconds']:.1f}s", file=sys.stderr)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from replay.diff import compare, load_run, render

    for run in (args.run_a, args.run_b):
        if not run.is_dir():
            raise UsageError(f"no run outputs at {run}")
    report = compare(load_run(args.run_a), load_run(args.run_b))
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0 if report["equal"] else 1


# ----------------------------------------------------------------------- explain


def cmd_explain(args: argparse.Namespace) -> int:
    from flows.explain import explain

    if not args.out.is_dir():
        raise UsageError(f"no run outputs at {args.out}")
    return explain(args.out, args.investor_id, recording=args.recording)


# --------------------------------------------------------------- review-decision


def cmd_review_decision(args: argparse.Namespace) -> int:
    from flows.review_decision import DecisionError, run

    try:
        return run(args)
    except DecisionError as error:
        raise UsageError(str(error)) from None


# ------------------------------------------------------------------------ demo


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, investors=args.investors, days=args.days)


# ------------------------------------------------------------------------ main


def _add_world_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenants", type=int, default=3)
    p.add_argument("--investors", type=int, default=2000)
    p.add_argument("--properties", type=int, default=None,
                   help="default: one per ten investors")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--malformed-rate", type=float, default=0.01)
    p.add_argument("--drift-at", type=float, default=None, metavar="DAY")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--reviewers", choices=("on", "off"), default="on",
                   help="reviewer teams decide the flow's review cases (signed decisions on "
                        "lead.review-decisions); on replays the world through the flow in "
                        "rounds while generating")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esg-leads",
        description="Streaming qualification of real-estate investor leads by ESG fit.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("schema", help="print the JSON Schema of every topic (or one)")
    p.add_argument("topic", nargs="?")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("generate", help="write a seeded synthetic world as a recording")
    _add_world_flags(p)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("replay", help="run the flow over a recording into Parquet outputs")
    p.add_argument("recording", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--workers", type=int, default=1, help="worker threads per process")
    p.add_argument("--processes", type=int, default=1,
                   help="local processes, one bytewax cluster (decisions do not change)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML settings (default: RECORDING/config.toml if present)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve /metrics while replaying (0: any free port)")
    p.set_defaults(func=cmd_replay)

    def run_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=None, help="TOML settings file")
        p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
        p.add_argument("--recovery-dir", type=Path, default=None)
        p.add_argument("--metrics-port", type=int, default=None)

    p = sub.add_parser("run", help="run the flow against Kafka (production mode)")
    run_flags(p)
    p.add_argument("--workers", type=int, default=1, help="worker threads in this process")
    p.add_argument("--process-id", type=int, default=None,
                   help="this process's index in a multi-process cluster")
    p.add_argument("--addresses", default=None,
                   help="host:port of every process in the cluster, ';'-separated")
    p.add_argument("--until-end", action="store_true",
                   help="stop when the input partitions reach the end they had at start")
    p.add_argument("--summary", type=Path, default=None,
                   help="write the run summary (reconciliation, counts) here on exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    run_flags(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("broker", help="a Kafka-protocol broker on loopback for development")
    p.add_argument("--port", type=int, default=9092,
                   help="fixed bootstrap port (a loopback forwarder to the mock brokers)")
    p.add_argument("--brokers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=3,
                   help="partitions of each topic; the mock keeps ~5 MB per partition")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("produce", help="publish a recording to Kafka")
    p.add_argument("recording", type=Path)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--speed", type=float, default=None,
                   help="X times the recorded pace (default: as fast as possible)")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("record", help="record Kafka topics into a recording")
    run_flags(p)
    p.add_argument("--topics", nargs="+", default=None, help="default: every input topic")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--until-end", action="store_true",
                   help="stop at the end each partition had when recording started")
    p.add_argument("--duration", type=float, default=None, metavar="S")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("diff", help="compare two runs' outputs (exit 0 when equal)")
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("explain", help="print one lead's whole story from a run's outputs")
    p.add_argument("investor_id")
    p.add_argument("--out", required=True, type=Path, help="the run's output directory")
    p.add_argument("--recording", type=Path, default=None,
                   help="the recording it ran on, to show what each input event was")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("review-decision",
                       help="sign a reviewer's verdict on a case; print it or publish it")
    from flows.review_decision import add_arguments  # light: no Kafka import until used

    add_arguments(p)
    p.set_defaults(func=cmd_review_decision)

    p = sub.add_parser("demo", help="generate a small world, run the flow, show the top leads")
    p.add_argument("--out", type=Path, default=Path(".demo"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--investors", type=int, default=3000)
    p.add_argument("--days", type=int, default=45)
    p.set_defaults(func=cmd_demo)

    from flows.crm_commands import add_commands as add_crm_commands  # crm-sync, webhooks, fake-crm

    add_crm_commands(sub)
    from flows.report import add_command as add_report_command  # esg-leads report

    add_report_command(sub)
    add_model_commands(sub)  # train, models; --model/--registry on replay and run
    return parser



def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"esg-leads {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        from connectors.parquet_sink import OutputError

        if not isinstance(error, OutputError):
            raise
        print(f"esg-leads {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
