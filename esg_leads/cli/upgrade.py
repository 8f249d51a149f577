"""``esg-leads tombstone-old-keys``: delete the records an older version left under bare
investor-id keys on the compacted output topics (see ``connectors/key_upgrade.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_tombstone_old_keys(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from esg_leads.cli.args import Failure, effective_settings
    from esg_leads.connectors.key_upgrade import tombstone_old_keys
    from esg_leads.schemas.keys import KEYED_BY_INVESTOR

    overrides = {"kafka": {"bootstrap_servers": args.bootstrap}} if args.bootstrap else {}
    settings = effective_settings(args.config, overrides)
    topics = [settings.kafka.topic(t) for t in sorted(KEYED_BY_INVESTOR)]
    verb = "tombstoned" if args.apply else "would tombstone"

    def done(topic: str, counts: dict[str, int]) -> None:
        # As each topic is acknowledged: a failure later leaves these lines true.
        print(f"{topic}: {verb} {counts['old']:,} old keys; {counts['current']:,} keyed "
              f"<tenant>/<investor_id>; {counts['other']:,} other keys left alone", flush=True)

    def warn(text: str) -> None:
        print(f"warning: {text}", file=sys.stderr, flush=True)

    try:
        report = tombstone_old_keys(settings.kafka.client_config(), topics, apply=args.apply,
                                    force=args.force, connect_timeout=args.connect_timeout,
                                    on_topic=done, on_warning=warn)
    except (RuntimeError, TimeoutError) as error:  # UpgradeRefused included
        raise Failure(str(error)) from None
    except KafkaException as error:  # a broker call that failed or timed out
        raise Failure(f"kafka: {error.args[0].str()}") from None
    except BufferError as error:  # cannot come from the retrying producer; never a traceback
        raise Failure(f"kafka: the producer's queue stayed full: {error}") from None
    if not args.apply and any(c["old"] for c in report.values()):
        print("dry run: nothing published; --apply publishes the tombstones", file=sys.stderr)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from esg_leads.cli.args import positive_float

    p = sub.add_parser(
        "tombstone-old-keys",
        help="after upgrading to keys <tenant>/<investor_id>: tombstone the outputs' old bare keys",
        epilog="run it last: stop the old flow; let the old crm-sync drain (--until-end)\n"
               "and stop it; start the new crm-sync, then the new flow; then this.\n"
               "example:\n  esg-leads tombstone-old-keys --bootstrap 127.0.0.1:9092 --apply")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
    p.add_argument("--apply", action="store_true",
                   help="publish the tombstones (default: count what would be tombstoned)")
    p.add_argument("--force", action="store_true",
                   help="with --apply: publish even if a topic says the old flow may still run "
                        "(no record keyed <tenant>/<investor_id> yet, or an old key newer than "
                        "the first of them)")
    p.add_argument("--connect-timeout", type=positive_float, default=10.0, metavar="S",
                   help="give up when the broker does not answer within S seconds")
    p.set_defaults(func=cmd_tombstone_old_keys)
