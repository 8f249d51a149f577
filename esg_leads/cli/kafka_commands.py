"""The commands that talk to a Kafka cluster from outside the flow: ``broker`` (the dev
broker), ``produce`` (a recording to Kafka) and ``record`` (Kafka to a recording)."""

from __future__ import annotations

import argparse
import sys

from esg_leads.cli.args import (
    Failure,
    UsageError,
    check_out,
    effective_settings,
    open_recording,
)
from esg_leads.cli.models import model_overrides


def run_overrides(args: argparse.Namespace) -> dict:
    """Settings overrides of the Kafka-facing flags (``--bootstrap``, ``--recovery-dir``,
    ``--metrics-port``) and of ``--model``/``--registry``."""
    overrides: dict = {}
    if getattr(args, "bootstrap", None):
        overrides.setdefault("kafka", {})["bootstrap_servers"] = args.bootstrap
    if getattr(args, "recovery_dir", None):
        overrides.setdefault("recovery", {})["directory"] = str(args.recovery_dir)
    if getattr(args, "metrics_port", None) is not None:
        overrides.setdefault("metrics", {})["port"] = args.metrics_port
    return overrides | model_overrides(args)


def cmd_broker(args: argparse.Namespace) -> int:
    from esg_leads.connectors.dev_broker import run_forever
    from esg_leads.schemas.topics import ALL_TOPICS

    run_forever(args.brokers, args.port, list(ALL_TOPICS), args.partitions)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from esg_leads.connectors import publish
    from esg_leads.connectors.client_logs import quiet
    from esg_leads.flows.progress import Progress
    from esg_leads.schemas.secrets import mask_url_userinfo

    open_recording(args.recording)
    try:
        with Progress("publishing", total=1, unit="messages") as progress:
            # The failures are reported below, in one line: no librdkafka log lines.
            result = publish.publish_recording(args.recording, args.bootstrap, speed=args.speed,
                                               config=quiet({}), progress=progress.update)
    except KafkaException as error:
        # librdkafka retried within the metadata budget and the cluster never answered.
        raise Failure(f"cannot publish to {mask_url_userinfo(args.bootstrap)} (gave up after "
                      f"{publish._METADATA_TIMEOUT_S:g}s): {error.args[0].str()}") from None
    except publish.PublishError as error:
        raise Failure(f"{error}; first errors: {'; '.join(error.errors[:3])}") from None
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


def cmd_record(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from esg_leads.connectors.kafka_source import BrokerUnavailable
    from esg_leads.flows.progress import Progress
    from esg_leads.replay.record import record
    from esg_leads.schemas.topics import INPUT_TOPICS

    if not args.until_end and args.duration is None:
        raise UsageError("say when to stop: --until-end or --duration S")
    check_out(args.out, args.overwrite)
    settings = effective_settings(args.config, run_overrides(args))
    topics = args.topics or [settings.kafka.topic(t) for t in INPUT_TOPICS]
    try:
        with Progress("recording", total=1, unit="messages") as progress:
            result = record(settings.kafka.client_config(), topics, args.out,
                            until_end=args.until_end, duration=args.duration,
                            overwrite=args.overwrite, progress=progress.update,
                            connect_timeout=args.connect_timeout)
    except BrokerUnavailable as error:
        raise Failure(str(error)) from None
    except KafkaException as error:  # the broker went away after answering
        raise Failure(f"recording stopped: {error.args[0].str()}") from None
    print(f"recorded {result['messages']:,} messages from {len(topics)} topics to {args.out} "
          f"in {result['seconds']:.1f}s", file=sys.stderr)
    return 0
