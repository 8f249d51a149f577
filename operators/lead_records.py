"""What a scored lead and a drift alert say: the records the scorer publishes.

Pure builders, apart from the scorer's state: :func:`lead_records` turns one group's
per-row numbers (:class:`LeadRows`, computed vectorised by ``operators.scoring``) into
the lead records consumers read — probability, interval, tier, ESG alignment with its
interval, the explanation (top contributions, data-source weights, the prior's reasons,
stale sources) and lineage; :func:`detection_alert` and :func:`window_alert` are the
``drift_detected`` alerts of the two kinds of detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from esg_leads.online_models.drift import Detection
from esg_leads.online_models.window_drift import WindowDetection
from esg_leads.operators.degradation import Degradation, alignment_interval, readiness_interval
from esg_leads.operators.features import FEATURE_NAMES, SOURCES
from esg_leads.operators.lineage import as_dicts, audit_pointer
from esg_leads.operators.prior import prior_probability
from esg_leads.schemas.outputs import SCHEMA_VERSION
from esg_leads.schemas.records import FeatureVector, Scored


@dataclass(slots=True)
class LeadRows:
    """One group's per-row numbers, as lists: probability, interval bounds and tier
    (rounded as published), contributions (rounded), their order, data-source shares."""

    p: list[float]
    low: list[float]
    high: list[float]
    tiers: list[str]
    order: list[list[int]] = field(default_factory=list)
    contrib: list[list[float]] = field(default_factory=list)
    shares: list[list[float]] = field(default_factory=list)


def lead_records(vectors: list[FeatureVector], rows: LeadRows, degraded: Degradation | None,
                 model_info: dict, explain_prior: bool, level: float, now: datetime
                 ) -> list[Scored]:
    """The lead records of ``vectors``, row ``i`` of ``rows`` (and of ``degraded``) each.

    ``explain_prior``: the prior still weighs enough for its reasons to be listed.
    Records of one group share ``model_info``.
    """
    records = []
    for i, (vector, pi, lo, hi, tier, row, share, ranked) in enumerate(zip(
            vectors, rows.p, rows.low, rows.high, rows.tiers, rows.contrib, rows.shares,
            rows.order, strict=True)):
        f = vector.features
        negative = [{"feature": FEATURE_NAMES[j], "value": f[FEATURE_NAMES[j]],
                     "contribution": row[j]} for j in ranked[:3] if row[j] < 0]
        positive = [{"feature": FEATURE_NAMES[j], "value": f[FEATURE_NAMES[j]],
                     "contribution": row[j]} for j in ranked[:-4:-1] if row[j] > 0]
        q = 0.0 if degraded is None else float(degraded.q[i])
        esg = ({"score": vector.esg_alignment, "components": vector.esg_components}
               if not q else {"score": float(degraded.alignment[i]),
                              "components": degraded.components[i]})
        esg["interval"] = alignment_interval(esg["score"], f, vector.context is not None
                                             and vector.context.min_epc_band is not None, q, level)
        reasons = (prior_probability(f, vector.intent, esg["score"])[1]
                   if explain_prior else [])
        as_of = vector.as_of
        records.append(Scored({
            "schema_version": SCHEMA_VERSION,
            "idempotency_key": f"lead:{vector.tenant}:{vector.investor_id}:{int(as_of.timestamp())}",
            "tenant": vector.tenant,
            "investor_id": vector.investor_id,
            "event_time": as_of,
            "processed_at": now,
            "probability": pi,
            "score": int(round(100 * pi)),
            "interval": {"low": lo, "high": hi, "level": level},
            "tier": tier,
            "esg_alignment": esg,
            "intent": vector.intent,
            "engagement_readiness": vector.engagement_readiness,
            "engagement_readiness_interval": readiness_interval(
                vector.engagement_readiness, f, level),
            "data_freshness_days": vector.data_freshness_days,
            "explanation": {
                "top_positive": positive,
                "top_negative": negative,
                "source_weights": dict(zip(SOURCES, share, strict=True)),
                "prior_reasons": reasons,
                "stale_sources": degraded.explanations[i] if q else [],
                "stale_evidence_share": round(float(degraded.s[i]), 4) if q else 0.0,
            },
            "model": model_info,
            "features": f,
            "state": "scored",
            "lineage": as_dicts(vector.lineage),
            "lineage_omitted": vector.lineage_omitted and {
                **vector.lineage_omitted,
                "audit": audit_pointer(vector.tenant, vector.investor_id)},
        }, vector.context, vector.ingest_ms))
    return records


def window_alert(tenant: str, labels: int, generation: int, found: WindowDetection,
                 now: datetime) -> dict:
    """A ``drift_detected`` alert of the PSI detectors: the shifted subjects and, per
    subject, the PSI, its noise level, the bins and both windows' shares and means
    (flattened: ``<subject>.<field>``, lists as text, since alert details are flat)."""
    details: dict[str, float | str] = {"tenant_labels": labels,
                                       "model_generation": generation}
    for subject, evidence in found.evidence.items():
        for name, value in evidence.items():
            details[f"{subject}.{name}"] = (" ".join(map(str, value))
                                             if isinstance(value, list) else value)
    return {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": f"alert:{tenant}:drift_detected:psi:{found.index}",
        "tenant": tenant,
        "kind": "drift_detected",
        "detector": found.detector,
        "subject": found.subject,
        "event_time": datetime.fromtimestamp(found.at_s, tz=timezone.utc),
        "processed_at": now,
        "details": details,
    }


def detection_alert(tenant: str, labels: int, generation: int, kind: str, detection: Detection,
                    when: datetime, now: datetime) -> dict:
    """A ``drift_detected`` (or other ``kind``) alert of an ADWIN detector."""
    return {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": f"alert:{tenant}:{kind}:{detection.subject}:{detection.index}",
        "tenant": tenant,
        "kind": kind,
        "detector": detection.detector,
        "subject": detection.subject,
        "event_time": when,
        "processed_at": now,
        "details": {
            "index": detection.index,
            "mean_after": round(detection.mean_after, 6),
            "window": detection.width,
            "effect_sd": detection.effect,
            "tenant_labels": labels,
            "model_generation": generation,
        },
    }


__all__ = ["LeadRows", "detection_alert", "lead_records", "window_alert"]
