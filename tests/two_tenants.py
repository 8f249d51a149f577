"""Two tenants with the same investor id, ``inv-1``, and tenant A's erasure of it.

Stop 29's review found that the output topics, shared by tenants, were keyed by the
investor id alone: A's erasure tombstone deleted B's lead, review case and CRM copy.
:func:`outputs` runs the lifecycle operator of each tenant (a shard per tenant, as the
flow does) to a lead, a review case and (approved) a handoff of ``inv-1`` each, then
A's erasure; the tests of each layer push these very outputs through their sink, so
they hold the keys the operators make, not keys a test spelled by hand.

:func:`replayed` is the same story through the real flow: a replay of a recording
where two tenants both have ``inv-1``, each scored, reviewed and handed off, and
(``erase``) tenant A's erasure of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from esg_leads.connectors.recording import RecordingReader, RecordingWriter
from esg_leads.flows.config import load_settings
from esg_leads.flows.review_decision import signed_decision
from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.keys import case_id
from esg_leads.schemas.records import Emitted, InvestorNotice, RawMessage, Scored
from tests.operators.test_lifecycle import KEY, NOW, OTHER_KEY, SETTINGS, decision, notice, scored

A, B = "acme", "beta"
#: Signing keys of the two tenants' reviewers (tests/operators/test_lifecycle.py).
_KEYS = {A: KEY, B: OTHER_KEY}
#: Kafka topic of each output kind that is keyed per investor.
TOPICS = {"leads": "leads.scored", "review": "leads.review", "handoff": "crm.handoff"}


def _of_tenant(item: Scored, tenant: str) -> Scored:
    record = {**item.record, "tenant": tenant,
              "idempotency_key": item.record["idempotency_key"].replace(":acme:", f":{tenant}:")}
    return Scored(record, item.context)


def outputs() -> tuple[list[Emitted], list[Emitted]]:
    """Every output of both tenants' ``inv-1`` (lead, case, approved handoff), then
    tenant A's erasure of ``inv-1``: ``(before, erasure)``."""
    before: list[Emitted] = []
    shards = {}
    for tenant in (A, B):
        shard = shards[tenant] = LifecycleShard(SETTINGS)
        out = shard.process([_of_tenant(scored(0.52), tenant)], NOW)
        [case] = [e.record for e in out if e.kind == "review"]
        out += shard.process([decision(case["case_id"], "approve", f"d-{tenant}",
                                       tenant=tenant, key=_KEYS[tenant])], NOW)
        before += out
    erase = notice("erasure", 9)
    assert erase.tenant == A and isinstance(erase, InvestorNotice)
    return before, shards[A].process([erase], NOW)


def compacted(emitted: list[Emitted]) -> dict[tuple[str, str], dict]:
    """What compaction, and a consumer upserting by key, keeps of the per-investor
    topics: ``{(topic, key): record}``, the latest per key, a tombstone deleting it."""
    kept: dict[tuple[str, str], dict] = {}
    for e in emitted:
        if e.kind == "tombstone":
            kept.pop((e.topic, e.key), None)
        elif e.kind in TOPICS:
            kept[(TOPICS[e.kind], e.key)] = e.record
    return kept


def survivors(kept) -> set[tuple[str, str, str]]:  # noqa: ANN001 - records by anything
    """``(topic, tenant, investor_id)`` of the records kept."""
    return {(topic, r["tenant"], r["investor_id"]) for (topic, _), r in kept.items()}


#: What survives A's erasure: B's lead, case and handoff of its own ``inv-1``.
EXPECTED = {(topic, B, "inv-1") for topic in TOPICS.values()}


# ------------------------------------------------------------ the same, replayed

#: A generated world of two tenants where each has an investor the flow opens a review
#: case for (``uncertain_review_after = 0``); :func:`recording` renames both to ``inv-1``.
WORLD = WorldSpec(tenants=2, investors=200, properties=30, days=10, seed=6, malformed_rate=0.0,
                  reviewers=False, profile_answers=False)
#: ``(tenant, investor)`` of WORLD renamed ``inv-1``: both tenants' ``inv-1``.
RENAMED = {("acme-capital", "inv-0000012"): "inv-1", ("borealis-re", "inv-0000046"): "inv-1"}
TENANT_A, TENANT_B = "acme-capital", "borealis-re"
#: When each tenant's reviewer approves its ``case:<tenant>/inv-1:1``: after the flow opened it (A's
#: on day 7, B's on day 4), before anything closes it (B's CRM disqualifies on day 6).
DECIDED = {TENANT_A: WORLD.start + timedelta(days=9), TENANT_B: WORLD.start + timedelta(days=5)}
#: Settings of the replays: review cases open at once (as they would 7 days later).
OVERRIDES = {"lifecycle": {"uncertain_review_after": 0}}


def recording(root: Path, erase: bool) -> Path:
    """WORLD's messages with both tenants' investor renamed ``inv-1``, each tenant's
    reviewer approving its ``case:<tenant>/inv-1:1`` (so each ``inv-1`` has a lead, a case and a
    handoff), and with ``erase`` tenant A's erasure of ``inv-1`` after everything else.

    Built from a generated world rather than by hand so that the flow scores the two
    leads for the reasons it scores any (engagements, profiles, property signals); the
    renamed investors were chosen because the flow opens a case for each.
    """
    world = root / "world"
    if not (world / "manifest.json").exists():
        generate(WORLD, world)
    settings = load_settings(world / "config.toml", environ={}, overrides=OVERRIDES)
    messages = []
    for batch in RecordingReader(world).iter_batches():
        for m in batch:
            payload = orjson.loads(m.value)
            new = RENAMED.get((payload.get("tenant"), payload.get("investor_id")))
            if new is not None:
                payload["investor_id"] = new
                m = m._replace(key=new.encode(), value=orjson.dumps(payload))
            messages.append(m)
    last_ms = max(m.timestamp_ms for m in messages)
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        offsets[(m.topic, m.partition)] = max(offsets.get((m.topic, m.partition), -1), m.offset)

    def add(topic: str, value: bytes, at_ms: int) -> None:
        offsets[(topic, 0)] = offsets.get((topic, 0), -1) + 1
        messages.append(RawMessage(topic, 0, offsets[(topic, 0)], at_ms, b"inv-1", value))

    for tenant, decided in DECIDED.items():
        value, _ = signed_decision(settings, case_id=case_id(tenant, "inv-1", 1),
                                   verdict="approve", reviewer="reviewer-1", tenant=tenant,
                                   investor_id="inv-1",
                                   event_id=f"rd-{tenant}", event_time=decided.isoformat())
        add("lead.review-decisions", value, int(decided.timestamp() * 1000))
    if erase:
        erased_at = datetime.fromtimestamp((last_ms + 60_000) / 1000, tz=timezone.utc)
        add("investor.erasure", orjson.dumps({
            "tenant": TENANT_A, "event_id": "erase-a-inv-1", "event_time": erased_at.isoformat(),
            "source": "test", "investor_id": "inv-1"}), last_ms + 60_000)
    out = root / ("recording-erased" if erase else "recording")
    with RecordingWriter(out) as writer:
        writer.write_many(sorted(messages, key=RawMessage.sort_key))
    (out / "config.toml").write_text((world / "config.toml").read_text())
    return out


def replayed(root: Path, erase: bool) -> Path:
    """The replay of :func:`recording` (``root/run`` or ``root/run-erased``)."""
    source = recording(root, erase)
    out = root / ("run-erased" if erase else "run")
    replay(source, out, load_settings(source / "config.toml", environ={}, overrides=OVERRIDES))
    return out
