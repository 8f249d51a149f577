"""Helpers for the CRM tests: valid handoffs, a fake CRM process, crm-sync processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from esg_leads.schemas.outputs import CrmHandoff
from tests import zygote
from tests.kafka_helpers import ESG_LEADS

SECRET = "w" * 40


def handoff(investor: str, n: int, tenant: str = "acme-capital") -> dict:
    """A valid ``crm.handoff`` record: the ``n``-th of ``investor``."""
    now = f"2026-03-01T09:{n // 60 % 60:02d}:{n % 60:02d}Z"
    record = {
        "schema_version": 1, "idempotency_key": f"handoff:{tenant}:{investor}:{n}",
        "qualification_id": f"q:{investor}:{n}", "tenant": tenant, "investor_id": investor,
        "event_time": now, "processed_at": now, "score": 80, "probability": 0.8, "tier": "hot",
        "esg_alignment_score": 70.0, "esg_min_epc_band": "B", "esg_required_certifications": [],
        "sfdr_target": None, "uk_sdr_label": None, "target_asset_classes": ["office"],
        "target_countries": ["DE"], "ticket_max_eur": 1e6, "consent": {"email": "opted_in"},
        "contact_ref": "c0ffee", "approved_by_review": False,
        "outreach_plan": {"plan_id": "p", "agent_version": "o/1", "steps": [],
                          "lead_properties": [], "claims": []},
        "compliance": {"verdict": "allowed", "pack": "EU", "agent_version": "c/1",
                       "allowed_channels": ["email"], "blocked_channels": [],
                       "removed_claims": [], "rules_applied": []},
    }
    CrmHandoff.model_validate_json(orjson.dumps(record))
    return record


def publish(bootstrap: str, items: list[tuple[str, dict | None]],
            topic: str = "crm.handoff") -> None:
    """``(message key, record or None for a tombstone)`` in order; the flow's key is
    ``<tenant>/<investor_id>`` (schemas/keys.py)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, record in items:
        producer.produce(topic, key=key.encode(),
                         value=None if record is None else orjson.dumps(record))
    assert producer.flush(10) == 0


def start_fake_crm(*args: str, log: Path) -> tuple[zygote.Child, str]:
    process = zygote.popen([ESG_LEADS, "fake-crm", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                               start_new_session=True)
    line = process.stdout.readline()  # "fake CRM on http://127.0.0.1:PORT ..."
    assert line.startswith("fake CRM on "), line
    return process, line.split()[3]


def crm_log(url: str) -> dict:
    return httpx.get(f"{url}/_admin/log", timeout=10).json()


def write_config(path: Path, bootstrap: str, url: str, **crm: object) -> Path:
    """A TOML config: short backoff and cooldown so chaos tests take seconds."""
    settings = {"max_in_flight": 2, "rate_limit_per_second": 200, "timeout": 1.0,
                "backoff_base": 0.02, "backoff_max": 0.2, "auth_retry": 0.3,
                "failures": 3, "cooldown": 0.5, "session_timeout_ms": 6000, **crm}
    lines = ["[kafka]", f'bootstrap_servers = "{bootstrap}"',
             # A member killed with -9 holds its partitions until its session expires.
             "[kafka.client]", f'"session.timeout.ms" = {settings["session_timeout_ms"]}',
             # librdkafka wants heartbeats well inside the session (3 s by default).
             f'"heartbeat.interval.ms" = {min(3000, settings["session_timeout_ms"] // 4)}',
             # crm-sync creates leads only of configured tenants (tests/two_tenants.py's too).
             *(f"[tenants.{tenant}]" for tenant in ("acme-capital", "acme", "beta")),
             "[dlq]",
             f'key_store = "{path.parent / "keys.sqlite"}"', "[crm]", f'url = "{url}"']
    for name in ("max_in_flight", "rate_limit_per_second", "timeout"):
        lines.append(f"{name} = {settings[name]}")
    if "token" in settings:
        lines.append(f'token = "{settings["token"]}"')
    lines += ["[crm.backoff]", f"base = {settings['backoff_base']}",
              f"max = {settings['backoff_max']}", f"auth_retry = {settings['auth_retry']}",
              "[crm.breaker]", f"failures = {settings['failures']}",
              f"cooldown = {settings['cooldown']}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_sync(config: Path, *args: str, log: Path) -> zygote.Child:
    return zygote.popen([ESG_LEADS, "crm-sync", "--config", str(config), *args],
                            stdout=log.open("a"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def committed(bootstrap: str, partitions: int = 3) -> int:
    """Sum of crm-sync's committed offsets over ``crm.handoff``'s partitions."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "esg-leads-crm-sync",
                         "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition("crm.handoff", p) for p in
                                      range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in offsets)
    finally:
        consumer.close()
