"""``esg-leads review-decision``: sign a reviewer's verdict, print it or publish it.

The flow acts only on decisions signed with the tenant's ``review_signing_key`` by a
reviewer on the tenant's ``reviewers`` list (:mod:`operators.review_auth`). This
command is the operator's (and the tests') way to make one: it reads the key from the
same settings as the flow (``--config`` file, ``ESG_LEADS_*`` environment), builds the
event, signs it and prints the JSON on stdout. With ``--bootstrap`` it also publishes
it to ``lead.review-decisions`` (the physical name from ``kafka.topics``), keyed by
the investor id, and waits until the broker has acknowledged it.

Every mistake an operator can make here (unknown tenant, no key, a reviewer the flow
would refuse, an invalid id or time) is one line and exit code 2: better refused here
than dead-lettered later.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from esg_leads.operators import review_auth
from esg_leads.schemas.codec import DecodeFailure, decode_event
from esg_leads.schemas.common import ReviewVerdict
from esg_leads.schemas.keys import case_owner, is_case_of, output_key
from esg_leads.schemas.topics import REVIEW_DECISIONS

SOURCE = "esg-leads-cli"
#: How long a publish may wait for the broker's acknowledgement before it fails.
DELIVERY_TIMEOUT_S = 30.0


class DecisionError(ValueError):
    """A user mistake: the command prints it as one line and exits 2."""


class PublishFailed(RuntimeError):
    """The broker did not acknowledge the decision (exit 1: nothing was decided)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case_id", metavar="CASE_ID",
                   help="the case id as published on leads.review, e.g. case:acme-capital/inv-1:1")
    verdict = p.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", dest="verdict", action="store_const",
                         const=ReviewVerdict.APPROVE.value, help="approve: hand the lead off")
    verdict.add_argument("--reject", dest="verdict", action="store_const",
                         const=ReviewVerdict.REJECT.value, help="reject: disqualify the lead")
    verdict.add_argument("--verdict", dest="verdict", choices=[v.value for v in ReviewVerdict],
                         help="any verdict, e.g. needs_info")
    p.add_argument("--reviewer", required=True, help="must be on tenants.<T>.reviewers")
    p.add_argument("--tenant", required=True, help="the case's tenant (its key signs)")
    p.add_argument("--investor", required=True, help="the case's investor id (the message key)")
    p.add_argument("--note", default=None, help="the reviewer's note, kept with the decision")
    p.add_argument("--event-id", default=None, help="default: a fresh rd-<uuid>")
    p.add_argument("--event-time", default=None, metavar="ISO",
                   help="with a timezone (default: now, UTC)")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument("--bootstrap", default=None,
                   help="also publish to this Kafka cluster (lead.review-decisions)")


def _event_time(text: str | None) -> str:
    if text is None:
        return review_auth.utc_text(datetime.now(timezone.utc))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DecisionError(f"--event-time {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise DecisionError(f"--event-time {text!r} needs a timezone (e.g. Z or +01:00)")
    return review_auth.utc_text(when)


def signed_decision(settings: Any, *, case_id: str, verdict: str, reviewer: str, tenant: str,
                    investor_id: str, note: str | None = None, event_id: str | None = None,
                    event_time: str | None = None) -> tuple[bytes, Any]:
    """The signed decision as the JSON a producer sends, and as the flow parses it."""
    key = signing_key(settings, tenant, "review_signing_key")
    if reviewer not in settings.tenants[tenant].reviewers:
        raise DecisionError(f"reviewer {reviewer!r} is not on the reviewers list of tenant "
                            f"{tenant!r}: the flow would refuse the decision")
    payload: dict[str, Any] = {
        "tenant": tenant, "event_id": event_id or f"rd-{uuid.uuid4().hex}",
        "event_time": _event_time(event_time), "source": SOURCE, "investor_id": investor_id,
        "case_id": case_id, "verdict": verdict, "reviewer": reviewer}
    if note is not None:
        payload["note"] = note
    decision = signed(REVIEW_DECISIONS.name, payload, "decision",
                      lambda event: review_auth.sign_decision(key, event))
    # After the schema's checks, so that an invalid id is named as such first.
    if not is_case_of(case_id, tenant, investor_id):
        # The flow looks the case up in --tenant's --investor: it would be unknown there.
        owner = case_owner(case_id)
        whose = f"is of {output_key(*owner)}, not" if owner is not None else "is not a case id"
        raise DecisionError(
            f"case {case_id!r} {whose} of --tenant {tenant!r} --investor {investor_id!r} "
            f"(case:{tenant}/{investor_id}:<n>): the flow would not find it")
    return decision


def signing_key(settings: Any, tenant: str, key_name: str) -> str:
    """``tenant``'s ``key_name`` (e.g. ``review_signing_key``), or a DecisionError that
    says how to configure it."""
    tenant_cfg = settings.tenants.get(tenant)
    if tenant_cfg is None:
        known = ", ".join(sorted(settings.tenants)) or "none"
        raise DecisionError(f"unknown tenant {tenant!r} (configured: {known})")
    key = getattr(tenant_cfg, key_name)
    if key is None:
        raise DecisionError(
            f"tenant {tenant!r} has no {key_name}: set tenants.{tenant}.{key_name} in "
            f"--config or ESG_LEADS_TENANTS__{tenant.upper()}__{key_name.upper()}")
    return key.get_secret_value()


def signed(topic: str, payload: dict[str, Any], what: str,
           sign: Callable[[Any], str]) -> tuple[bytes, Any]:
    """``payload`` parsed with the flow's own decoder (what is signed is what the flow
    will read), signed by ``sign`` of the parsed event: the JSON a producer sends, and
    the event as the flow parses it."""
    try:
        event = decode_event(topic, orjson.dumps(payload))
    except DecodeFailure as failure:
        raise DecisionError(f"invalid {what}: {failure.detail}") from None
    payload["signature"] = sign(event)
    value = orjson.dumps(payload)
    return value, decode_event(topic, value)


def publish(settings: Any, bootstrap: str, key: bytes, value: bytes,
            timeout_s: float | None = None, *, topic: str = REVIEW_DECISIONS.name,
            timestamp_ms: int | None = None) -> tuple[str, int, int]:
    """Produce one message to ``topic`` (its logical name; default the review decisions)
    and wait for its acknowledgement: (topic, partition, offset). ``timestamp_ms``: the
    message's Kafka timestamp (default: the producer's clock)."""
    from confluent_kafka import KafkaException, Producer

    timeout_s = DELIVERY_TIMEOUT_S if timeout_s is None else timeout_s
    topic = settings.kafka.topic(topic)
    config = {**settings.kafka.client_config(), "bootstrap.servers": bootstrap,
              "acks": "all", "enable.idempotence": True,
              "message.timeout.ms": int(timeout_s * 1000)}
    reports: list[tuple[Any, Any]] = []
    try:
        producer = Producer(config)
        producer.produce(topic, key=key, value=value,
                         headers=[("schema-version", b"1"), ("content-type", b"application/json")],
                         on_delivery=lambda err, msg: reports.append((err, msg)),
                         **({} if timestamp_ms is None else {"timestamp": timestamp_ms}))
        producer.flush(timeout_s + 5)
    except (KafkaException, BufferError, ValueError) as error:
        raise PublishFailed(f"could not publish to {topic} at {bootstrap}: {error}") from None
    if not reports:
        raise PublishFailed(f"no acknowledgement from {bootstrap} for {topic} "
                            f"within {timeout_s:g}s")
    error, message = reports[0]
    if error is not None:
        raise PublishFailed(f"{topic} at {bootstrap} refused the message: {error.str()}")
    return message.topic(), message.partition(), message.offset()


def run(args: argparse.Namespace) -> int:
    from esg_leads.flows.config import ConfigError, load_settings

    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as error:
        raise DecisionError(str(error)) from None
    value, event = signed_decision(
        settings, case_id=args.case_id, verdict=args.verdict, reviewer=args.reviewer,
        tenant=args.tenant, investor_id=args.investor, note=args.note,
        event_id=args.event_id, event_time=args.event_time)
    print(value.decode())
    if args.bootstrap:
        try:
            topic, partition, offset = publish(settings, args.bootstrap,
                                               event.investor_id.encode(), value)
        except PublishFailed as failure:
            print(f"esg-leads review-decision: error: {failure}", file=sys.stderr)
            return 1
        print(f"published {event.verdict.value} of {event.case_id} by {event.reviewer} "
              f"({event.event_id}) to {topic}[{partition}]@{offset}", file=sys.stderr)
    return 0
