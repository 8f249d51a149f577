"""The lead lifecycle stage: from a score to a decision a regulated fund can stand behind.

For each scored lead, in order: the compliance agent decides which channels are
lawful; the outreach agent plans a sequence and proposes ESG claims; the
anti-greenwashing check keeps only supported claims; the review agent lists what
a person must check; the state machine moves the lead. A lead goes to review
(``leads.review``) or, when clearly qualified, to the CRM (``crm.handoff``).

Emission is idempotent by construction: a lead record is emitted only on a state
transition or a material score change, and every record's idempotency key derives
from the lead and the transition (``handoff:<tenant>:<investor>:q<n>`` for the n-th
qualification), so replaying the input, or resuming after a crash, reproduces the
same keys and a consumer that upserts by key sees each handoff once.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import orjson

from esg_leads.operators import compliance as compliance_agent
from esg_leads.operators import contact_rules, outreach, outreach_messages, review, review_auth, routing
from esg_leads.operators.lifecycle_audit import (
    AGENT_VERSION,
    erasure_row,
    notice_row,
    refusal_row,
    scored_rows,
)
from esg_leads.operators.audit import dumps
from esg_leads.operators.claims import ClaimCheck
from esg_leads.operators.compliance import ComplianceAgent
from esg_leads.operators.dedup import EventIdDedup
from esg_leads.operators.kept_record import pack, unpack
from esg_leads.operators.lead_state import LeadStateMachine, shared_reason
from esg_leads.operators.lineage import append_refs, audit_pointer
from esg_leads.operators.lineage import ref as lineage_ref
from esg_leads.operators.property_catalog import salted_id
from esg_leads.operators.validation import dead_letter, processing_error
from esg_leads.schemas.keys import case_id as make_case_id
from esg_leads.schemas.keys import names_case, output_key, qualification_id
from esg_leads.schemas.outputs import SCHEMA_VERSION, DlqReason
from esg_leads.schemas.records import Emitted, Ingested, InvestorContext, InvestorNotice, Scored
from esg_leads.schemas.settings import Settings

#: Outputs keyed by investor that the lifecycle writes: an erasure tombstones the
#: investor on each. (``leads.shadow``'s tombstone comes from the scorer, which makes the
#: shadow scores: one step, in position order, so the deletion follows them.)
OUTPUT_TOPICS = ("leads.scored", "leads.review", "crm.handoff")


def effective_consents(context: InvestorContext) -> dict[str, str]:
    """The consents compliance applies: an unsubscribe is an e-mail objection. Callers
    only read the dict, which is the context's own unless it has to differ."""
    if not context.unsubscribed or context.consents.get("email") == "opted_out":
        return context.consents
    return {**context.consents, "email": "opted_out"}


class LeadRecord:
    """What the lifecycle remembers about one lead."""

    __slots__ = ("machine", "context", "last_score", "last_record", "qualifications", "cases",
                 "open_case", "needs_info", "uncertain_since", "contacts")

    def __init__(self, context: InvestorContext | None) -> None:
        self.machine = LeadStateMachine()
        self.context = context
        self.last_score: int | None = None
        #: The last emitted lead record as JSON (:meth:`keep`); a dict in snapshots of
        #: earlier versions, which kept the published dict until a snapshot encoded it.
        self.last_record: dict | bytes | None = None
        self.qualifications = 0
        self.cases = 0
        self.open_case: str | None = None
        self.needs_info = False
        #: Since when (epoch s) the model's uncertainty alone would send it to review.
        self.uncertain_since: float | None = None
        #: Contacts earlier plans scheduled, what caps count (:func:`contact_rules.kept_contacts`;
        #: a list of ``(medium, epoch s)`` in snapshots of earlier versions).
        self.contacts: tuple | list = ()

    def __getstate__(self) -> tuple:
        if isinstance(self.last_record, dict):
            # Keep the encoding: later snapshots of this shard reuse it until the
            # next publish replaces the record (snapshots cover every lead of a shard).
            self.last_record = pack(dumps(self.last_record))
        return tuple(getattr(self, name) for name in self.__slots__)

    def keep(self, record: dict, lineage: bytes | None = None) -> None:
        """Remember the emitted ``record``, encoded and compressed (:mod:`.kept_record`): its
        dict tree cost ~15 KB per lead beyond the parts it shares with investor state,
        its JSON ~5.6 KB, compressed against a dictionary of lead records ~0.8 KB (issue 16). Read back only for a state-only
        re-emit or a handoff (:meth:`last_record_copy`).

        ``lineage``, the JSON of ``record["lineage"]`` if the caller has it (the audit
        rows carry it), goes in as it is: up to 64 references, often the record's largest
        part, are then encoded once per publish, not twice. Same bytes either way."""
        if lineage is not None:
            record = {**record, "lineage": orjson.Fragment(lineage)}
        self.last_record = pack(dumps(record))

    def last_record_copy(self) -> dict:
        """A copy of the last emitted record whose top-level fields may be replaced.

        Its nested parts are shared with the published record, which nothing changes
        (see ``last_record``): a deep copy cost ~1.4 % of a replay's CPU. A record kept
        as JSON (since a snapshot) is decoded, with its instants as datetimes again
        (records are built with datetimes; a string there reached the Parquet sink as a
        string, which it cannot store)."""
        record = self.last_record
        if isinstance(record, dict):
            return dict(record)
        copy = orjson.loads(unpack(record))  # type: ignore[arg-type]
        for name in _INSTANTS:
            if isinstance(copy.get(name), str):
                copy[name] = datetime.fromisoformat(copy[name])
        for step in (copy.get("outreach_plan") or {}).get("steps", ()):
            if isinstance(step.get("at"), str):
                step["at"] = datetime.fromisoformat(step["at"])
        return copy

    def __setstate__(self, state: tuple) -> None:
        # Snapshots saved before uncertain_since, then contacts, were added.
        state = (*state, None, [])[:len(self.__slots__)] if len(state) < len(self.__slots__) \
            else state
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


#: The top-level datetime fields of a lead record.
_INSTANTS = ("event_time", "processed_at")
class LifecycleShard:
    """Lifecycle state of the leads of one (tenant, shard) key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.leads: dict[str, LeadRecord] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        #: Review queue and event clock of this shard (flows.telemetry combines shards).
        self.gauges: dict[tuple[str, str], float | None] = {}
        #: Investors with an open case -> the event time (epoch s) it was opened at.
        self.open_since: dict[str, float] = {}
        self._clock = 0.0  #: the latest event time this shard saw (epoch s)
        self._first = 0.0  #: the earliest (0: none yet)
        #: Latency and data-age samples for the metrics, drained after every batch.
        self.observations: list[tuple[str, str, float]] = []
        self._dedup = EventIdDedup(settings.dedup.horizon)
        self._erased: set[str] = set()
        self._agents()

    def _agents(self) -> None:
        s = self.settings
        self._salt = s.contact_hash_salt.get_secret_value()
        self._compliance = ComplianceAgent()
        self._claims = ClaimCheck(s.features.stale_after.total_seconds() / 86_400)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["observations"] = []
        state["gauges"] = {}
        for agent in ("_compliance", "_claims", "_salt"):
            state.pop(agent)  # rebuilt from settings: rule packs are code, not state
        # Settings are not state either: pickled, they would put the tenants' review
        # signing keys into the snapshot files, and a resumed run would go on trusting
        # a key or a reviewer the operator has since rotated or removed.
        state.pop("settings")
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("gauges", {})
        state.setdefault("_clock", 0.0)
        state.setdefault("_first", 0.0)
        if "open_since" not in state:  # a snapshot from before the queue was tracked
            state["open_since"] = {
                investor: next((h[0] for h in reversed(lead.machine.history)
                                if h[2] == "in_review"), 0.0)
                for investor, lead in state["leads"].items() if lead.open_case is not None}
        self.__dict__.update(state)
        if "settings" in state:  # a snapshot from before settings were left out
            self._agents()

    @classmethod
    def restore(cls, state: object, settings: Settings) -> LifecycleShard:
        """The operator for a resumed snapshot, under the current settings."""
        if not isinstance(state, LifecycleShard):
            raise TypeError(f"cannot resume the lifecycle step from a {type(state).__name__}")
        state.settings = settings
        state._agents()
        return state

    # -------------------------------------------------------------- routing

    def process(self, items: list, now: datetime) -> list[Emitted]:
        out: list[Emitted] = []
        tenant = None
        for item in items:
            if isinstance(item, Scored):
                tenant, when = item.record["tenant"], item.record["event_time"]
            elif isinstance(item, InvestorNotice):
                tenant, when = item.tenant, item.event_time
            else:
                # A decision's time does not move the clock: a forged one, refused,
                # must change nothing, and a far-future one would age the queue.
                tenant, when = getattr(getattr(item, "event", None), "tenant", tenant), None
            if isinstance(when, datetime):
                seconds = when.timestamp()
                self._clock = max(self._clock, seconds)
                self._first = min(self._first, seconds) if self._first else seconds
            if isinstance(item, Scored):
                self._on_scored(item, now, out)
            elif isinstance(item, InvestorNotice):
                self._on_notice(item, now, out)
            else:
                try:
                    self._on_review_decision(item, now, out)
                except Exception as error:  # noqa: BLE001 - errors are data here
                    out.append(Emitted("dlq", "", processing_error(item, error, now)))
        if tenant is not None:
            # The queue's age is the clock minus the oldest opening, in the world's
            # time, whatever the speed of a replay (flows.telemetry combines shards).
            self.gauges[("event_clock_s", tenant)] = self._clock
            self.gauges[("event_first_s", tenant)] = self._first
            self.gauges[("review_open_cases", tenant)] = float(len(self.open_since))
            self.gauges[("review_oldest_open_s", tenant)] = (min(self.open_since.values())
                                                             if self.open_since else None)
        return out

    def _erased_subject(self, investor_id: str) -> bool:
        return bool(self._erased) and salted_id(self._salt, investor_id) in self._erased

    # -------------------------------------------------------- scored leads

    def _on_scored(self, scored: Scored, now: datetime, out: list[Emitted]) -> None:
        record, context = scored.record, scored.context
        investor_id = record["investor_id"]
        if self._erased_subject(investor_id):
            return
        lead = self.leads.get(investor_id)
        if lead is None:
            lead = self.leads[investor_id] = LeadRecord(context)
        lead.context = context
        as_of: datetime = record["event_time"]
        when = as_of.timestamp()
        transitions: list[tuple[str, str, str]] = []
        before = lead.machine.state

        def move(target: str, reason: str) -> None:
            for step in lead.machine.path_to(target):
                transitions.append((*lead.machine.move(step, when, reason), reason))

        if lead.machine.state == "received":
            self.counts[("investors_scored", record["tenant"])] += 1
            if context.engaged_properties:
                move("enriched", shared_reason("ESG facts of engaged properties attached"))
            move("scored", shared_reason("first score"))

        s = self.settings
        cfg = s.lifecycle
        p = record["probability"]
        consents = effective_consents(context)
        channels = self._compliance.channels(context.jurisdiction, context.subscriber_type,
                                             consents, context.do_not_call,
                                             context.do_not_contact)
        blocked = channels.unsure is None and not channels.allowed
        # Unsure because the profile lacks the facts: ask for them, not a person.
        missing = review.missing_info(context)
        unsure = None if missing else channels.unsure
        tenant_cfg = s.tenants.get(record["tenant"])
        today = as_of.date().toordinal()
        reasons = []
        uncertain = False  # the model is unsure, and evidence may still settle it
        # The lead's properties only when a check reads them: most scorings are far
        # below the review band and publish nothing (issue 16).
        properties: list | None = None
        if not missing and (p >= cfg.qualification_threshold - cfg.review_band or unsure):
            properties, fits = outreach.lead_properties(context)
            interval = record["interval"]
            weights = record["explanation"]["source_weights"]
            reasons = review.review_reasons(
                probability=p, low=interval["low"], high=interval["high"],
                ticket_max=context.ticket_max_eur,
                ticket_limit=tenant_cfg.review_ticket_limit_eur if tenant_cfg else float("inf"),
                esg_weight=weights["property_epc"] + weights["certifications"] + weights["climate_risk"],
                facts=properties, today=today,
                stale_days=s.features.stale_after.total_seconds() / 86_400,
                compliance_unsure=unsure, needs_info=lead.needs_info, settings=cfg)
        if reasons and all(r["code"] in review.UNCERTAINTY for r in reasons):
            # Uncertainty alone: outreach gathers evidence first; a person is asked
            # only if the lead is still uncertain after uncertain_review_after.
            if lead.uncertain_since is None:
                lead.uncertain_since = when
            if when - lead.uncertain_since < cfg.uncertain_review_after.total_seconds():
                reasons = []
                uncertain = True
        else:
            lead.uncertain_since = None

        target = routing.target_state(lead.machine.state, p, blocked=blocked, reasons=reasons,
                                      missing=missing, uncertain=uncertain, settings=s)
        if target != lead.machine.state:
            if before == "needs_info" and not missing:
                move("scored", shared_reason("profile: the missing facts arrived, scoring again"))
                self.counts[("info_received", record["tenant"])] += 1
            # (Shared: a template's text, never a name; see lead_state.shared_reason.)
            move(target, shared_reason(routing.why(target, p, reasons, missing, s)))
        if lead.machine.state != before:
            self._decided(record["tenant"], lead.machine.state)
        if lead.machine.state != "in_review":
            # A case closes when its lead leaves review any other way.
            self._close_case(lead, investor_id)
        material = (lead.last_score is None
                    or abs(record["score"] - lead.last_score) >= cfg.material_score_change)
        if not transitions and not material:
            self.counts[("lifecycle_quiet", record["tenant"])] += 1
            return  # nothing to publish: no plan or claims to work out either

        if properties is None:
            properties, fits = outreach.lead_properties(context)
        esg = record["esg_alignment"]["score"]
        proposed = outreach.proposed_claims(properties, context, esg)
        fund = {"sfdr": getattr(tenant_cfg, "sfdr_classification", None),
                "uk_sdr_label": getattr(tenant_cfg, "uk_sdr_label", None)}
        kept, removed = self._claims.check(proposed, {f.property_id: f for f in properties},
                                           today, fund)
        record["state"] = lead.machine.state
        if lead.machine.state == "needs_info":
            # An info request: no marketing, so no properties to lead with and no claims.
            steps = outreach.info_request_steps(
                missing, consents.get("email") == "opted_out")
            properties, kept = [], []
        else:
            steps = outreach.plan_steps(channels.allowed, record["intent"],
                                        record["engagement_readiness"], esg, len(properties))
        contacts = contact_rules.schedule_plan(
            self._compliance.contact_policy(context.jurisdiction), context.jurisdiction,
            context.time_zone, contact_rules.contact_pairs(lead.contacts), steps, when)
        lead.contacts = contact_rules.kept_contacts(contacts.contacts)
        record["outreach_plan"] = {
            "plan_id": f"plan:{record['tenant']}:{investor_id}:{int(when)}",
            "agent_version": outreach.AGENT_VERSION,
            "steps": contacts.steps,
            "time_zones": contacts.zones,
            "lead_properties": [f.property_id for f in properties],
            "claims": kept,
        }
        record["compliance"] = self._compliance.verdict(channels, removed,
                                                        self._claims.rule_ids(proposed))
        record["compliance"]["rules_applied"] += contacts.applied
        lead.last_score = record["score"]
        lineage = orjson.dumps(record["lineage"])  # once, for the kept record and the audit
        lead.keep(record, lineage)
        out.append(Emitted("leads", output_key(record["tenant"], investor_id), record,
                           "leads.scored"))
        self.counts[("state", lead.machine.state)] += 1
        self._observe(record, scored.ingest_ms, now)
        if transitions and transitions[-1][1] == "in_review":
            out.append(self._open_case(lead, record, reasons, now))
        if transitions and transitions[-1][1] == "handed_off":
            out.append(self._handoff(lead, record, context, now, approved=False))
        out.extend(Emitted("audit", investor_id, row) for row in scored_rows(
            record, context, consents, channels, proposed, removed, reasons, transitions, fits,
            now, lineage.decode()))

    def _observe(self, record: dict, ingest_ms: int | None, now: datetime) -> None:
        samples = self.observations
        samples.append(("lead_latency", "event", (now - record["event_time"]).total_seconds()))
        if ingest_ms is not None:
            samples.append(("lead_latency", "ingest", now.timestamp() - ingest_ms / 1000))
        if record["data_freshness_days"] is not None:
            samples.append(("esg_data_age", record["tenant"], record["data_freshness_days"] * 86_400))

    # ------------------------------------------------------------ outputs

    def _decided(self, tenant: str, target: str) -> None:
        """Count a routing decision; one that opens a review case needs a human.

        The autonomy rate is the share of these decisions taken without one.
        """
        self.counts[("decisions", tenant)] += 1
        if target == "in_review":
            self.counts[("decisions_by_human", tenant)] += 1
        elif target == "needs_info":
            self.counts[("info_requests", tenant)] += 1

    def _close_case(self, lead: LeadRecord, investor_id: str) -> None:
        lead.open_case = None
        self.open_since.pop(investor_id, None)

    def _open_case(self, lead: LeadRecord, record: dict, reasons: list[dict], now: datetime) -> Emitted:
        lead.cases += 1
        lead.needs_info = False
        investor_id, tenant = record["investor_id"], record["tenant"]
        # Named by tenant too (schemas/keys.py): two tenants' inv-1 are two cases to any
        # tool that keys by case id. A case opened before keeps its old id (restored).
        case_id = make_case_id(tenant, investor_id, lead.cases)
        lead.open_case = case_id
        self.open_since[investor_id] = record["event_time"].timestamp()
        self.counts[("review_cases", tenant)] += 1
        return Emitted("review", output_key(tenant, investor_id), {
            "schema_version": SCHEMA_VERSION,
            "idempotency_key": f"review:{tenant}:{investor_id}:c{lead.cases}",
            "case_id": case_id,
            "tenant": tenant,
            "investor_id": investor_id,
            "event_time": record["event_time"],
            "processed_at": now,
            "reasons": reasons or [{"code": "ambiguous_score", "detail": "routed to review",
                                    "check": "review the lead"}],
            "probability": record["probability"],
            "score": record["score"],
            "interval": record["interval"],
            "tier": record["tier"],
            "state": "in_review",
            "lineage": record["lineage"],
            "lineage_omitted": record.get("lineage_omitted"),
            "model_version": record["model"]["model_version"],
            "feature_set_version": record["model"]["feature_set_version"],
        }, "leads.review")

    def _handoff(self, lead: LeadRecord, record: dict, context: InvestorContext | None,
                 now: datetime, approved: bool) -> Emitted:
        lead.qualifications += 1
        investor_id, tenant = record["investor_id"], record["tenant"]
        n = lead.qualifications
        self.counts[("handoffs", tenant)] += 1
        ctx = context or lead.context
        consents = effective_consents(ctx) if ctx else {}
        # The CRM sends the plan: each step's message, rendered with verified claims only
        # (a step whose message cannot be is dropped with its reason, not sent).
        rendered = outreach_messages.render_plan(record["outreach_plan"], tenant,
                                                 ctx.jurisdiction if ctx else None,
                                                 record["compliance"]["removed_claims"])
        return Emitted("handoff", output_key(tenant, investor_id), {
            "schema_version": SCHEMA_VERSION,
            "idempotency_key": f"handoff:{tenant}:{investor_id}:q{n}",
            "qualification_id": qualification_id(tenant, investor_id, n),
            "tenant": tenant,
            "investor_id": investor_id,
            "event_time": record["event_time"],
            "processed_at": now,
            "score": record["score"],
            "probability": record["probability"],
            "tier": record["tier"],
            "esg_alignment_score": record["esg_alignment"]["score"],
            "esg_min_epc_band": ctx.min_epc_band if ctx else None,
            "esg_required_certifications": list(ctx.required_certifications) if ctx else [],
            "sfdr_target": ctx.sfdr_target if ctx else None,
            "uk_sdr_label": ctx.uk_sdr_label if ctx else None,
            "target_asset_classes": list(ctx.target_asset_classes) if ctx else [],
            "target_countries": list(ctx.target_countries) if ctx else [],
            "ticket_max_eur": ctx.ticket_max_eur if ctx else None,
            "consent": {c: consents.get(c, "none") for c in compliance_agent.CHANNELS},
            "contact_ref": ctx.contact_ref if ctx else None,
            "outreach_plan": rendered.plan,
            "compliance": record["compliance"],
            "approved_by_review": approved,
            "messages": rendered.messages,
            "dropped_steps": rendered.dropped,
            "model_version": record["model"]["model_version"],
            "feature_set_version": record["model"]["feature_set_version"],
            "lineage": record["lineage"],
            "lineage_omitted": record.get("lineage_omitted"),
        }, "crm.handoff")

    # -------------------------------------------------------------- notices

    def _on_notice(self, notice: InvestorNotice, now: datetime, out: list[Emitted]) -> None:
        investor_id = notice.investor_id
        if notice.kind == "erasure":
            self._erase(notice, now, out)
            return
        lead = self.leads.get(investor_id)
        if lead is None:
            if notice.context is not None:
                self.leads[investor_id] = LeadRecord(notice.context)
            return
        completes = (notice.kind == "profile" and notice.context is not None
                     and lead.last_score is not None and review.missing_info(lead.context)
                     and not review.missing_info(notice.context))
        if notice.context is not None:
            lead.context = notice.context
        if completes:
            # The profile brings the facts compliance lacked: the investor stage scores
            # the lead again as of this profile (operators/investor_state.py), and that
            # score routes it, in one record with the new score, not a restatement of
            # the old score at the same instant.
            self._audit_notice(notice, lead, now, out)
            return
        when = notice.event_time.timestamp()
        if notice.kind in ("profile", "unsubscribe") and lead.context is not None:
            ctx = lead.context
            channels = self._compliance.channels(ctx.jurisdiction, ctx.subscriber_type,
                                                 effective_consents(ctx), ctx.do_not_call,
                                                 ctx.do_not_contact)
            state = lead.machine.state
            if not channels.allowed and channels.unsure is None and lead.machine.can("suppressed"):
                lead.machine.move("suppressed", when, shared_reason(f"{notice.kind}: no lawful channel left"))
                self._decided(notice.tenant, "suppressed")
                self._close_case(lead, investor_id)
                self._reemit(lead, notice, now, out)
            elif channels.allowed and state == "suppressed":
                lead.machine.move("scored", when, shared_reason(f"{notice.kind}: lawful channel restored"))
                self._decided(notice.tenant, "scored")
                self._reemit(lead, notice, now, out)
            elif state == "needs_info" and not review.missing_info(ctx):
                lead.machine.move("scored", when, shared_reason(
                    f"{notice.kind}: the missing facts arrived, scoring again"))
                self._decided(notice.tenant, "scored")
                self.counts[("info_received", notice.tenant)] += 1
                self._reemit(lead, notice, now, out)
        elif notice.kind == "outcome":
            if notice.detail == "disqualified" and lead.machine.can("disqualified"):
                lead.machine.move("disqualified", when, shared_reason("CRM disqualified the lead"))
                self._decided(notice.tenant, "disqualified")
                self._close_case(lead, investor_id)
                self._reemit(lead, notice, now, out)
            self._audit_notice(notice, lead, now, out)

    def _reemit(self, lead: LeadRecord, notice: InvestorNotice, now: datetime,
                out: list[Emitted]) -> None:
        """Publish the lead's new state with its last scores (a state-only change)."""
        if lead.last_record is None:
            return
        record = lead.last_record_copy()
        record["event_time"] = notice.event_time
        record["processed_at"] = now
        record["state"] = lead.machine.state
        record["idempotency_key"] = (f"lead:{notice.tenant}:{notice.investor_id}:"
                                     f"{int(notice.event_time.timestamp())}:{lead.machine.state}")
        # The notice joins the lineage; what no longer fits is digested, not dropped.
        record["lineage"], omitted = append_refs(record["lineage"], record.get("lineage_omitted"),
                                                 (lineage_ref(*notice.ref),))
        if omitted is not None and "audit" not in omitted:
            # A new dict: the one append_refs returns may be the published record's.
            omitted = {**omitted, "audit": audit_pointer(notice.tenant, notice.investor_id)}
        record["lineage_omitted"] = omitted
        lead.keep(record)
        out.append(Emitted("leads", output_key(notice.tenant, notice.investor_id), record,
                           "leads.scored"))
        self.counts[("state", lead.machine.state)] += 1
        self._audit_notice(notice, lead, now, out)

    def _audit_notice(self, notice: InvestorNotice, lead: LeadRecord, now: datetime,
                      out: list[Emitted]) -> None:
        last = lead.machine.last
        out.append(Emitted("audit", notice.investor_id,
                           notice_row(notice, lead.machine.state, last, now)))

    def _erase(self, notice: InvestorNotice, now: datetime, out: list[Emitted]) -> None:
        investor_id = notice.investor_id
        self.leads.pop(investor_id, None)
        self.open_since.pop(investor_id, None)
        self._erased.add(salted_id(self._salt, investor_id))
        # The tenant's own key: another tenant's investor of the same id is not erased.
        key = output_key(notice.tenant, investor_id)
        for topic in OUTPUT_TOPICS:
            out.append(Emitted("tombstone", key, None, topic))
        out.append(Emitted("audit", investor_id, erasure_row(notice, now)))

    # ---------------------------------------------------- review decisions

    def _on_review_decision(self, ingested: Ingested, now: datetime, out: list[Emitted]) -> None:
        decision = ingested.event
        investor_id = decision.investor_id  # type: ignore[attr-defined]
        # Authentication first, before dedup and before any look at the lead: a forged
        # decision must neither learn whether a case is open or an investor erased,
        # nor use up an event_id that a genuine decision will carry.
        tenant = self.settings.tenants.get(decision.tenant)  # type: ignore[attr-defined]
        refused = review_auth.refusal(decision, tenant)
        if refused is not None:
            self._refuse(ingested, refused, now, out)
            return
        if self._erased_subject(investor_id):
            out.append(Emitted("dlq", investor_id, dead_letter(
                ingested, DlqReason.ERASED_SUBJECT, "investor has been erased; payload withheld",
                now, withhold_value=True)))
            return
        if not self._dedup.first_time(f"{ingested.topic}/{decision.event_id}", decision.event_time):  # type: ignore[attr-defined]
            out.append(Emitted("dlq", investor_id, dead_letter(
                ingested, DlqReason.DUPLICATE,
                f"event_id {decision.event_id!r} already processed", now)))  # type: ignore[attr-defined]
            return
        lead = self.leads.get(investor_id)
        if lead is None or lead.open_case is None or lead.last_record is None or not names_case(
                decision.case_id, lead.open_case, decision.tenant, investor_id):  # type: ignore[attr-defined]
            out.append(Emitted("dlq", investor_id, dead_letter(
                ingested, DlqReason.UNKNOWN_CASE,
                f"no open review case {decision.case_id!r} for this investor", now)))  # type: ignore[attr-defined]
            return
        # Read before anything changes: a kept record that cannot be read (a damaged
        # snapshot) makes the decision a processing-error dead letter, the lead untouched,
        # rather than a lead handed off without its handoff.
        lead.last_record_copy()
        verdict = decision.verdict.value  # type: ignore[attr-defined]
        when = decision.event_time.timestamp()  # type: ignore[attr-defined]
        case = lead.open_case  # the decision may name it as before stop 31 (names_case)
        self._close_case(lead, investor_id)
        self.counts[("review_decisions", decision.tenant)] += 1  # type: ignore[attr-defined]
        notice = InvestorNotice(decision.tenant, investor_id, "review_decision",  # type: ignore[attr-defined]
                                decision.event_time, ingested.ref(), None, verdict,  # type: ignore[attr-defined]
                                case)
        reason = f"reviewer {decision.reviewer} decided {verdict} on {case}"  # type: ignore[attr-defined]
        if case != decision.case_id:  # type: ignore[attr-defined]
            reason += f" (named {decision.case_id})"  # type: ignore[attr-defined]
        if verdict == "approve":
            lead.machine.move("handed_off", when, reason)
            self._reemit(lead, notice, now, out)
            out.append(self._handoff(lead, lead.last_record_copy(), None, now, approved=True))
        elif verdict == "reject":
            lead.machine.move("disqualified", when, reason)
            self._reemit(lead, notice, now, out)
        else:
            lead.needs_info = True
            lead.machine.move("planned", when, reason)
            self._reemit(lead, notice, now, out)
        self.counts[("used", ingested.topic)] += 1

    def _refuse(self, ingested: Ingested, why: str, now: datetime, out: list[Emitted]) -> None:
        """Dead-letter an unauthorized decision and audit the refusal; no state changes."""
        investor_id = ingested.event.investor_id  # type: ignore[attr-defined]
        # The original bytes stay in the dead letter (evidence), unless they are about
        # an erased investor: erasure is honoured whoever sent the message.
        out.append(Emitted("dlq", investor_id, dead_letter(
            ingested, DlqReason.UNAUTHORIZED, why, now,
            withhold_value=self._erased_subject(investor_id))))
        out.append(Emitted("audit", investor_id, refusal_row(ingested, why, now)))
