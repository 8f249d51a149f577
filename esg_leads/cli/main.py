"""The ``esg-leads`` command line: one sub-command per job, each a thin shell.

Heavy imports (bytewax, river, pyarrow) happen inside the sub-command that needs
them, so ``esg-leads schema`` answers instantly.

A user never sees a traceback: a mistake (bad flag value, missing file, a directory
that is not a recording, output already there) is :class:`UsageError`, one line and
exit 2; a failure of the world outside (an unreachable broker after the retry budget)
is :class:`Failure`, one line and exit 1; a closed pipe (``esg-leads schema | head``)
ends silently; anything else is a bug, one line naming it and exit 70 (``--traceback``
shows where). Argument parsing lives in ``esg_leads/cli/args.py``.
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

from esg_leads.cli.args import (
    COMMON_OVERRIDES,
    EXIT_BUG,
    EXIT_FAILURE,
    EXIT_PIPE,
    EXIT_USAGE,
    USER_ERRNOS,
    Failure,
    Parser,
    UsageError,
    check_out,
    check_run_outputs,
    describe_os_error,
    effective_settings,
    fraction,
    lead_name,
    nonneg_int,
    open_recording,
    package_version,
    port,
    positive_float,
    positive_int,
    print_error,
    tenant_id,
)
from esg_leads.cli.models import add_commands as add_model_commands
from esg_leads.cli.kafka_commands import cmd_broker, cmd_produce, cmd_record, run_overrides
from esg_leads.cli.models import model_overrides

# ----------------------------------------------------------------------- schema


def cmd_schema(args: argparse.Namespace) -> int:
    from esg_leads.schemas.codec import json_schema
    from esg_leads.schemas.topics import ALL_TOPICS

    if args.topic is not None:
        if args.topic not in ALL_TOPICS:
            raise UsageError(f"unknown topic {args.topic!r}; topics: {', '.join(ALL_TOPICS)}")
        print(json.dumps(json_schema(args.topic), indent=2))
    else:
        print(json.dumps({topic: json_schema(topic) for topic in ALL_TOPICS}, indent=2))
    return 0


# --------------------------------------------------------------------- generate


def feed_outage(text: str):
    """``--feed-outage`` values, refused while parsing with the flag named."""
    from esg_leads.replay.simulate import parse_feed_outage

    try:
        return parse_feed_outage(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _world_spec(args: argparse.Namespace):
    from esg_leads.replay.simulate import WorldSpec

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
            profile_answers=getattr(args, "profile_answers", "on") == "on",
            feed_outages=tuple(getattr(args, "feed_outage", None) or ()),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    from esg_leads.flows.progress import Progress
    from esg_leads.replay.generator import generate

    spec = _world_spec(args)
    check_out(args.out, args.overwrite)
    with Progress("generating", total=spec.days, unit="days") as progress:
        report = generate(spec, args.out, progress=progress.update, overwrite=args.overwrite)
    print(
        f"wrote {report.messages:,} messages ({report.malformed:,} malformed, "
        f"{report.duplicates:,} duplicates) for {report.investors:,} investors to {args.out} "
        f"in {report.seconds:.1f}s ({report.events_per_second:,.0f} events/s)",
        file=sys.stderr,
    )
    if report.profile_answers is not None:
        print(report.profile_answers.line(report.settled, report.review_rounds), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- replay


def cmd_replay(args: argparse.Namespace) -> int:
    from esg_leads.connectors.signals import on_signals
    from esg_leads.flows.progress import Progress
    from esg_leads.operators.warm_start import check_warm_start
    from esg_leads.replay.runner import replay

    open_recording(args.recording)
    config = args.config
    if config is None and (args.recording / "config.toml").exists():
        config = args.recording / "config.toml"
        print(f"using {config} (the generated world's tenants)", file=sys.stderr)
    settings = effective_settings(config, model_overrides(args))
    # Before any process starts: a missing or incompatible --model is one line here, not
    # one traceback per replay process.
    check_warm_start(settings)
    if args.processes > 1 and args.metrics_port is not None:
        raise UsageError("--metrics-port serves one process's counters: use it without "
                         "--processes (summary.json merges every process's)")
    listeners = []
    if args.metrics_port is not None:
        from esg_leads.connectors.metrics import PrometheusListener, serve

        listeners.append(PrometheusListener())
        port = serve(listeners[0], args.metrics_port, settings.metrics.host)
        print(f"metrics on http://{settings.metrics.host}:{port}/metrics", file=sys.stderr)
    stop, received = threading.Event(), []

    def on_signal(signum: int) -> None:
        if received:  # a second signal: now, without outputs
            os._exit(128 + signum)
        received.append(signum)
        stop.set()  # before saying so: whoever reads the line may count on it
        print(f"esg-leads replay: {signal.Signals(signum).name}: stopping; writing the outputs "
              "of what was read so far (again to quit at once)", file=sys.stderr, flush=True)

    # on_signal runs on a relay thread, not in the handler: stop.set() (which the sinks
    # also call) and printing there could deadlock this thread (connectors/signals.py).
    with on_signals((signal.SIGINT, signal.SIGTERM), on_signal):
        with Progress("replaying", total=1, unit="messages") as progress:
            if args.processes == 1:
                summary = replay(args.recording, args.out, settings, workers=args.workers,
                                 progress=progress.update, listeners=listeners, stop=stop)
            else:
                from esg_leads.replay.cluster import ClusterError, replay_cluster

                try:
                    summary = replay_cluster(args.recording, args.out, settings,
                                             processes=args.processes, workers=args.workers,
                                             progress=progress.update, stop=stop)
                except ClusterError as error:
                    print(f"esg-leads replay: error: {error}", file=sys.stderr)
                    return 1
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


def cmd_run(args: argparse.Namespace) -> int:
    from esg_leads.flows.config import scrubber

    settings = effective_settings(args.config, run_overrides(args))  # logs scrubbed from here on
    from esg_leads.connectors.parquet_sink import ensure_writable

    for directory in (settings.audit.directory, settings.recovery.directory):
        if directory is not None:  # full or read-only: one line and exit 2, now
            ensure_writable(directory)
    # The flow (bytewax, River and through it SciPy: 2 s of imports) only once the
    # settings and directories are known good: a refusal answers before any of it.
    from esg_leads.flows.run import run

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
    from esg_leads.flows.config import ConfigError, load_layers, masked, origins

    try:
        loaded = load_layers(config_file=args.config,
                             overrides={**run_overrides(args), **COMMON_OVERRIDES})
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if not args.show_origin:
        print(json.dumps(masked(loaded.settings), indent=2))
        return 0
    for key, value, origin in origins(loaded):  # as git config --show-origin: origin, tab
        print(f"{origin}\t{key} = {json.dumps(value, default=str)}")
    return 0


# -------------------------------------------------------------------------- diff


def cmd_diff(args: argparse.Namespace) -> int:
    from esg_leads.replay.diff import compare, load_run, render

    for run in (args.run_a, args.run_b):
        check_run_outputs(run)
    report = compare(load_run(args.run_a), load_run(args.run_b))
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0 if report["equal"] else 1


# ----------------------------------------------------------------------- explain


def cmd_explain(args: argparse.Namespace) -> int:
    from esg_leads.flows.explain import AmbiguousLead, explain

    tenant, investor_id = args.lead
    if tenant is not None and args.tenant is not None and tenant != args.tenant:
        raise UsageError(f"the lead {tenant}/{investor_id} is not of --tenant {args.tenant}")
    check_run_outputs(args.out)
    if args.recording is not None:
        open_recording(args.recording)
    try:
        return explain(args.out, investor_id, recording=args.recording,
                       tenant=tenant or args.tenant)
    except AmbiguousLead as error:  # one tenant's story, or none: never several mixed
        raise UsageError(str(error)) from None


# --------------------------------------------------------------- review-decision


def cmd_review_decision(args: argparse.Namespace) -> int:
    from esg_leads.flows.review_decision import DecisionError, run

    try:
        return run(args)
    except DecisionError as error:
        raise UsageError(str(error)) from None


# ------------------------------------------------------------------------ demo


def cmd_demo(args: argparse.Namespace) -> int:
    from esg_leads.cli.demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, investors=args.investors, days=args.days)


# ------------------------------------------------------------------------ main


def _add_world_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenants", type=positive_int, default=3, help="tenants (funds) in the world")
    p.add_argument("--investors", type=positive_int, default=2000, help="investors in the world")
    p.add_argument("--properties", type=positive_int, default=None,
                   help="properties on offer (default: one per ten investors)")
    p.add_argument("--days", type=positive_int, default=30, help="days of activity to simulate")
    p.add_argument("--seed", type=nonneg_int, default=1,
                   help="seed of every random choice: same seed, same recording")
    p.add_argument("--malformed-rate", type=fraction, default=0.01,
                   help="share of messages deliberately malformed (they go to the DLQ)")
    p.add_argument("--drift-at", type=float, default=None, metavar="DAY",
                   help="day on which investor behaviour shifts, for drift detection to find "
                        "(default: no shift)")
    p.add_argument("--partitions", type=positive_int, default=3,
                   help="partitions of every recorded topic")
    p.add_argument("--feed-outage", type=feed_outage, action="append", default=None,
                   metavar="DAY:HOURS[:SOURCE]",
                   help="a signal provider (or every one) sends nothing for HOURS from DAY "
                        "(repeatable), for feed_stale alerts to find")
    p.add_argument("--reviewers", choices=("on", "off"), default="on",
                   help="reviewer teams decide the flow's review cases (signed decisions on "
                        "lead.review-decisions); on replays the world through the flow in "
                        "rounds while generating")
    p.add_argument("--profile-answers", choices=("on", "off"), default="on",
                   help="investors without a profile fill it in after the flow's info request "
                        "(some never do); on replays the world through the flow in rounds "
                        "while generating")


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="esg-leads",
        description="Streaming qualification of real-estate investor leads by ESG fit.",
        epilog=_examples("esg-leads demo", "esg-leads generate --out /tmp/world",
                         "esg-leads replay /tmp/world --out /tmp/run"),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below; COMMAND --help for its flags")

    p = sub.add_parser("schema", help="print the JSON Schema of every topic (or one)",
                       epilog=_examples("esg-leads schema leads.scored"))
    p.add_argument("topic", nargs="?", help="one topic, e.g. leads.scored (default: all)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("generate", help="write a seeded synthetic world as a recording",
                       epilog=_examples("esg-leads generate --investors 2000 --days 14 "
                                        "--out /tmp/world"))
    _add_world_flags(p)
    p.add_argument("--out", required=True, type=Path, help="the recording's directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the recording already in --out")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("replay", help="run the flow over a recording into Parquet outputs",
                       epilog=_examples("esg-leads replay /tmp/world --out /tmp/run --workers 2"))
    p.add_argument("recording", type=Path, help="a recording directory (generate, record)")
    p.add_argument("--out", required=True, type=Path, help="where the outputs go")
    p.add_argument("--workers", type=positive_int, default=1, help="worker threads per process")
    p.add_argument("--processes", type=positive_int, default=1,
                   help="local processes, one bytewax cluster (decisions do not change)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML settings (default: RECORDING/config.toml if present)")
    p.add_argument("--metrics-port", type=port, default=None,
                   help="serve /metrics while replaying (0: any free port)")
    p.set_defaults(func=cmd_replay)

    def run_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=None, help="TOML settings file")
        p.add_argument("--bootstrap", default=None,
                       help="Kafka bootstrap servers (kafka.bootstrap_servers)")
        p.add_argument("--recovery-dir", type=Path, default=None,
                       help="snapshot directory; a restart resumes from it (recovery.directory)")
        p.add_argument("--metrics-port", type=port, default=None,
                       help="serve /metrics on this port, 0: any free one (metrics.port)")

    p = sub.add_parser("run", help="run the flow against Kafka (production mode)",
                       epilog=_examples("esg-leads run --bootstrap 127.0.0.1:9092 "
                                        "--recovery-dir /var/lib/esg-leads --metrics-port 9464"))
    run_flags(p)
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker threads in this process")
    p.add_argument("--process-id", type=nonneg_int, default=None,
                   help="this process's index in a multi-process cluster")
    p.add_argument("--addresses", default=None,
                   help="host:port of every process in the cluster, ';'-separated")
    p.add_argument("--until-end", action="store_true",
                   help="stop when the input partitions reach the end they had at start")
    p.add_argument("--summary", type=Path, default=None,
                   help="write the run summary (reconciliation, counts) here on exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)",
                       epilog=_examples("ESG_LEADS_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 "
                                        "esg-leads config --config prod.toml --show-origin"))
    run_flags(p)
    p.add_argument("--show-origin", action="store_true",
                   help="one line per setting with where it came from: default, file:PATH, "
                        "env:VARIABLE or flag")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("broker", help="a Kafka-protocol broker on loopback for development",
                       epilog=_examples("esg-leads broker --port 9092 --partitions 8 &"))
    p.add_argument("--port", type=port, default=9092,
                   help="fixed bootstrap port (a loopback forwarder to the mock brokers)")
    p.add_argument("--brokers", type=positive_int, default=1, help="mock brokers in the cluster")
    p.add_argument("--partitions", type=positive_int, default=3,
                   help="partitions of each topic; the mock keeps ~5 MB per partition")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("produce", help="publish a recording to Kafka",
                       epilog=_examples("esg-leads produce /tmp/world --bootstrap 127.0.0.1:9092 "
                                        "--speed 60"))
    p.add_argument("recording", type=Path, help="a recording directory (generate, record)")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--speed", type=positive_float, default=None,
                   help="X times the recorded pace (default: as fast as possible)")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("record", help="record Kafka topics into a recording",
                       epilog=_examples("esg-leads record --bootstrap 127.0.0.1:9092 --until-end "
                                        "--out /tmp/captured"))
    run_flags(p)
    p.add_argument("--topics", nargs="+", default=None,
                   help="physical topic names (default: every input topic)")
    p.add_argument("--out", required=True, type=Path, help="the recording's directory")
    p.add_argument("--until-end", action="store_true",
                   help="stop at the end each partition had when recording started")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--connect-timeout", type=positive_float, default=30.0, metavar="S",
                   help="give up (exit 1) when the broker has not answered for S seconds "
                        "(default 30)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the recording already in --out")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("diff", help="compare two runs' outputs (exit 0 when equal)",
                       epilog=_examples("esg-leads diff /tmp/run-a /tmp/run-b"))
    p.add_argument("run_a", type=Path, help="one run's output directory")
    p.add_argument("run_b", type=Path, help="the other run's output directory")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("explain", help="print one lead's whole story from a run's outputs",
                       epilog=_examples("esg-leads explain acme-capital/inv-000042 --out "
                                        "/tmp/run --recording /tmp/world"))
    p.add_argument("lead", type=lead_name, metavar="[TENANT/]INVESTOR_ID",
                   help="the lead to explain: TENANT/INVESTOR_ID, or the investor id alone "
                        "when one tenant has it (else the command lists the tenants)")
    p.add_argument("--tenant", type=tenant_id, default=None,
                   help="the tenant whose investor it is (same as TENANT/INVESTOR_ID)")
    p.add_argument("--out", required=True, type=Path, help="the run's output directory")
    p.add_argument("--recording", type=Path, default=None,
                   help="the recording it ran on, to show what each input event was")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("review-decision",
                       help="sign a reviewer's verdict on a case; print it or publish it",
                       epilog=_examples("esg-leads review-decision case:acme-capital/inv-1:1 "
                                        "--approve --reviewer ann --tenant acme-capital --investor inv-1"))
    from esg_leads.flows.review_decision import add_arguments  # light: no Kafka import until used

    add_arguments(p)
    p.set_defaults(func=cmd_review_decision)

    p = sub.add_parser("demo", help="generate a small world, run the flow, show the top leads",
                       epilog=_examples("esg-leads demo --out .demo --investors 3000"))
    p.add_argument("--out", type=Path, default=Path(".demo"), help="where world and run go")
    p.add_argument("--seed", type=nonneg_int, default=7, help="seed of the world")
    p.add_argument("--investors", type=positive_int, default=3000, help="investors in the world")
    p.add_argument("--days", type=positive_int, default=45, help="days to simulate")
    p.set_defaults(func=cmd_demo)

    from esg_leads.cli.crm import add_commands as add_crm_commands  # crm-sync, webhooks, fake-crm

    add_crm_commands(sub)
    from esg_leads.cli.upgrade import add_command as add_upgrade_command  # tombstone-old-keys

    add_upgrade_command(sub)
    from esg_leads.cli.report import add_command as add_report_command  # esg-leads report

    add_report_command(sub)
    add_model_commands(sub)  # train, models; --model/--registry on replay and run
    for command in sub.choices.values():  # after every hook: each command gets them
        _add_common_flags(command, defaults=False)
    _add_common_flags(parser, defaults=True)
    parser.commands = sub.choices
    return parser


def _add_common_flags(p: argparse.ArgumentParser, defaults: bool) -> None:
    """Flags every command takes, before or after its name (``esg-leads --traceback run``
    and ``esg-leads run --traceback``). A sub-command's copy has no default, so it does
    not overwrite a value given before the command's name."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--traceback", action="store_true", default=default(False),
                   help="on an unexpected error, show the Python traceback (for a bug report)")
    p.add_argument("--log-format", choices=("text", "json"), default=default(None),
                   help="text, or one JSON object per line with time, level, logger, run_id, "
                        "tenant, message (logging.format; default: text)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)  # a bad flag value: one line, exit 2
        if unknown:  # said by the command's parser, so the line names the command's --help
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as done:  # --help, --version, or the line above: a code, as for errors
        return int(done.code or 0)
    prog = f"esg-leads {args.command}"
    from esg_leads.flows import logs

    COMMON_OVERRIDES.clear()
    if args.log_format is not None:
        COMMON_OVERRIDES["logging"] = {"format": args.log_format}
    logs.configure(args.log_format or "text")  # the settings may change it (_settings)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly. As the Python docs advise,
        # point stdout at devnull so the interpreter's own flush at exit stays silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except UsageError as error:
        print_error(prog, str(error))
        return EXIT_USAGE
    except Failure as error:
        print_error(prog, str(error))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from esg_leads.connectors.parquet_sink import OutputError

        if isinstance(error, OutputError):  # full disk, read-only directory: the user's to fix
            print_error(prog, str(error))
            return EXIT_USAGE
        if isinstance(error, OSError) and error.errno in USER_ERRNOS:  # a port in use ...
            print_error(prog, describe_os_error(error))
            return EXIT_USAGE
        if args.traceback:
            raise
        print_error(prog, f"internal error (a bug, please report it with the output of "
                          f"--traceback): {type(error).__name__}: {error}")
        return EXIT_BUG
    finally:
        logs.reset()  # in-process callers (tests) get logging as they had it


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
