"""The lifecycle stage: transitions, review decisions, opt-outs, erasure, idempotent handoff."""

from __future__ import annotations

import pickle
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest

from esg_leads.operators import review_auth
from esg_leads.operators.kept_record import unpack as _unpack
from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.operators.lineage import digest_hex, ref_digest
from esg_leads.schemas.codec import decode_event, validate_record
from esg_leads.schemas.records import Emitted, Ingested, InvestorContext, InvestorNotice, PropertyFacts, Scored
from esg_leads.schemas.settings import Settings

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
KEY = "acme-review-signing-key-0123456789abcdef"
OTHER_KEY = "beta-review-signing-key-0123456789abcdef"
SETTINGS = Settings.model_validate({"tenants": {
    "acme": {"review_ticket_limit_eur": 1e8, "reviewers": ["rev-7", "rev-8"],
             "review_signing_key": KEY},
    "beta": {"reviewers": ["rev-7"], "review_signing_key": OTHER_KEY},
    "gamma": {"reviewers": ["rev-7"]},  # no signing key: accepts no decision
}, "lifecycle": {"uncertain_review_after": 0}})  # most tests: uncertainty reviewed at once


def facts(property_id: str = "p-1", *, third_party: bool = True, age_days: int = 30) -> PropertyFacts:
    return PropertyFacts(property_id, "acme", T0 - timedelta(days=1), "GB", "office", 2e7, "B", 2,
                         None, True, True, "BREEAM excellent", 90.0, 18.0, 20, third_party,
                         (T0.date() - timedelta(days=age_days)).toordinal(), True, True)


def context(**changes) -> InvestorContext:
    base = dict(investor_type="family_office", subscriber_type="corporate", jurisdiction="GB",
                consents={"email": "opted_in", "phone": "opted_in"}, do_not_call=False,
                unsubscribed=False, ticket_min_eur=1e6, ticket_max_eur=2e7, min_epc_band="C",
                required_certifications=(), sfdr_target=None, uk_sdr_label=None,
                max_climate_risk=None, target_countries=("GB",), target_asset_classes=("office",),
                excluded_asset_classes=(), contact_ref="abc123", engaged_properties=(facts(),))
    base.update(changes)
    return InvestorContext(**base)


def scored(p: float, hours: float = 0, investor_id: str = "inv-1", ctx: InvestorContext | None = None,
           low: float | None = None, high: float | None = None) -> Scored:
    as_of = T0 + timedelta(hours=hours)
    record = {
        "schema_version": 1, "idempotency_key": f"lead:acme:{investor_id}:{int(as_of.timestamp())}",
        "tenant": "acme", "investor_id": investor_id, "event_time": as_of, "processed_at": NOW,
        "probability": p, "score": round(100 * p),
        "interval": {"low": low if low is not None else max(0.0, p - 0.1),
                     "high": high if high is not None else min(1.0, p + 0.1), "level": 0.9},
        "tier": "hot" if p >= 0.5 else "warm", "esg_alignment": {"score": 70.0, "components": {}},
        "intent": 80.0, "engagement_readiness": 70.0, "data_freshness_days": 30.0,
        "explanation": {"top_positive": [], "top_negative": [], "prior_reasons": [],
                        "source_weights": {"property_epc": 0.1, "certifications": 0.05,
                                           "climate_risk": 0.05, "engagement": 0.7, "profile": 0.1}},
        "model": {"model_version": "m", "feature_set_version": "fs-2", "tenant_labels": 10,
                  "prior_weight": 0.1, "global_weight": 0.0},
        "features": {"eng_1d": 1.0}, "state": "scored",
        "lineage": [{"event_id": "e1", "topic": "investor.engagements", "partition": 0, "offset": 1}],
    }
    return Scored(record, ctx or context())


def notice(kind: str, hours: float, ctx: InvestorContext | None = None, detail: str | None = None,
           investor_id: str = "inv-1") -> InvestorNotice:
    return InvestorNotice("acme", investor_id, kind, T0 + timedelta(hours=hours),
                          (f"n-{kind}-{hours}", "investor.profiles", 0, 5), ctx, detail)


def decision_payload(case_id: str, verdict: str, event_id: str = "d-1",
                     investor_id: str = "inv-1", *, key: str | None = KEY, tenant: str = "acme",
                     reviewer: str = "rev-7", note: str | None = None) -> dict:
    """A review decision as a producer sends it, signed with ``key`` (None: unsigned)."""
    payload = {"tenant": tenant, "event_id": event_id,
               "event_time": (T0 + timedelta(hours=5)).isoformat(), "source": "review-ui",
               "investor_id": investor_id, "case_id": case_id, "verdict": verdict,
               "reviewer": reviewer}
    if note is not None:
        payload["note"] = note
    if key is not None:
        parsed = decode_event("lead.review-decisions", orjson.dumps(payload))
        payload["signature"] = review_auth.sign_decision(key, parsed)
    return payload


def as_ingested(payload: dict, offset: int = 9) -> Ingested:
    value = orjson.dumps(payload)
    return Ingested(decode_event("lead.review-decisions", value), "lead.review-decisions", 0,
                    offset, 0, payload["investor_id"].encode(), value)


def decision(case_id: str, verdict: str, event_id: str = "d-1", investor_id: str = "inv-1",
             **signing) -> Ingested:
    payload = decision_payload(case_id, verdict, event_id, investor_id, **signing)
    value = orjson.dumps(payload)
    return Ingested(decode_event("lead.review-decisions", value), "lead.review-decisions", 0, 9,
                    0, investor_id.encode(), value)


def of(out: list[Emitted], kind: str) -> list[dict]:
    return [e.record for e in out if e.kind == kind]


TOPIC = {"leads": "leads.scored", "review": "leads.review", "handoff": "crm.handoff", "dlq": "leads.dlq"}


def check_records(out: list[Emitted]) -> None:
    for e in out:
        if e.kind in TOPIC:
            validate_record(TOPIC[e.kind], e.record)


def test_clear_qualification_hands_off_once_with_a_stable_key() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.8)], NOW)
    check_records(out)
    [lead] = of(out, "leads")
    assert lead["state"] == "handed_off"
    [handoff] = of(out, "handoff")
    assert handoff["idempotency_key"] == "handoff:acme:inv-1:q1"
    assert handoff["consent"] == {"email": "opted_in", "phone": "opted_in", "sms": "none"}
    assert handoff["contact_ref"] == "abc123" and not handoff["approved_by_review"]
    assert {a["agent"] for a in of(out, "audit")} == {"scoring", "compliance", "outreach",
                                                      "review-routing", "state-machine"}
    # Re-scores of a handed-off lead never hand it off again.
    again = shard.process([scored(0.85, 1), scored(0.9, 2)], NOW)
    assert not of(again, "handoff")


def test_quiet_rescores_are_not_published() -> None:
    shard = LifecycleShard(SETTINGS)
    shard.process([scored(0.30)], NOW)
    assert not of(shard.process([scored(0.31, 1)], NOW), "leads")  # below material change
    assert of(shard.process([scored(0.40, 2)], NOW), "leads")


def test_ambiguous_score_opens_a_review_case_and_approve_hands_off() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.52)], NOW)
    [case] = of(out, "review")
    assert [r["code"] for r in case["reasons"]] == ["ambiguous_score"]
    assert of(out, "leads")[0]["state"] == "in_review"
    out = shard.process([decision(case["case_id"], "approve")], NOW)
    check_records(out)
    [handoff] = of(out, "handoff")
    assert handoff["approved_by_review"] and handoff["idempotency_key"] == "handoff:acme:inv-1:q1"
    assert of(out, "leads")[0]["state"] == "handed_off"
    # The same decision delivered again is a duplicate; a decision for a closed case is unknown.
    assert of(shard.process([decision(case["case_id"], "approve")], NOW), "dlq")[0]["reason"] == "duplicate"
    stale = shard.process([decision(case["case_id"], "reject", event_id="d-2")], NOW)
    assert of(stale, "dlq")[0]["reason"] == "unknown_case"


def test_reject_disqualifies_and_needs_info_reopens_with_the_reason() -> None:
    shard = LifecycleShard(SETTINGS)
    [case] = of(shard.process([scored(0.52)], NOW), "review")
    out = shard.process([decision(case["case_id"], "needs_info")], NOW)
    assert of(out, "leads")[0]["state"] == "planned"
    [case2] = of(shard.process([scored(0.53, 6)], NOW), "review")
    assert "reviewer_needs_info" in [r["code"] for r in case2["reasons"]]
    assert case2["case_id"] != case["case_id"]
    out = shard.process([decision(case2["case_id"], "reject", event_id="d-3")], NOW)
    assert of(out, "leads")[0]["state"] == "disqualified"
    assert not of(out, "handoff")


def test_unsubscribe_suppresses_at_once_when_no_channel_is_left() -> None:
    shard = LifecycleShard(SETTINGS)
    ctx = context(subscriber_type="individual", consents={"email": "opted_in", "phone": "none"},
                  do_not_call=True)
    shard.process([scored(0.3, ctx=ctx)], NOW)
    out = shard.process([notice("unsubscribe", 1, ctx._replace(unsubscribed=True))], NOW)
    check_records(out)
    [lead] = of(out, "leads")
    assert lead["state"] == "suppressed"
    assert lead["idempotency_key"].endswith(":suppressed")
    # Consent given again later: the lead comes back.
    back = shard.process([notice("profile", 30, ctx._replace(consents={"email": "opted_in",
                                                                        "phone": "opted_in"},
                                                              do_not_call=False,
                                                              unsubscribed=True))], NOW)
    assert of(back, "leads")[0]["state"] == "scored"


def test_compliance_unsure_and_ticket_limit_route_to_review() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.8, ctx=context(jurisdiction="AU"))], NOW)
    [case] = of(out, "review")
    assert [r["code"] for r in case["reasons"]] == ["compliance_unsure"]
    big = Settings.model_validate({"tenants": {"acme": {"review_ticket_limit_eur": 1e6}}})
    [case] = of(LifecycleShard(big).process([scored(0.8, investor_id="inv-2")], NOW), "review")
    assert "ticket_over_limit" in [r["code"] for r in case["reasons"]]


def test_unsupported_claims_are_removed_and_recorded() -> None:
    shard = LifecycleShard(SETTINGS)
    ctx = context(engaged_properties=(facts(third_party=False),), sfdr_target="article_9")
    [lead] = of(shard.process([scored(0.3, ctx=ctx)], NOW), "leads")
    removed = {(c["claim"]) for c in lead["compliance"]["removed_claims"]}
    assert removed == {"energy_efficient", "low_climate_risk", "sfdr_article_9"}
    assert [c["claim"] for c in lead["outreach_plan"]["claims"]] == ["certified"]
    assert lead["compliance"]["verdict"] == "restricted"


def test_crm_disqualification_moves_the_lead() -> None:
    shard = LifecycleShard(SETTINGS)
    shard.process([scored(0.3)], NOW)
    out = shard.process([notice("outcome", 3, detail="disqualified")], NOW)
    assert of(out, "leads")[0]["state"] == "disqualified"


def test_erasure_tombstones_outputs_and_forgets_the_lead() -> None:
    shard = LifecycleShard(SETTINGS)
    shard.process([scored(0.8)], NOW)
    out = shard.process([notice("erasure", 2)], NOW)
    # (leads.shadow's tombstone is the scorer's: tests/operators/test_scoring.py)
    assert sorted(e.topic for e in out if e.kind == "tombstone") == [
        "crm.handoff", "leads.review", "leads.scored"]
    assert "inv-1" not in shard.leads
    assert not shard.process([scored(0.9, 3)], NOW)  # in-flight scores for an erased lead
    dead = of(shard.process([decision("case:inv-1:1", "approve", "d-9")], NOW), "dlq")
    assert dead[0]["reason"] == "erased_subject" and dead[0]["value_b64"] is None


def test_no_contact_data_in_audit_and_state_survives_pickling() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.52)], NOW)
    blob = orjson.dumps([e.record for e in out if e.kind == "audit"])
    assert b"@" not in blob and b"+44" not in blob
    restored = LifecycleShard.restore(pickle.loads(pickle.dumps(shard)), SETTINGS)
    case_id = of(out, "review")[0]["case_id"]
    a = of(shard.process([decision(case_id, "approve")], NOW), "handoff")
    b = of(restored.process([decision(case_id, "approve")], NOW), "handoff")
    assert a == b and a[0]["idempotency_key"] == "handoff:acme:inv-1:q1"


@pytest.mark.parametrize("p", [0.05, 0.3, 0.52, 0.8])
def test_every_emitted_record_validates(p: float) -> None:
    check_records(LifecycleShard(SETTINGS).process([scored(p)], NOW))


def test_date_of_audit_partition_is_the_event_date() -> None:
    out = LifecycleShard(SETTINGS).process([scored(0.3, hours=20)], NOW)
    assert {a["date"] for a in of(out, "audit")} == {date(2026, 3, 3).isoformat()}


def test_last_record_is_kept_compressed_and_reemits_as_older_shapes_did() -> None:
    from_dict, from_json, from_packed = (LifecycleShard(SETTINGS) for _ in range(3))
    for shard in (from_dict, from_json, from_packed):
        [published] = of(shard.process([scored(0.3)], NOW), "leads")
    packed = from_packed.leads["inv-1"].last_record
    assert isinstance(packed, bytes)  # at publish: a record's dict tree is ~3x its JSON
    # The record's own JSON, byte for byte: its lineage went in as the audit rows' JSON.
    encoded = orjson.dumps(published, option=orjson.OPT_NON_STR_KEYS)
    # Against the dictionary of lead records: LZ4 alone kept 0.63 of this record, the dictionary 0.15 (issue 16).
    assert _unpack(packed) == encoded and len(packed) < 0.3 * len(encoded)
    first = pickle.dumps(from_packed)  # a snapshot keeps those bytes, encodes nothing again
    assert pickle.dumps(from_packed) == first and from_packed.leads["inv-1"].last_record is packed
    # What snapshots of earlier versions restore: the published dict itself, or its JSON.
    from_dict.leads["inv-1"].last_record = published
    from_json.leads["inv-1"].last_record = encoded
    crm = notice("outcome", 3, detail="disqualified")
    a, b, c = (of(shard.process([crm], NOW), "leads")
               for shard in (from_dict, from_json, from_packed))
    assert a == b == c and a[0]["state"] == "disqualified"
    # An older shape is compressed when next snapshotted; it then reads back the same.
    from_dict.leads["inv-1"].last_record = published
    assert pickle.loads(pickle.dumps(from_dict)).leads["inv-1"].last_record_copy() == published


# ------------------------------------------------- authenticated review decisions


def open_case_shard(investor_id: str = "inv-1") -> tuple[LifecycleShard, str]:
    shard = LifecycleShard(SETTINGS)
    [case] = of(shard.process([scored(0.52, investor_id=investor_id)], NOW), "review")
    return shard, case["case_id"]


def tampered(field: str) -> dict:
    """A decision signed for one value of ``field`` and sent with another."""
    payload = decision_payload("case:acme/inv-1:1", "reject", note="checked the EPC")
    changed = {"tenant": "beta", "event_id": "d-other", "event_time": (T0 + timedelta(hours=6)).isoformat(),
               "investor_id": "inv-2", "case_id": "case:acme/inv-1:2", "verdict": "approve",
               "reviewer": "rev-8", "note": "checked the EPC!"}[field]
    return payload | {field: changed}


FORGED = {
    "unsigned": lambda case: decision_payload(case, "approve", key=None),
    "wrong key": lambda case: decision_payload(case, "approve", key="x" * 40),
    "other tenant's key": lambda case: decision_payload(case, "approve", key=OTHER_KEY),
    "malformed signature": lambda case: decision_payload(case, "approve") | {"signature": "sha256=00"},
    "upper-case hex": lambda case: (lambda p: p | {"signature": p["signature"].upper()})(
        decision_payload(case, "approve")),
    "unknown reviewer (validly signed)": lambda case: decision_payload(case, "approve",
                                                                       reviewer="mallory"),
    **{f"tampered {field}": (lambda field: lambda case: tampered(field))(field)
       for field in ("tenant", "event_id", "event_time", "investor_id", "case_id", "verdict",
                     "reviewer", "note")},
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=FORGED.keys())
def test_unauthorized_decisions_are_dead_lettered_and_audited_and_change_nothing(forge) -> None:
    shard, case_id = open_case_shard()
    assert case_id == "case:acme/inv-1:1"  # the case the tampered decisions were signed for
    payload = forge(case_id)
    before = pickle.dumps(shard)
    out = shard.process([as_ingested(payload)], NOW)
    check_records(out)
    assert [e.kind for e in out] == ["dlq", "audit"]
    [dead], [audit] = of(out, "dlq"), of(out, "audit")
    assert dead["reason"] == "unauthorized" and dead["value_b64"] is not None
    assert audit["agent"] == "review-auth" and audit["decision"] == "unauthorized"
    assert audit["reason"] == dead["detail"]
    assert pickle.dumps(shard) == before  # no state change, not even the dedup memory
    # Neither the key nor the signature the flow expected appears in what it wrote.
    expected = review_auth.sign_decision(KEY, decode_event("lead.review-decisions",
                                                           orjson.dumps(payload)))
    written = orjson.dumps([e.record for e in out], default=str)
    for secret in (KEY, OTHER_KEY, expected, expected.removeprefix("sha256=")):
        assert secret.encode() not in written
    # The genuine decision, even under the same event_id, is still accepted afterwards.
    genuine = shard.process([decision(case_id, "approve", event_id=payload["event_id"])], NOW)
    assert of(genuine, "handoff")[0]["approved_by_review"]


@pytest.mark.parametrize(("tenant", "detail"), [
    ("gamma", "has no review_signing_key"),
    ("beta", "signature does not match"),  # signed with acme's key, sent as beta
])
def test_decision_for_a_tenant_without_a_key_or_with_another_key(tenant: str, detail: str) -> None:
    shard = LifecycleShard(SETTINGS)
    payload = decision_payload("case:inv-1:1", "approve", tenant=tenant, key=KEY)
    [dead] = of(shard.process([as_ingested(payload)], NOW), "dlq")
    assert dead["reason"] == "unauthorized" and detail in dead["detail"]


def test_each_refusal_reason_is_readable() -> None:
    shard, case_id = open_case_shard()
    details = {name: of(shard.process([as_ingested(forge(case_id))], NOW), "dlq")[0]["detail"]
               for name, forge in FORGED.items()}
    assert details["unsigned"] == "decision is not signed (no signature field)"
    assert "sha256=<64 lower-case hex digits>" in details["malformed signature"]
    assert "sha256=<64 lower-case hex digits>" in details["upper-case hex"]
    assert "'mallory' is not on the reviewers list of tenant 'acme'" in details["unknown reviewer (validly signed)"]
    assert "signature does not match" in details["wrong key"]
    assert "signature does not match" in details["tampered verdict"]


def test_unauthorized_wins_over_unknown_case_and_erased_subject() -> None:
    """Without the key, nothing tells whether a case is open or an investor erased."""
    shard, case_id = open_case_shard()
    for probe in ("case:acme/inv-1:1", "case:acme/inv-1:99", "case:acme/nobody:1"):
        [dead] = of(shard.process([as_ingested(decision_payload(probe, "approve", key=None))],
                                  NOW), "dlq")
        assert dead["reason"] == "unauthorized"
    # The same probes, properly signed, are told apart: only then is case state revealed.
    stale = decision("case:acme/inv-1:99", "approve", event_id="d-stale")
    assert of(shard.process([stale], NOW), "dlq")[0]["reason"] == "unknown_case"
    shard.process([notice("erasure", 6)], NOW)
    forged = as_ingested(decision_payload(case_id, "approve", event_id="d-x", key=None,
                                          note="call Jane on +44 20 7946 0000"))
    [dead] = of(shard.process([forged], NOW), "dlq")
    assert dead["reason"] == "unauthorized"
    assert dead["value_b64"] is None  # still nothing about an erased investor kept


def test_a_replayed_signature_under_a_new_event_id_is_refused() -> None:
    shard, case_id = open_case_shard()
    genuine = decision_payload(case_id, "needs_info", event_id="d-1")
    assert of(shard.process([as_ingested(genuine)], NOW), "leads")[0]["state"] == "planned"
    [case2] = of(shard.process([scored(0.53, 6)], NOW), "review")
    # An eavesdropper re-sends the captured decision: as is, it is a duplicate ...
    again = shard.process([as_ingested(genuine, offset=10)], NOW)
    assert of(again, "dlq")[0]["reason"] == "duplicate"
    # ... and re-pointed at the new case under a fresh event id, its signature fails.
    copied = genuine | {"event_id": "d-2", "case_id": case2["case_id"], "verdict": "approve"}
    out = shard.process([as_ingested(copied, offset=11)], NOW)
    assert of(out, "dlq")[0]["reason"] == "unauthorized" and not of(out, "handoff")
    assert shard.leads["inv-1"].machine.state == "in_review"


def test_a_decision_sent_with_another_utc_offset_verifies() -> None:
    """The signature covers the instant, not how the producer wrote it."""
    shard, case_id = open_case_shard()
    payload = decision_payload(case_id, "approve")
    local = (T0 + timedelta(hours=5)).astimezone(timezone(timedelta(hours=2))).isoformat()
    out = shard.process([as_ingested(payload | {"event_time": local})], NOW)
    assert of(out, "handoff")[0]["approved_by_review"]


def test_snapshots_hold_no_signing_key_and_resume_under_current_reviewers() -> None:
    shard, case_id = open_case_shard()
    snapshot = pickle.dumps(shard)
    for secret in (KEY, OTHER_KEY, SETTINGS.contact_hash_salt.get_secret_value()):
        assert secret.encode() not in snapshot
    # After the snapshot, the operator removes rev-7 and rotates acme's key.
    rotated = "acme-rotated-signing-key-fedcba9876543210"
    now = Settings.model_validate({"tenants": {"acme": {
        "review_ticket_limit_eur": 1e8, "reviewers": ["rev-8"], "review_signing_key": rotated}}})
    resumed = LifecycleShard.restore(pickle.loads(snapshot), now)
    for stale in (decision(case_id, "approve"),  # old key, removed reviewer
                  decision(case_id, "approve", event_id="d-2", key=rotated)):  # removed reviewer
        assert of(resumed.process([stale], NOW), "dlq")[0]["reason"] == "unauthorized"
    ok = resumed.process([decision(case_id, "approve", event_id="d-3", key=rotated,
                                   reviewer="rev-8")], NOW)
    assert of(ok, "handoff")[0]["approved_by_review"]
    with pytest.raises(TypeError, match="cannot resume the lifecycle"):
        LifecycleShard.restore({"not": "a shard"}, SETTINGS)


def test_a_handoff_after_an_approval_has_typed_instants_and_fits_the_parquet_schema() -> None:
    """Issue 14, finding 2: an approval's handoff carried ``event_time`` as the JSON
    string of the stored record, and the replay's Parquet sink failed on it."""
    from esg_leads.connectors.parquet_sink import to_table

    shard = LifecycleShard(SETTINGS)
    [case] = of(shard.process([scored(0.52)], NOW), "review")
    out = shard.process([decision(case["case_id"], "approve")], NOW)
    [handoff] = of(out, "handoff")
    assert isinstance(handoff["event_time"], datetime) and isinstance(handoff["processed_at"], datetime)
    assert to_table("handoff", [handoff]).num_rows == 1
    assert to_table("leads", of(out, "leads")).num_rows == 1


# ------------------------------------------------------------------------ needs_info

NO_PROFILE = dict(investor_type=None, subscriber_type=None, jurisdiction=None, consents={},
                  ticket_min_eur=None, ticket_max_eur=None, min_epc_band=None,
                  target_countries=(), target_asset_classes=(), contact_ref=None)


def test_a_lead_without_a_profile_asks_for_it_instead_of_opening_a_case() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.8, ctx=context(**NO_PROFILE))], NOW)
    check_records(out)
    assert not of(out, "review") and not of(out, "handoff")
    [lead] = of(out, "leads")
    assert lead["state"] == "needs_info"
    plan = lead["outreach_plan"]
    assert [s["channel"] for s in plan["steps"]] == ["email"]
    assert "jurisdiction, subscriber_type" in plan["steps"][0]["action"]
    assert plan["claims"] == [] and plan["lead_properties"] == []
    # Later scores keep it waiting, without a case, whatever they say.
    assert not of(shard.process([scored(0.52, 1, ctx=context(**NO_PROFILE))], NOW), "review")
    assert shard.leads["inv-1"].machine.state == "needs_info"
    assert shard.counts[("info_requests", "acme")] == 1  # asked once, for the autonomy KPIs
    # The profile arrives: the investor stage scores the lead again right behind it
    # (operators/investor_state.py), and that score routes it, in one record: the
    # notice alone publishes no restatement of the old score at its instant.
    out = shard.process([notice("profile", 2, context())], NOW)
    check_records(out)
    assert not of(out, "leads") and shard.leads["inv-1"].machine.state == "needs_info"
    out = shard.process([scored(0.8, 2)], NOW)
    check_records(out)
    assert of(out, "leads")[0]["state"] == "handed_off" and of(out, "handoff")
    states = [h[2] for h in shard.leads["inv-1"].machine.history]
    assert states[states.index("needs_info") + 1] == "scored" and states[-1] == "handed_off"
    assert shard.counts[("info_received", "acme")] == 1


def test_a_thin_profile_missing_the_subscriber_type_needs_info_too() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.6, ctx=context(subscriber_type=None))], NOW)
    [lead] = of(out, "leads")
    assert lead["state"] == "needs_info" and not of(out, "review")
    assert lead["outreach_plan"]["steps"][0]["action"].endswith("subscriber_type")


def test_a_cold_lead_without_a_profile_is_not_asked_and_not_reviewed() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.1, ctx=context(**NO_PROFILE))], NOW)
    assert of(out, "leads")[0]["state"] == "scored" and not of(out, "review")


def test_no_info_request_by_email_to_an_investor_who_objected_to_email() -> None:
    shard = LifecycleShard(SETTINGS)
    ctx = context(**NO_PROFILE | {"consents": {"email": "opted_out"}})
    [lead] = of(shard.process([scored(0.8, ctx=ctx)], NOW), "leads")
    assert lead["state"] == "needs_info" and lead["outreach_plan"]["steps"] == []


def test_decisions_count_which_need_a_human_and_the_queue_tracks_open_cases() -> None:
    shard = LifecycleShard(SETTINGS)
    shard.process([scored(0.8, investor_id="inv-2"), scored(0.8, ctx=context(**NO_PROFILE),
                                                           investor_id="inv-3")], NOW)
    [case] = of(shard.process([scored(0.52, 2)], NOW), "review")
    assert shard.counts[("decisions", "acme")] == 3
    assert shard.counts[("decisions_by_human", "acme")] == 1
    assert shard.gauges[("review_open_cases", "acme")] == 1
    assert shard.gauges[("review_oldest_open_s", "acme")] == (T0 + timedelta(hours=2)).timestamp()
    assert shard.gauges[("event_clock_s", "acme")] == (T0 + timedelta(hours=2)).timestamp()
    shard.process([decision(case["case_id"], "approve")], NOW)
    assert shard.gauges[("review_open_cases", "acme")] == 0
    assert shard.gauges[("review_oldest_open_s", "acme")] is None
    assert shard.counts[("review_decisions", "acme")] == 1
    # The queue survives a snapshot.
    [case] = of(shard.process([scored(0.52, 3, investor_id="inv-4")], NOW), "review")
    restored = LifecycleShard.restore(pickle.loads(pickle.dumps(shard)), SETTINGS)
    assert restored.open_since == {"inv-4": (T0 + timedelta(hours=3)).timestamp()}


def test_uncertainty_alone_waits_for_evidence_before_asking_a_person() -> None:
    shard = LifecycleShard(SETTINGS.model_copy(update={"lifecycle": SETTINGS.lifecycle.model_copy(
        update={"uncertain_review_after": timedelta(days=7)})}))
    out = shard.process([scored(0.52)], NOW)
    assert not of(out, "review") and of(out, "leads")[0]["state"] == "planned"
    # Above the threshold but unsure (wide interval): still no handoff, still no case.
    out = shard.process([scored(0.8, 24, low=0.2, high=0.95)], NOW)
    assert not of(out, "review") and not of(out, "handoff")
    assert shard.leads["inv-1"].machine.state == "planned"
    # Still unsure a week after it first was: now a person looks.
    [case] = of(shard.process([scored(0.53, 7 * 24)], NOW), "review")
    assert [r["code"] for r in case["reasons"]] == ["ambiguous_score"]
    # A real judgement call (ticket over the limit) does not wait.
    big = SETTINGS.model_copy(update={"tenants": {"acme": SETTINGS.tenants["acme"].model_copy(
        update={"review_ticket_limit_eur": 1e6})}, "lifecycle": shard.settings.lifecycle})
    [case] = of(LifecycleShard(big).process([scored(0.52, investor_id="inv-2")], NOW), "review")
    assert "ticket_over_limit" in [r["code"] for r in case["reasons"]]


def test_certainty_resets_the_wait() -> None:
    shard = LifecycleShard(SETTINGS.model_copy(update={"lifecycle": SETTINGS.lifecycle.model_copy(
        update={"uncertain_review_after": timedelta(days=7)})}))
    shard.process([scored(0.52)], NOW)
    shard.process([scored(0.2, 3 * 24)], NOW)  # no longer near the threshold
    assert not of(shard.process([scored(0.52, 8 * 24)], NOW), "review")  # a new wait begins


def test_handoffs_and_cases_carry_versions_and_lineage_and_notices_never_cut_it() -> None:
    """Issue 19.6: a full lineage plus a notice keeps the oldest reference in the
    digest (it used to be cut at 63 + 1); the handoff names model, feature set and inputs."""
    first = scored(0.8)
    full = [{"event_id": f"e{i}", "topic": "investor.engagements", "partition": 0, "offset": i}
            for i in range(64)]
    first.record["lineage"] = full
    shard = LifecycleShard(SETTINGS)
    out = shard.process([first], NOW)
    check_records(out)
    [handoff] = of(out, "handoff")
    assert (handoff["model_version"], handoff["feature_set_version"]) == ("m", "fs-2")
    assert handoff["lineage"] == full and handoff["lineage_omitted"] is None
    [lead] = of(shard.process([notice("outcome", 1, detail="disqualified")], NOW), "leads")
    validate_record("leads.scored", lead)
    assert len(lead["lineage"]) == 64 and lead["lineage"][-1]["event_id"] == "n-outcome-1"
    assert lead["lineage"][0]["event_id"] == "e1"
    assert lead["lineage_omitted"]["count"] == 1 and lead["lineage_omitted"]["audit"] == "audit:acme:inv-1:"
    assert lead["lineage_omitted"]["digest"] == digest_hex(ref_digest(full[0]))


def test_review_cases_carry_versions_and_lineage() -> None:
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.5, low=0.05, high=0.95)], NOW)
    check_records(out)
    cases = of(out, "review")
    assert cases and all(c["model_version"] == "m" and c["feature_set_version"] == "fs-2"
                         and c["lineage"][0]["event_id"] == "e1" for c in cases)


def test_a_published_record_is_never_changed_by_a_later_one() -> None:
    """A re-emitted lead shares the nested parts of the last published record (no deep
    copy, issue 16); the earlier record, perhaps still in a sink's buffer, must stay as
    it was published, its lineage summary included."""
    first = scored(0.8)
    first.record["lineage_omitted"] = {"count": 1, "digest": "0" * 64}
    shard = LifecycleShard(SETTINGS)
    out = shard.process([first], NOW)
    published = [(e.kind, orjson.dumps(e.record, option=orjson.OPT_NON_STR_KEYS))
                 for e in out if e.kind in ("leads", "handoff")]
    [lead] = of(shard.process([notice("outcome", 1, detail="disqualified")], NOW), "leads")
    assert lead["lineage_omitted"]["audit"] == "audit:acme:inv-1:" and lead["state"] == "disqualified"
    assert [(e.kind, orjson.dumps(e.record, option=orjson.OPT_NON_STR_KEYS))
            for e in out if e.kind in ("leads", "handoff")] == published


def test_one_tenants_erasure_leaves_another_tenants_investor_of_the_same_id() -> None:
    """Stop 29's review: tenants share the output topics, and keys were the investor id
    alone, so A's erasure of ``inv-1`` tombstoned B's lead, case and handoff of its own
    ``inv-1`` (and compaction kept only one of the two leads). Keys name the tenant."""
    from tests.two_tenants import EXPECTED, compacted, outputs, survivors

    before, erasure = outputs()
    kept = compacted(before)
    assert len(kept) == 6  # both tenants' lead, case and handoff: no key shared
    assert survivors(compacted(before + erasure)) == EXPECTED
    assert sorted((e.topic, e.key) for e in erasure if e.kind == "tombstone") == [
        (topic, "acme/inv-1") for topic in ("crm.handoff", "leads.review", "leads.scored")]
    assert {e.key for e in before if e.kind in ("leads", "review", "handoff")} == {
        "acme/inv-1", "beta/inv-1"}


@pytest.mark.parametrize("investor_id", ["i", "x" * 64, "inv.9:Z-" * 8])
def test_an_investor_id_of_any_valid_length_gets_a_case_a_decision_and_a_handoff(
        investor_id: str) -> None:
    """Stop 30's review: case and qualification ids (``case:<id>:<n>``, ``q:<id>:<n>``)
    were entity ids, at most 64 characters, so a valid investor id of 58 or more made a
    review case that failed its own schema and that no decision could name, and a
    handoff crm-sync refused: the lead stuck in review, never reaching the CRM."""
    assert len(investor_id) <= 64
    shard = LifecycleShard(SETTINGS)
    out = shard.process([scored(0.52, investor_id=investor_id)], NOW)
    check_records(out)
    [case] = of(out, "review")
    out = shard.process([decision(case["case_id"], "approve", investor_id=investor_id)], NOW)
    check_records(out)
    [handoff] = of(out, "handoff")
    assert handoff["investor_id"] == investor_id and handoff["approved_by_review"]


def test_no_reason_naming_an_erased_investor_outlives_the_erasure() -> None:
    """Review of stop 30: every move's reason went through a process-wide table of
    shared texts, a review decision's too (``... on case:<investor>:<n>``), so an erased
    investor's id stayed readable in memory. Only routing's template texts are shared."""
    from esg_leads.operators import lead_state

    shard = LifecycleShard(SETTINGS)
    investor = "inv-erased-7"
    [case] = of(shard.process([scored(0.52, investor_id=investor)], NOW), "review")
    out = shard.process([decision(case["case_id"], "approve", investor_id=investor)], NOW)
    assert of(out, "handoff")
    shard.process([notice("erasure", 6, investor_id=investor)], NOW)
    assert investor not in shard.leads
    assert not [text for text in lead_state.shared_reason.table if investor in text]


def test_a_decision_on_an_unreadable_kept_record_leaves_the_lead_as_it_was() -> None:
    """A kept record that cannot be read (a damaged snapshot: frames carry a checksum)
    makes the decision a processing-error dead letter before anything changes, not a
    lead handed off without its handoff."""
    shard, case_id = open_case_shard()
    lead = shard.leads["inv-1"]
    damaged = bytearray(lead.last_record)
    damaged[len(damaged) // 2] ^= 0x10
    lead.last_record = bytes(damaged)
    out = shard.process([decision(case_id, "approve")], NOW)
    assert [d["reason"] for d in of(out, "dlq")] == ["processing_error"]
    assert not of(out, "leads") and not of(out, "handoff")
    assert lead.machine.state == "in_review" and lead.open_case == case_id
