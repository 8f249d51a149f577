"""The CRM sub-commands of ``esg-leads``: ``crm-sync``, ``webhooks``, ``fake-crm``.

Kept apart from ``esg_leads/cli/main.py`` (which only calls :func:`add_commands`) so that the CLI
module stays small and these commands import httpx, Starlette and uvicorn only when run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _settings(args: argparse.Namespace):
    from esg_leads.cli.args import effective_settings as load  # one error line; logs formatted and scrubbed

    overrides: dict = {}
    if getattr(args, "bootstrap", None):
        overrides.setdefault("kafka", {})["bootstrap_servers"] = args.bootstrap
    if getattr(args, "crm_url", None):
        overrides.setdefault("crm", {})["url"] = args.crm_url
    return load(args.config, overrides)


def cmd_crm_sync(args: argparse.Namespace) -> int:
    from esg_leads.flows.crm_sync import run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    return run(_settings(args), until_end=args.until_end, metrics_port=args.metrics_port)


def cmd_webhooks(args: argparse.Namespace) -> int:
    from esg_leads.flows.webhooks import serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    return serve(_settings(args), args.port)


def cmd_fake_crm(args: argparse.Namespace) -> int:
    from esg_leads.connectors.fake_crm import main
    from esg_leads.cli.args import UsageError

    try:
        return main(args.port, args.chaos or "", args.token, args.reject, args.seed)
    except ValueError as error:  # a bad chaos spec or regex
        raise UsageError(str(error)) from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    from esg_leads.cli.args import nonneg_int, port

    p = sub.add_parser("crm-sync", help="deliver crm.handoff to the CRM over HTTP",
                       epilog="example:\n  esg-leads crm-sync --bootstrap 127.0.0.1:9092 "
                              "--crm-url https://crm.example.com/api")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
    p.add_argument("--crm-url", default=None, help="the CRM's base URL (crm.url)")
    p.add_argument("--until-end", action="store_true",
                   help="stop once everything up to the topic's end at start is resolved")
    p.add_argument("--metrics-port", type=port, default=None, help="serve /metrics (0: any port)")
    p.set_defaults(func=cmd_crm_sync)

    p = sub.add_parser("webhooks", help="signed inbound webhooks: CRM outcomes, review decisions",
                       epilog="example:\n  esg-leads webhooks --bootstrap 127.0.0.1:9092 --port 8080")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
    p.add_argument("--port", type=port, default=8080, help="0: any free port (printed)")
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser("fake-crm", help="a CRM stand-in over HTTP, with scheduled chaos",
                       epilog="example:\n  esg-leads fake-crm --port 8090 --chaos '500@every10'")
    p.add_argument("--port", type=port, default=8090, help="0: any free port (printed)")
    p.add_argument("--chaos", default=None, help="e.g. '429@req1-5:retry_after=1;500@every10' "
                   "(grammar: connectors/fake_crm.py)")
    p.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN")
    p.add_argument("--reject", default=None, metavar="REGEX",
                   help="answer 422 to PUTs of investor ids matching REGEX")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of probabilistic chaos (pF)")
    p.set_defaults(func=cmd_fake_crm)
