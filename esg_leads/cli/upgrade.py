"""``esg-leads tombstone-old-keys``: delete the records an older version left under bare
investor-id keys on the compacted output topics (see ``connectors/key_upgrade.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_tombstone_old_keys(args: argparse.Namespace) -> int:
    from esg_leads.cli.args import Failure, effective_settings
    from esg_leads.connectors.key_upgrade import tombstone_old_keys
    from esg_leads.schemas.keys import KEYED_BY_INVESTOR

    overrides = {"kafka": {"bootstrap_servers": args.bootstrap}} if args.bootstrap else {}
    settings = effective_settings(args.config, overrides)
    topics = [settings.kafka.topic(t) for t in sorted(KEYED_BY_INVESTOR)]
    try:
        report = tombstone_old_keys(settings.kafka.client_config(), topics, apply=args.apply,
                                    connect_timeout=args.connect_timeout)
    except (RuntimeError, TimeoutError) as error:
        raise Failure(str(error)) from None
    for topic, counts in report.items():
        verb = "tombstoned" if args.apply else "would tombstone"
        print(f"{topic}: {verb} {counts['old']:,} old keys; {counts['current']:,} keyed "
              f"<tenant>/<investor_id>; {counts['other']:,} other keys left alone")
    if not args.apply and any(c["old"] for c in report.values()):
        print("dry run: nothing published; --apply publishes the tombstones", file=sys.stderr)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from esg_leads.cli.args import positive_float

    p = sub.add_parser(
        "tombstone-old-keys",
        help="after upgrading to keys <tenant>/<investor_id>: tombstone the outputs' old bare keys",
        epilog="example:\n  esg-leads tombstone-old-keys --bootstrap 127.0.0.1:9092 --apply")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
    p.add_argument("--apply", action="store_true",
                   help="publish the tombstones (default: count what would be tombstoned)")
    p.add_argument("--connect-timeout", type=positive_float, default=10.0, metavar="S",
                   help="give up when the broker does not answer within S seconds")
    p.set_defaults(func=cmd_tombstone_old_keys)
