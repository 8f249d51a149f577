"""Two tenants with the same investor id, ``inv-1``, and tenant A's erasure of it.

Stop 29's review found that the output topics, shared by tenants, were keyed by the
investor id alone: A's erasure tombstone deleted B's lead, review case and CRM copy.
:func:`outputs` runs the lifecycle operator of each tenant (a shard per tenant, as the
flow does) to a lead, a review case and (approved) a handoff of ``inv-1`` each, then
A's erasure; the tests of each layer push these very outputs through their sink, so
they hold the keys the operators make, not keys a test spelled by hand.
"""

from __future__ import annotations

from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.schemas.records import Emitted, InvestorNotice, Scored
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
