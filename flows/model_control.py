"""``esg-leads models promote|pin|unpin|rollback``: sign a model command, print or publish it.

The command is an ``ops.control`` event (:class:`~schemas.inputs.ModelCommand`) signed
with the tenant's ``control_signing_key`` (:mod:`operators.control_auth`), read from the
same settings as the flow. It is printed as JSON; with ``--bootstrap`` it is also
published to ``ops.control`` (keyed by the tenant) with its Kafka timestamp set to the
command's ``event_time``, so that its position in the replay order — the point where
the flow obeys it (:mod:`operators.model_lifecycle`) — is its event time, in the
live run and in any replay of its recording.

A version is checked against the registry (``--registry`` or ``registry.directory``)
when that registry exists here, and a prefix resolves to the full version: better
refused here than dead-lettered later. Mistakes are one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import timezone
from pathlib import Path
from typing import Any

from esg_leads.flows.review_decision import (
    DecisionError,
    PublishFailed,
    _event_time,
    publish,
    signed,
    signing_key,
)
from esg_leads.operators import control_auth
from esg_leads.schemas.topics import OPS_CONTROL

SOURCE = "esg-leads-cli"


def add_commands(models: argparse._SubParsersAction, guarded) -> None:  # noqa: ANN001
    """``promote``, ``pin``, ``unpin`` and ``rollback`` under ``esg-leads models``."""
    helps = {
        "promote": "serve VERSION (the model it replaces stays in shadow, watched for rollback)",
        "pin": "serve VERSION and freeze it: no automatic promotion or rollback until unpin",
        "unpin": "let the automatic promotion and rollback rules act again",
        "rollback": "serve VERSION again ('previous': the model the last promotion replaced)",
    }
    for action, text in helps.items():
        q = models.add_parser(action, help=text, epilog=(
            f"example:\n  esg-leads models {action} "
            f"{'' if action == 'unpin' else 'm-1a2b3c4d5e6f '}--tenant acme-capital "
            "--operator ops-1 --config prod.toml --bootstrap kafka:9092"))
        if action != "unpin":
            q.add_argument("version", help="a registry version or an unambiguous prefix"
                           + (", or 'previous'" if action == "rollback" else ""))
        q.add_argument("--tenant", required=True, help="the tenant whose model changes")
        q.add_argument("--operator", required=True, help="who gives the command (audited)")
        q.add_argument("--note", default=None, help="why (kept in the alert and audit row)")
        q.add_argument("--event-id", default=None, help="default: a fresh mc-<uuid>")
        q.add_argument("--event-time", default=None, metavar="ISO",
                       help="when it takes effect, with a timezone (default: now, UTC)")
        q.add_argument("--registry", type=Path, default=None,
                       help="check VERSION here (default: registry.directory, if it exists)")
        q.add_argument("--config", type=Path, default=None, help="TOML settings file")
        q.add_argument("--bootstrap", default=None,
                       help="also publish to this Kafka cluster (ops.control)")
        q.set_defaults(func=guarded(run), action=action)


def _version(settings: Any, version: str | None, registry: Path | None) -> str | None:
    if version is None or version == "previous":
        return version
    from esg_leads.online_models.model_store import ModelStore, RegistryError, registry_directory

    directory = registry if registry is not None else registry_directory(settings)
    if not (Path(directory) / "index.jsonl").exists():
        if registry is not None:
            raise DecisionError(f"no model registry at {registry}")
        return version  # the flow's registry is elsewhere: it checks when it obeys
    try:
        return ModelStore(directory).resolve(version)
    except RegistryError as error:
        raise DecisionError(str(error)) from None


def signed_command(settings: Any, *, action: str, tenant: str, operator: str,
                   version: str | None = None, note: str | None = None,
                   event_id: str | None = None, event_time: str | None = None,
                   registry: Path | None = None) -> tuple[bytes, Any]:
    """The signed command as the JSON a producer sends, and as the flow parses it."""
    key = signing_key(settings, tenant, "control_signing_key")
    version = _version(settings, version, registry)
    payload: dict[str, Any] = {
        "tenant": tenant, "event_id": event_id or f"mc-{uuid.uuid4().hex}",
        "event_time": _event_time(event_time), "source": SOURCE, "action": action,
        "operator": operator}
    if version is not None:
        payload["version"] = version
    if note is not None:
        payload["note"] = note
    return signed(OPS_CONTROL.name, payload, "command",
                  lambda event: control_auth.sign_command(key, event))


def run(args: argparse.Namespace) -> int:
    from esg_leads.flows.config import ConfigError, load_settings

    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as error:
        raise DecisionError(str(error)) from None
    value, event = signed_command(
        settings, action=args.action, tenant=args.tenant, operator=args.operator,
        version=getattr(args, "version", None), note=args.note, event_id=args.event_id,
        event_time=args.event_time, registry=args.registry)
    print(value.decode())
    if args.bootstrap:
        at_ms = int(event.event_time.astimezone(timezone.utc).timestamp() * 1000)
        try:
            topic, partition, offset = publish(settings, args.bootstrap, event.tenant.encode(),
                                               value, topic=OPS_CONTROL.name, timestamp_ms=at_ms)
        except PublishFailed as failure:
            print(f"esg-leads models: error: {failure}", file=sys.stderr)
            return 1
        print(f"published {event.action.value} {event.version or ''} for {event.tenant} "
              f"({event.event_id}) to {topic}[{partition}]@{offset}", file=sys.stderr)
    return 0


__all__ = ["add_commands", "signed_command"]
