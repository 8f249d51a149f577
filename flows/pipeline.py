"""``build_flow``: the whole qualification pipeline, wired once for every way of running it.

    input ─ parse ─ intake[tenant]: catalog → windows (other events pass through) ─┐
              │                                                                    │
              │     investors[tenant/shard] ◄──────────────────────────────────────┘
              │       ├─ features, labels ─ scoring[tenant] ─┬─ alerts
              │       │   └─ labels ─ global model (broadcast)┘
              │       ├─ notices, review decisions ─┐      scored
              │       │                             ▼        ▼
              │       │                    lifecycle[tenant/shard] ─ leads, review,
              │       │                                 handoff, audit, tombstones
              └───────┴─ dead letters (parse, duplicates, late, erased, unauthorized) ─ dlq
    input ─ offsets resets (a Kafka source gave up a stored position) ─────────── alerts

Every keyed step sees its input in one order that depends on the input messages
alone, whatever the batch size or worker count (see :mod:`flows.ordering`): items
carry the position of the message they derive from, and a step fed by several
others (scoring, the global model, the lifecycle) processes them in that order once
every feeder has ticked past them. Every valid event goes through the intake, so
an investor shard's input is one ordered lane.

Investor windows are one operator per tenant, closed by the tenant's watermark
(its latest event time), not by a clock per key: bytewax's windowing keeps one
event clock per key, so a per-investor clock only advances when that investor acts
again, and a per-shard clock waits for the shard's own traffic. With one clock per
tenant every window closes as soon as any of the tenant's events passes its end
plus the allowed lateness; each investor's windows are phase-shifted, so closes —
and the scoring they start — arrive as a trickle rather than as bursts. Investor
state, scoring's inputs and the lead lifecycle are keyed ``tenant/shard`` (a stable
hash of the investor id into ``windows.shards_per_tenant`` groups), the unit of
parallelism across workers. Silence re-scores run on the same tenant clock: the
intake sends a shard a :class:`~schemas.records.SilenceDue` when the tenant's
watermark reaches an investor's re-score point, so a re-score is published at the
tenant's first engagement past it, not when the shard next hears from one of its own
investors. The catalog and the windows share one keyed step
(:class:`~operators.intake.TenantIntake`): both are per tenant, and a second keyed
step cost more bytewax routing per batch than either agent's own work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source
from bytewax.operators import KeyedStream
from bytewax.outputs import FixedPartitionedSink, Sink

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.connectors.recording_source import RecordingSource
from esg_leads.flows import exchange  # noqa: F401 - registers the compact pickled forms of exchanged items
from esg_leads.flows.ordering import SOURCE_LANE, Stamped, Tick, TickingSource, ordered_builder, route
from esg_leads.flows.placement import READER_SHARE, assign_tenants, placed, unplaced
from esg_leads.flows.reading import part_lane, reader_lane, reader_rows
from esg_leads.flows.steps import Clock, shard_key, system_clock
from esg_leads.flows.telemetry import Telemetry
from esg_leads.operators.erasure import KeyStore, erasure_subjects, seal_dead_letter
from esg_leads.operators.intake import TenantIntake
from esg_leads.operators.investor_state import InvestorShard
from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.operators.model_lifecycle import check_challengers
from esg_leads.operators.ops_alerts import offsets_reset_alert
from esg_leads.operators.scoring import GlobalLearner, TenantScorer, global_contributors, uses_global_prior
from esg_leads.operators.validation import Parser, bounded
from esg_leads.operators.warm_start import check_warm_start
from esg_leads.schemas.keys import KEYED_BY_INVESTOR
from esg_leads.schemas.records import (
    Emitted,
    FeatureVector,
    FeedStatus,
    GlobalModelUpdate,
    Ingested,
    InvestorNotice,
    InvestorWindow,
    LabelledExample,
    OffsetsReset,
    Scored,
    SilenceDue,
    Tombstone,
)
from esg_leads.schemas.settings import Settings

#: Each output kind's topic (logical name; ``kafka.topic`` maps it to the physical one).
OUTPUT_KINDS = {"leads": "leads.scored", "review": "leads.review", "handoff": "crm.handoff",
                "alerts": "ops.alerts", "dlq": "leads.dlq", "shadow": "leads.shadow"}
#: The kinds whose topic an erasure tombstones (keyed per investor).
TOMBSTONED = {kind: topic for kind, topic in OUTPUT_KINDS.items() if topic in KEYED_BY_INVESTOR}

@dataclass(frozen=True)
class Sinks:
    """Where each output stream goes; the caller decides (Parquet, Kafka, test lists)."""

    leads: Sink
    dlq: Sink
    alerts: Sink
    review: Sink
    handoff: Sink
    audit: Sink
    #: ``{"topic", "key"}``: delete ``key`` from ``topic`` (erasure). ``None``: each
    #: per-investor topic's own sink receives its topic's deletions instead, as
    #: :class:`~schemas.records.Tombstone` items among its records, in the order the
    #: lifecycle made them. Kafka needs that: a lead and the erasure tombstone after it
    #: sent by two producers reach the partition in either order, and compaction then
    #: keeps the lead of an erased investor.
    tombstones: Sink | None
    #: Challenger scores (``leads.shadow``); ``None``: not written (offline training).
    shadow: Sink | None = None


def build_flow(settings: Settings, source: Source, sinks: Sinks,
               telemetry: Telemetry | None = None, clock: Clock = system_clock,
               keys: KeyStore | None = None, tick_interval: float = 0.0,
               scorer: Callable[[str], TenantScorer] | None = None,
               placement: int = 1, snapshots: bool = True,
               tenant_weights: Mapping[str, float] | None = None,
               processes: int = 1) -> Dataflow:
    """The pipeline from ``source`` to ``sinks``; ``keys`` seal dead letters about
    investors (see :mod:`operators.erasure`; default: a key store in memory).

    ``tick_interval`` (seconds of wall time) bounds how often the source ticks (see
    :mod:`flows.ordering`): live runs set a few milliseconds, replays tick per batch.
    ``scorer`` builds a tenant's scorer (default :class:`TenantScorer`; offline training
    passes one that keeps what it learns). A model to start from that is missing,
    corrupt or of another feature set stops here, before any input is read.

    ``placement`` (the cluster's worker count; 1: none) runs all of a tenant's keyed
    steps on one worker, tenants spread to balance their ``tenant_weights`` (e.g.
    messages; equal when not given) and over ``processes`` first
    (:func:`flows.placement.assign_tenants`), instead of about half of every step's
    items crossing to another worker. A :class:`RecordingSource` is then read by every
    worker, each its own tenants' messages (:mod:`flows.reading`), so no input event
    crosses either; another source is read by worker 0, whose share of the work that
    is counted in the placement. Keys get a suffix, so snapshots taken without it do not resume into it:
    replays set it, live runs (which resume) do not.

    ``snapshots=False`` (runs without a recovery store) skips pickling state at epoch
    ends and at the end of the input: bytewax asks for snapshots either way.
    """
    check_warm_start(settings)
    check_challengers(settings)
    telemetry = telemetry if telemetry is not None else Telemetry()
    keys = keys if keys is not None else KeyVault(":memory:")
    shards = settings.windows.shards_per_tenant
    tenants = tuple(settings.tenants)
    flow = Dataflow("esg_leads")

    # Each tenant's keys: its intake and scoring key, and its shards' keys.
    # A placed recording is read by every worker, each its own tenants' messages
    # (flows/reading.py): no input event crosses, and reading weighs on no one worker.
    split = placement > 1 and isinstance(source, RecordingSource)
    home = assign_tenants(tenants, placement, tenant_weights,
                          reader=0.0 if split else READER_SHARE, processes=processes)
    tenant_key = {t: placed(t, home[t], placement) for t in tenants}
    shard_keys = {t: [placed(f"{t}/{n:04d}", home[t], placement) for n in range(shards)]
                  for t in tenants}
    named = {unplaced(k): k for keys_ in shard_keys.values() for k in keys_}
    # A sink with one partition per worker (a placed replay's audit trail): partition n
    # is worker n's (bytewax gives the n-th of the sorted partitions to worker n), so a
    # tenant's rows are written where its steps run: through one partition they all
    # crossed to worker 0 (1.3 audit rows per input event; pickled, sent and loaded).
    worker_part = {t: str(home[t]) for t in tenants}

    def by_shard(tenant: str, investor_id: str) -> str:
        key = shard_key(tenant, investor_id, shards)
        return named.get(key, key)  # a tenant not served: dead-lettered before this

    def shards_of(tenant: str) -> list[str]:
        return shard_keys[tenant]

    def tenant_of(lane: str) -> str:  # "step:tenant" or "step:tenant/shard", placed
        return unplaced(lane.split(":", 1)[1].split("/", 1)[0])

    def home_key(x: Any) -> str:
        return tenant_key[x.tenant]

    def step(step_id: str, up: KeyedStream, factory: Callable[[str], Any],
             lanes: Callable[[str], frozenset[str]], key_of: Callable[[Any], str],
             restore: Callable[[Any], Any] | None = None, name: str | None = None) -> Stream:
        return op.key_rm(f"{step_id}_unkey", op.stateful_batch(step_id, up, ordered_builder(
            name or step_id, factory, lanes, key_of, telemetry, clock, restore, snapshots)))

    # 1. Parse & validate: every valid event gets its position in the input order ----
    parser = Parser(settings.tenants, settings.ingest.max_future_skew)

    def destroy_keys(erasure: Ingested, at: tuple) -> None:
        """An erasure's key destruction (operators/erasure.py), noting its position."""
        for subject in erasure_subjects(erasure.tenant, erasure.event.investor_id):
            keys.destroy(*subject, at=at)

    def shred(message: Any) -> None:  # another reader's erasure, as this one passes it
        result = parser.parse(message, clock())
        if type(result) is Ingested and result.topic == "investor.erasure":
            destroy_keys(result, message.sort_key())

    if split:  # several readers: each sees every erasure (flows/reading.py)
        source = source.with_rows(reader_rows(home, placement, on_foreign_erasure=shred))
    if isinstance(source, FixedPartitionedSource):
        source = TickingSource(source, tick_interval, part_lane if split else None)
    # A Kafka source also reports positions it had to give up (OffsetsReset): those
    # become ops alerts, never inputs.
    from_source = op.branch("from_source", op.input("input", flow, source),
                            lambda x: type(x) is not OffsetsReset)
    raw = from_source.trues
    offsets_alerts = op.map("offsets_alerts", from_source.falses,
                            lambda notice: offsets_reset_alert(notice, clock()))

    def parse(batch: list) -> list:
        # Counted per batch: a lock and a Prometheus update per message cost ~10 us each.
        telemetry.count_many(Counter(("in", m.topic) for m in batch if type(m) is not Tick))
        now = clock()
        out: list = []
        for message in batch:
            if type(message) is Tick:
                out.append(message)
                continue
            result = parser.parse(message, now)
            if type(result) is not Ingested:
                # A dead letter goes out as (position, letter): see "bound_dlq" below.
                out.append((message.sort_key(), result))
                continue
            if message.topic == "investor.erasure":
                # The key is destroyed here, before this reader's next message, with the
                # erasure's position, which decides whether a dead letter still on its
                # way out is sealed (from before) or withheld (from after).
                destroy_keys(result, message.sort_key())
            out.append(Stamped(message.sort_key(), SOURCE_LANE, 0, result))
        return out

    parsed = op.flat_map_batch("parse", raw, parse)
    rejected = op.filter("rejected", parsed, lambda x: type(x) is tuple)

    # 2. Intake per tenant: the property catalog (the ESG signal agent), then the
    #    investor windows, in one keyed step (see operators/intake.py). Every valid
    #    event goes through it, so that the investor shards get one ordered lane. ----
    def source_lane(tenant: str) -> str:  # its messages' reader's lane
        return reader_lane(home[tenant]) if split else SOURCE_LANE

    fed = {lane: [tenant_key[t] for t in tenants if source_lane(t) == lane]
           for lane in {source_lane(t) for t in tenants}}
    intake = step(
        "catalog",  # the catalog's step id: its snapshots resume into the intake
        route("to_intake", parsed, lambda i: ((tenant_key[i.tenant], i),),
              lambda lane: fed.get(lane, ())),
        lambda _key: TenantIntake(settings),
        lambda key: frozenset((source_lane(unplaced(key)),)),
        home_key, restore=lambda state: TenantIntake.restore(state, settings),
        name="intake")

    # 3. Investor state, features and point-in-time labels ----------------------
    def is_command(x: Any) -> bool:  # ops.control: for the tenant's scoring step only
        return type(x) is Ingested and x.topic == "ops.control"

    def investor_of(x: Any) -> str:
        return by_shard(x.tenant, x.investor_id if isinstance(x, (InvestorWindow, SilenceDue))
                        else x.event.investor_id)

    investors = step(
        "investors",
        route("to_investors", intake,
              lambda x: () if type(x) is dict or is_command(x) else ((investor_of(x), x),)
              if type(x) is not FeedStatus else tuple((k, x) for k in shards_of(x.tenant)),
              lambda lane: shards_of(tenant_of(lane))),
        lambda _key: InvestorShard(settings),
        lambda key: frozenset((f"intake:{tenant_key[key.split('/', 1)[0]]}",)), investor_of)

    # 4. Scoring per tenant, with an opt-in cross-tenant global model -----------
    def shard_lanes(tenant: str) -> set[str]:
        return {f"investors:{shard}" for shard in shards_of(tenant)}

    scoring_in = [route(
        "to_scoring", investors,
        lambda x: ((tenant_key[x.tenant], x),)
        if isinstance(x, (FeatureVector, LabelledExample))
        # An erasure: the scorer's retraining buffer forgets the investor's labels.
        or (type(x) is InvestorNotice and x.kind == "erasure") else (),
        lambda lane: (tenant_key[tenant_of(lane)],)),
        # Model commands straight from the intake, in the input order with the rest
        # (operators/model_lifecycle.py: a command acts at its own position).
        route("commands_to_scoring", intake,
              lambda x: ((tenant_key[x.tenant], x),) if is_command(x) else (),
              lambda lane: (tenant_key[tenant_of(lane)],))]
    # Opt-in only: the global model learns from contributors and reaches only the
    # tenants that use it, so no other tenant's input can reach an isolated tenant.
    users = tuple(t for t in tenants if uses_global_prior(settings, t))
    contributors = global_contributors(settings)
    if users and contributors:
        all_shards = frozenset().union(*(shard_lanes(t) for t in tenants))
        global_updates = step(
            "global_model",
            route("to_global", investors,
                  lambda x: (("global", x),)
                  if isinstance(x, LabelledExample) and x.tenant in contributors else (),
                  lambda _lane: ("global",)),
            lambda _key: GlobalLearner(settings), lambda _key: all_shards, lambda _x: "global",
            restore=lambda state: GlobalLearner.restore(state, settings))
        scoring_in.append(route(
            "broadcast_global", global_updates,
            lambda update: [(tenant_key[t], GlobalModelUpdate(t, *update)) for t in users],
            lambda _lane: [tenant_key[t] for t in users]))

    def global_lane(tenant: str) -> set[str]:
        return {"global_model:global"} if tenant in users and contributors else set()

    new_scorer = scorer or (lambda tenant: TenantScorer(tenant, settings))
    scored = step(
        "scoring", op.merge("scoring_in", *scoring_in),
        lambda key: new_scorer(unplaced(key)),
        lambda key: frozenset(shard_lanes(unplaced(key)) | global_lane(unplaced(key))
                              | {f"intake:{key}"}), home_key,
        restore=lambda state: TenantScorer.restore(state, settings))

    # 5. Lead lifecycle: compliance, outreach, review routing, state machine, handoff --
    def lifecycle_key(x: Any) -> str:
        if isinstance(x, Scored):
            return by_shard(x.record["tenant"], x.record["investor_id"])
        if isinstance(x, InvestorNotice):
            return by_shard(x.tenant, x.investor_id)
        return by_shard(x.tenant, x.event.investor_id)  # a review decision

    lifecycle = step(
        "lifecycle", op.merge(
            "lifecycle_in",
            route("scored_to_lifecycle", scored,
                  lambda x: ((lifecycle_key(x), x),) if isinstance(x, Scored) else (),
                  lambda lane: shards_of(tenant_of(lane))),
            route("investors_to_lifecycle", investors,
                  lambda x: ((lifecycle_key(x), x),)
                  if isinstance(x, (InvestorNotice, Ingested)) else (),
                  lambda lane: (lane.split(":", 1)[1],))),
        lambda _key: LifecycleShard(settings),
        lambda key: frozenset((f"investors:{key}",
                               f"scoring:{tenant_key[key.split('/', 1)[0]]}")),
        lifecycle_key, restore=lambda state: LifecycleShard.restore(state, settings))

    # 6. Outputs ------------------------------------------------------------------
    def output(step_id: str, stream: Stream, sink: Sink, kind: str | None = None) -> None:
        """``stream``'s records (with ``kind``, the lifecycle's records of that kind) to
        ``sink``, keyed when the sink is partitioned (Kafka, audit: they act at snapshots)."""
        def record(e: Emitted) -> dict | Tombstone:
            if e.kind != "tombstone":
                return e.record
            return {"topic": e.topic, "key": e.key} if kind == "tombstone" else Tombstone(
                e.topic, e.key)

        per_worker = getattr(sink, "partitions", 1) == placement > 1

        def sink_key(r: dict | Tombstone) -> str:
            tenant = r.tenant if type(r) is Tombstone else r.get("tenant")
            if per_worker:  # the tenant's rows stay on the worker its steps run on
                return worker_part.get(tenant, "0")
            return tenant or ""

        # The topic's own deletions travel with its records (Sinks.tombstones is None).
        deletes = TOMBSTONED.get(kind) if sinks.tombstones is None else None

        fixed = isinstance(sink, FixedPartitionedSink)
        if kind is not None:  # select, convert and key in one step: per batch, each costs
            stream = op.flat_map_batch(f"{kind}_records", stream, lambda batch: [
                (sink_key(r), r) if fixed else r
                for r in (record(v.item) for v in batch
                          if type(v) is Stamped and (v.item.kind == kind or (
                              deletes is not None and v.item.kind == "tombstone"
                              and v.item.topic == deletes)))])
        elif fixed:
            stream = op.key_on(f"{step_id}_key", stream, sink_key)
        op.output(step_id, stream, sink)

    def dicts(step_id: str, stream: Stream, alerts: bool = False) -> Stream:
        """The alerts (they have a ``kind``) among a step's outputs, without their stamps,
        or the dead letters as (position, letter)."""
        return op.flat_map_batch(step_id, stream, lambda batch: [
            v.item if alerts else (v.base, v.item) for v in batch
            if type(v) is Stamped and type(v.item) is dict and ("kind" in v.item) is alerts])

    dead = op.merge("dead_letters", rejected, dicts("intake_dlq", intake),
                    dicts("investor_dlq", investors), dicts("scoring_dlq", scored),
                    op.flat_map_batch("dlq_records", lifecycle, lambda batch: [
                        (v.base, v.item.record) for v in batch
                        if type(v) is Stamped and v.item.kind == "dlq"]))
    output("leads_out", lifecycle, sinks.leads, "leads")
    output("review_out", lifecycle, sinks.review, "review")
    output("handoff_out", lifecycle, sinks.handoff, "handoff")
    # Scoring's own records (model changes' audit rows, shadow scores) are Emitted too.
    governed = op.filter("governed", scored,
                         lambda v: type(v) is Stamped and type(v.item) is Emitted)
    output("audit_out", op.merge("audit_in", lifecycle, governed), sinks.audit, "audit")
    if sinks.shadow is not None:
        output("shadow_out", governed, sinks.shadow, "shadow")
    if sinks.tombstones is not None:  # leads.shadow's tombstones come from the scorer
        output("tombstones_out", op.merge("tombstones_in", lifecycle, governed),
               sinks.tombstones, "tombstone")
    output("alerts_out", op.merge("alerts", dicts("alert_records", scored, alerts=True),
                                  dicts("intake_alerts", intake, alerts=True), offsets_alerts),
           sinks.alerts)
    # Every dead letter about an investor is cut to size, then sealed under the
    # investor's key, or withheld if their erasure came before the letter's position in
    # the input (not before the letter got here: that is a matter of timing).
    max_value_bytes = settings.dlq.max_value_bytes
    served = frozenset(settings.tenants)
    output("dlq_out", op.map("bound_dlq", op.inspect(
        "count_dlq", dead, lambda _s, r: telemetry.dead_letters([r[1]])),
        lambda r: seal_dead_letter(bounded(r[1], max_value_bytes), keys, served, at=r[0])),
        sinks.dlq)
    return flow


__all__ = ["Sinks", "build_flow"]
