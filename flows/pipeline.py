"""``build_flow``: the whole qualification pipeline, wired once for every way of running it.

    input ─ parse ─┬─ signals, engagements ─ intake[tenant]: catalog → windows ──────┐
                   │                                    └─ unsubscribes ───────────────┤
                   ├─ profiles, outcomes, erasure ─────────────── investors[tenant/shard]
                   │                 ├─ features, labels ─ scoring[tenant] ─┬─ alerts  │
                   │                 │   └─ labels ─ global model (broadcast)┘ │        │
                   │                 └─ notices ──────────────────┐        scored      │
                   ├─ review decisions ───────────── lifecycle[tenant/shard] ─ leads, review,
                   │                                                handoff, audit, tombstones
                   └─ dead letters (parse, duplicates, late, erased, unknown case) ──── dlq
    input ─ offsets resets (a Kafka source gave up a stored position) ─────────── alerts

Investor windows are one operator per tenant, closed by the tenant's watermark
(its latest event time), not by a clock per key: bytewax's windowing keeps one
event clock per key, so a per-investor clock only advances when that investor acts
again, and a per-shard clock waits for the shard's own traffic. With one clock per
tenant every window closes as soon as any of the tenant's events passes its end
plus the allowed lateness; each investor's windows are phase-shifted, so closes —
and the scoring they start — arrive as a trickle rather than as bursts. Investor
state, scoring's inputs and the lead lifecycle are keyed ``tenant/shard`` (a stable
hash of the investor id into ``windows.shards_per_tenant`` groups), the unit of
parallelism across workers. The catalog and the windows share one keyed step
(:class:`~operators.intake.TenantIntake`): both are per tenant, and a second keyed
step cost more bytewax routing per batch than either agent's own work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import FixedPartitionedSink, Sink

from connectors.key_vault import KeyVault
from flows.steps import Clock, operator_builder, shard_key, system_clock
from flows.telemetry import Telemetry
from operators.erasure import KeyStore, erasure_subjects, seal_dead_letter
from operators.intake import TenantIntake
from operators.investor_state import InvestorShard
from operators.lifecycle import LifecycleShard
from operators.ops_alerts import offsets_reset_alert
from operators.scoring import GlobalLearner, TenantScorer
from operators.validation import Parser, bounded
from schemas.records import (
    Emitted,
    FeatureVector,
    GlobalModelUpdate,
    Ingested,
    InvestorNotice,
    InvestorWindow,
    LabelledExample,
    OffsetsReset,
)
from schemas.settings import Settings

_CATALOG_TOPICS = frozenset(("esg.property-signals", "investor.engagements", "investor.erasure"))
_INVESTOR_TOPICS = frozenset(("investor.profiles", "crm.outcomes", "investor.erasure"))


@dataclass(frozen=True)
class Sinks:
    """Where each output stream goes; the caller decides (Parquet, Kafka, test lists)."""

    leads: Sink
    dlq: Sink
    alerts: Sink
    review: Sink
    handoff: Sink
    audit: Sink
    #: ``{"topic", "key"}``: delete ``key`` from ``topic`` (erasure).
    tombstones: Sink


def keyed(step_id: str, up: Stream, keep: Callable[[Any], bool],
          key: Callable[[Any], str]) -> KeyedStream:
    """The items of ``up`` that ``keep`` accepts, keyed by ``key``: one step instead of a
    filter and a ``key_on`` (on live batches of a few events each step costs ~3-5 µs)."""
    return op.flat_map_batch(step_id, up, lambda batch: [(key(x), x) for x in batch if keep(x)])


def build_flow(settings: Settings, source: Source, sinks: Sinks,
               telemetry: Telemetry | None = None, clock: Clock = system_clock,
               keys: KeyStore | None = None) -> Dataflow:
    """The pipeline from ``source`` to ``sinks``; ``keys`` seal dead letters about
    investors (see :mod:`operators.erasure`; default: a key store in memory)."""
    telemetry = telemetry if telemetry is not None else Telemetry()
    keys = keys if keys is not None else KeyVault(":memory:")
    shards = settings.windows.shards_per_tenant
    flow = Dataflow("esg_leads")

    # 1. Parse & validate ------------------------------------------------------
    # A Kafka source also reports positions it had to give up (OffsetsReset): those
    # become ops alerts, never inputs.
    from_source = op.branch("from_source", op.input("input", flow, source),
                            lambda x: type(x) is not OffsetsReset)
    raw = from_source.trues
    offsets_alerts = op.map("offsets_alerts", from_source.falses,
                            lambda notice: offsets_reset_alert(notice, clock()))
    parser = Parser(settings.tenants, settings.ingest.max_future_skew)

    def parse(batch: list) -> list:
        # Counted per batch: a lock and a Prometheus update per message cost ~10 us each.
        telemetry.count_many(Counter(("in", message.topic) for message in batch))
        return parser.parse_batch(batch, clock())

    parsed = op.flat_map_batch("parse", raw, parse)
    checked = op.branch("valid", parsed, lambda x: isinstance(x, Ingested))
    valid: Stream[Ingested] = checked.trues
    rejected: Stream[dict] = checked.falses

    # 2. Intake per tenant: the property catalog (the ESG signal agent), then the
    #    investor windows, in one keyed step (see operators/intake.py) -----------
    def by_shard(tenant: str, investor_id: str) -> str:
        return shard_key(tenant, investor_id, shards)

    intake = op.branch("intake_ok", op.key_rm("intake_unkey", op.stateful_batch(
        "catalog",  # the catalog's step id: its snapshots resume into the intake
        keyed("to_catalog", valid, lambda i: i.topic in _CATALOG_TOPICS, lambda i: i.tenant),
        operator_builder("intake", lambda _: TenantIntake(settings), telemetry, clock,
                         restore=lambda state: TenantIntake.restore(state, settings)))),
        lambda x: not isinstance(x, dict))
    # Closed windows and unsubscribes, for the investors' shards.
    from_intake = op.key_on(
        "intake_shard", intake.trues,
        lambda x: by_shard(x.tenant, x.investor_id if isinstance(x, InvestorWindow)
                           else x.event.investor_id))

    # 3. Investor state, features and point-in-time labels ----------------------
    investor_events = keyed("to_investors", valid, lambda i: i.topic in _INVESTOR_TOPICS,
                            lambda i: by_shard(i.tenant, i.event.investor_id))
    investors = op.key_rm("investors_unkey", op.stateful_batch(
        "investors", op.merge("investor_stage_in", from_intake, investor_events),
        operator_builder("investors", lambda _: InvestorShard(settings), telemetry, clock)))
    investor_dlq = op.filter("investor_dlq", investors, lambda x: isinstance(x, dict))
    to_score = op.filter("to_score", investors,
                         lambda x: isinstance(x, (FeatureVector, LabelledExample)))

    # 4. Scoring per tenant, with a cross-tenant global model -------------------
    scoring_in = [op.key_on("score_by_tenant", to_score, lambda x: x.tenant)]
    if settings.scoring.global_model:
        labels = op.filter("labels", to_score, lambda x: isinstance(x, LabelledExample))
        global_updates = op.stateful_batch(
            "global_model", op.key_on("global_key", labels, lambda _: "global"),
            operator_builder("global_model", lambda _: GlobalLearner(settings), telemetry, clock))
        tenants = tuple(settings.tenants)
        scoring_in.append(op.flat_map(
            "broadcast_global", op.key_rm("global_unkey", global_updates),
            lambda update: [(t, GlobalModelUpdate(t, *update)) for t in tenants]))
    scored = op.key_rm("scoring_unkey", op.stateful_batch(
        "scoring", op.merge("scoring_in", *scoring_in),
        operator_builder("scoring", lambda first: TenantScorer(first.tenant, settings),
                         telemetry, clock)))
    scores = op.branch("is_alert", scored, lambda r: isinstance(r, dict))

    # 5. Lead lifecycle: compliance, outreach, review routing, state machine, handoff --
    lifecycle_in = op.merge(
        "lifecycle_in",
        op.key_on("scored_shard", scores.falses,
                  lambda s: by_shard(s.record["tenant"], s.record["investor_id"])),
        keyed("notices", investors, lambda x: isinstance(x, InvestorNotice),
              lambda n: by_shard(n.tenant, n.investor_id)),
        keyed("to_lifecycle", valid, lambda i: i.topic == "lead.review-decisions",
              lambda i: by_shard(i.tenant, i.event.investor_id)))
    lifecycle = op.key_rm("lifecycle_unkey", op.stateful_batch(
        "lifecycle", lifecycle_in,
        operator_builder("lifecycle", lambda _: LifecycleShard(settings), telemetry, clock,
                         restore=lambda state: LifecycleShard.restore(state, settings))))

    # 6. Outputs ------------------------------------------------------------------
    def output(step_id: str, stream: Stream, sink: Sink, kind: str | None = None) -> None:
        """``stream`` (or, with ``kind``, the lifecycle's records of that kind) to ``sink``,
        keyed when the sink is partitioned (Kafka, audit: they act at snapshots)."""
        def record(e: Emitted) -> dict:
            return {"topic": e.topic, "key": e.key} if kind == "tombstone" else e.record

        def sink_key(r: dict) -> str:
            return r.get("tenant") or ""

        fixed = isinstance(sink, FixedPartitionedSink)
        if kind is not None:  # select, convert and key in one step: per batch, each costs
            stream = op.flat_map_batch(f"{kind}_records", stream, lambda batch: [
                (sink_key(r), r) if fixed else r
                for r in (record(e) for e in batch if e.kind == kind)])
        elif fixed:
            stream = op.key_on(f"{step_id}_key", stream, sink_key)
        op.output(step_id, stream, sink)

    dead = op.merge("dead_letters", rejected, intake.falses, investor_dlq,
                    op.flat_map_batch("dlq_records", lifecycle,
                                      lambda batch: [e.record for e in batch if e.kind == "dlq"]))
    output("leads_out", lifecycle, sinks.leads, "leads")
    output("review_out", lifecycle, sinks.review, "review")
    output("handoff_out", lifecycle, sinks.handoff, "handoff")
    output("audit_out", lifecycle, sinks.audit, "audit")
    output("tombstones_out", lifecycle, sinks.tombstones, "tombstone")
    output("alerts_out", op.merge("alerts", scores.trues, offsets_alerts), sinks.alerts)
    # Erasure everywhere (operators/erasure.py): an erasure destroys the investor's key as
    # soon as it is parsed; every dead letter about an investor is cut to size, then
    # sealed under that key (or withheld once it is gone) before it leaves the flow.
    op.inspect("shred_keys", op.filter("erasures", valid,
                                       lambda i: i.topic == "investor.erasure"),
               lambda _s, i: [keys.destroy(*subject) for subject
                              in erasure_subjects(i.tenant, i.event.investor_id)])
    max_value_bytes = settings.dlq.max_value_bytes
    tenants = frozenset(settings.tenants)
    output("dlq_out", op.map("bound_dlq", op.inspect(
        "count_dlq", dead, lambda _s, r: telemetry.dead_letters([r])),
        lambda r: seal_dead_letter(bounded(r, max_value_bytes), keys, tenants)), sinks.dlq)
    return flow


__all__ = ["Sinks", "build_flow"]
