"""What the lead lifecycle writes to the audit trail: one row per agent decision.

A scored lead that publishes gets five rows — scoring, compliance, outreach, review
routing, state machine — each with the inputs the agent used and what it decided; a
notice (profile, unsubscribe, CRM outcome, review decision), an erasure and a refused
review decision get one each. The rows are what ``esg-leads explain`` reads back
(:mod:`flows.explain`); their columns are ``connectors.parquet_sink.AUDIT_SCHEMA``.

Kept apart from :mod:`operators.lifecycle`, which decides, so that what is recorded
about a decision reads in one place; nothing here changes lead state.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from esg_leads.operators import compliance as compliance_agent
from esg_leads.operators import outreach, review, review_auth
from esg_leads.operators.audit import audit_record, audit_rows
from esg_leads.schemas.inputs import ReviewDecision
from esg_leads.schemas.records import Ingested, InvestorContext, InvestorNotice

#: The lifecycle's own version in its audit rows (the state machine's and erasure's).
AGENT_VERSION = "lifecycle/1"


def scored_rows(record: dict, context: InvestorContext, consents: dict[str, str], channels,
                proposed: list, removed: list, reasons: list, transitions: list, fits: bool,
                now: datetime, lineage: str | None = None) -> list[dict]:
    """The five agents' rows about a published lead ``record`` (already complete);
    ``lineage`` is the JSON of its lineage if the caller has encoded it already."""
    model = record["model"]
    compliance = record["compliance"]
    plan = record["outreach_plan"]
    top = [c["feature"] for c in record["explanation"]["top_positive"]]
    return audit_rows(record["tenant"], record["investor_id"], record["event_time"], now,
                      lineage if lineage is not None  # once, for every row
                      else orjson.dumps(record["lineage"]).decode(), [
        ("scoring", model["model_version"], record["tier"],
         "top positive: " + (", ".join(top) or "none"),
         {"feature_set_version": model["feature_set_version"],
          "prior_weight": model["prior_weight"], "global_weight": model["global_weight"],
          "lineage_omitted": record.get("lineage_omitted")},
         {"probability": record["probability"], "interval": record["interval"],
          "score": record["score"]}),
        ("compliance", compliance_agent.AGENT_VERSION, compliance["verdict"],
         f"pack {channels.pack}; allowed {', '.join(channels.allowed) or 'none'}",
         {"jurisdiction": context.jurisdiction, "subscriber_type": context.subscriber_type,
          "consents": consents, "do_not_call": context.do_not_call,
          "claims_proposed": [list(c) for c in proposed]},
         {"blocked": compliance["blocked_channels"], "removed_claims": removed,
          "rules_applied": compliance["rules_applied"]}),
        ("outreach", outreach.AGENT_VERSION, f"{len(plan['steps'])} steps",
         "lead properties meet stated preferences" if fits
         else "no engaged property meets the stated preferences",
         {"intent": record["intent"], "readiness": record["engagement_readiness"],
          "esg_alignment": record["esg_alignment"]["score"]},
         {"plan_id": plan["plan_id"], "channels": [s["channel"] for s in plan["steps"]],
          "lead_properties": plan["lead_properties"], "claims": plan["claims"]}),
        ("review-routing", review.AGENT_VERSION, "review" if reasons else "no review",
         ", ".join(r["code"] for r in reasons) or "nothing to check",
         {"probability": record["probability"], "interval": record["interval"]},
         {"reasons": reasons}),
        ("state-machine", AGENT_VERSION, record["state"],
         "; ".join(f"{a}->{b}: {why}" for a, b, why in transitions) or "no transition",
         {"score": record["score"]}, {"transitions": [[a, b] for a, b, _ in transitions]}),
    ])


def _notice_lineage(ref: tuple) -> list[dict]:
    return [{"event_id": ref[0], "topic": ref[1], "partition": ref[2], "offset": ref[3]}]


def notice_row(notice: InvestorNotice, state: str, last: tuple | None, now: datetime) -> dict:
    """The state machine's row about a notice; ``last`` is the lead's latest history entry."""
    return audit_record(
        notice.tenant, notice.investor_id, notice.event_time, now, "state-machine",
        AGENT_VERSION, state, last[3] if last else notice.kind,
        {"notice": notice.kind, "detail": notice.detail}, {"state": state},
        _notice_lineage(notice.ref), sequence=notice.ref[0])


def erasure_row(notice: InvestorNotice, now: datetime) -> dict:
    """The row recording that an investor's lead state was erased (it outlives the purge)."""
    return audit_record(
        notice.tenant, notice.investor_id, notice.event_time, now, "erasure", AGENT_VERSION,
        "erased", "right to erasure: lead state deleted, outputs tombstoned", {}, {},
        _notice_lineage(notice.ref))


def refusal_row(ingested: Ingested, why: str, now: datetime) -> dict:
    """The row recording a review decision refused as unauthorized (nothing changed)."""
    decision: ReviewDecision = ingested.event  # type: ignore[assignment]
    inputs = {"event_id": decision.event_id, "case_id": decision.case_id,
              "verdict": decision.verdict.value, "reviewer": decision.reviewer,
              "signed": decision.signature is not None}
    lineage = [{"event_id": decision.event_id, "topic": ingested.topic,
                "partition": ingested.partition, "offset": ingested.offset}]
    return audit_record(
        decision.tenant, decision.investor_id, decision.event_time, now, "review-auth",
        review_auth.AGENT_VERSION, "unauthorized", why, inputs, {"state_changed": False},
        lineage, sequence=f"{ingested.partition}:{ingested.offset}")
