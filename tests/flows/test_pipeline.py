"""The whole flow on hand-made streams, through bytewax's testing source and sink."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.flows.pipeline import Sinks, build_flow
from esg_leads.flows.steps import shard_key
from esg_leads.flows.telemetry import Telemetry
from esg_leads.operators.erasure import open_dead_letter
from esg_leads.operators.investor_state import InvestorShard
from esg_leads.operators.scoring import TenantScorer
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.records import OffsetsReset, RawMessage, Tombstone
from esg_leads.schemas.settings import Settings
from tests.flows.events import (
    at,
    duplicate_of,
    engagement,
    erasure,
    message,
    outcome,
    profile,
    review_decision,
    signal,
)

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def settings(**overrides) -> Settings:
    base = {"tenants": {"acme": {}, "beta": {}},
            "windows": {"length": "PT1H", "allowed_lateness": "PT15M", "shards_per_tenant": 2,
                        "stagger": False},
            "features": {"rescore_after": ["P2D"]}}
    for key, value in overrides.items():
        base[key] = base.get(key, {}) | value if isinstance(value, dict) else value
    return Settings.model_validate(base)


def run(messages: list[RawMessage], config: Settings | None = None,
        keys: KeyVault | None = None) -> tuple[dict, Telemetry]:
    out = {k: [] for k in ("leads", "dlq", "alerts", "review", "handoff", "audit", "tombstones")}
    telemetry = Telemetry()
    flow = build_flow(config or settings(), TestingSource(messages, batch_size=4),
                      Sinks(**{k: TestingSink(v) for k, v in out.items()}), telemetry,
                      clock=lambda: NOW, keys=keys)
    run_main(flow)
    return out, telemetry


def reasons(dead_letters: list[dict]) -> Counter:
    return Counter(d["reason"] for d in dead_letters)


def test_every_stage_and_every_dead_letter_reason() -> None:
    first_view = engagement("e-view", "inv-1", at(10))
    messages = [
        signal("s-1", "p-1", at(0)),
        duplicate_of(signal("s-1", "p-1", at(0)), at(1)),  # same event id again
        profile("pr-1", "inv-1", at(2)),
        first_view,
        engagement("e-report", "inv-1", at(20), "esg_report_download"),
        engagement("e-beta", "inv-9", at(25), property_id=None, tenant="beta"),
        duplicate_of(first_view, at(26)),
        engagement("e-late", "inv-1", at(30), ingest=at(200)),  # arrives 2h50 late
        engagement("e-next", "inv-1", at(130)),  # moves the clock: the 9:00 window closes
        outcome("o-1", "inv-1", at(90), ingest=at(136)),  # qualified; the CRM syncs late
        message("investor.engagements", "inv-1", b"{not json", at(131)),
        message("investor.engagements", "inv-1", orjson.dumps({"tenant": "acme"}), at(132)),
        engagement("e-ghost", "inv-1", at(133), tenant="ghost-fund"),
        message("not.a.topic", "x", b"{}", at(134)),
        message("investor.engagements", "inv-OTHER",
                orjson.loads(engagement("e-key", "inv-1", at(135)).value), at(135)),
        erasure("er-2", "inv-2", at(140)),
        engagement("e-after-erasure", "inv-2", at(141)),
        profile("pr-2", "inv-2", at(142)),
        engagement("e-last", "inv-1", at(400)),  # closes the 11:00 window
    ]
    # The late engagement must arrive after the clock moved on.
    messages.sort(key=lambda m: m.timestamp_ms)
    keys = KeyVault(":memory:")
    out, telemetry = run(messages, keys=keys)

    dead = out["dlq"]
    for record in dead:
        validate_record("leads.dlq", record)
    assert reasons(dead) == {
        "duplicate": 2, "late": 1, "decode_error": 1, "schema_error": 1,
        "unknown_tenant": 1, "unknown_topic": 1, "key_mismatch": 1, "erased_subject": 2,
    }
    late = next(d for d in dead if d["reason"] == "late")
    assert (late["topic"], late["event_id"]) == ("investor.engagements", "e-late")
    assert late["sealed"]  # about an investor: sealed under their key (operators/erasure.py)
    assert orjson.loads(open_dead_letter(late, keys, {"acme", "beta"}))["event_id"] == "e-late"
    assert all(d["value_b64"] is None for d in dead if d["reason"] == "erased_subject")

    leads = out["leads"]
    for record in leads:
        validate_record("leads.scored", record)
    inv1 = [r for r in leads if r["investor_id"] == "inv-1"]
    # One lead per closed window with activity; the last window closes at end of stream.
    assert [r["event_time"] for r in inv1][:2] == [at(60), at(180)]
    first = inv1[0]
    # The engagements, and the property signal whose facts enriched the view.
    assert {ref["event_id"] for ref in first["lineage"]} == {"e-view", "e-report", "s-1"}
    assert {r["topic"] for r in first["lineage"] if r["event_id"] == "s-1"} == {"esg.property-signals"}
    assert first["features"]["esg_reports_30d"] > 0
    assert first["esg_alignment"]["components"]["esg_research"] > 0
    assert first["model"]["feature_set_version"].startswith("fs-")
    assert {r["tenant"] for r in leads} == {"acme", "beta"}
    assert not any(r["investor_id"] == "inv-2" for r in leads)

    # Counts reconcile per topic: in = used + dead-lettered.
    used = telemetry.per_topic("used")
    for topic, n_in in telemetry.per_topic("in").items():
        n_dead = sum(n for (t, _), n in telemetry.dlq.items() if t == topic)
        assert n_in == used.get(topic, 0) + n_dead, topic
    assert sum(telemetry.per_topic("labels").values()) == 1


def test_point_in_time_learning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model learns an outcome with the features scored before it, never after."""
    learned = []
    original = TenantScorer.learn

    def spy(self, example, now):
        learned.append(example)
        return original(self, example, now)

    monkeypatch.setattr(TenantScorer, "learn", spy)
    messages = [
        signal("s-1", "p-1", at(0)),
        engagement("e-1", "inv-1", at(10)),  # window 09:00-10:00 -> scored as of 10:00
        # A burst of deep engagement *after* the outcome, in the 10:00-11:00 window.
        *[engagement(f"e-burst-{i}", "inv-1", at(95 + i), "meeting_booked", None) for i in range(5)],
        engagement("e-close", "inv-1", at(200)),  # closes the 10:00-11:00 window
        outcome("o-1", "inv-1", at(90), ingest=at(260)),  # CRM syncs late
    ]
    out, _ = run(messages)
    scored = {r["event_time"]: r for r in out["leads"] if r["investor_id"] == "inv-1"}
    assert at(120) in scored and scored[at(120)]["features"]["meetings"] == 5
    assert len(learned) == 1
    example = learned[0]
    assert example.features.as_of == at(60) <= example.outcome_time
    assert example.features.features == scored[at(60)]["features"]
    assert example.features.features["meetings"] == 0  # nothing from after the outcome


def test_rescore_after_silence_and_unsubscribe_is_immediate() -> None:
    messages = [
        signal("s-1", "p-1", at(0)),
        profile("pr-1", "inv-1", at(1)),
        engagement("e-1", "inv-1", at(10)),
        engagement("u-1", "inv-1", at(20), "unsubscribe", None),
        engagement("e-2", "inv-2", at(3 * 24 * 60)),  # three days later, same shard or not
        engagement("e-3", "inv-3", at(3 * 24 * 60 + 5)),
        engagement("e-4", "inv-4", at(3 * 24 * 60 + 6)),
    ]
    out, telemetry = run(messages, settings(windows={"shards_per_tenant": 1},
                                            lifecycle={"material_score_change": 0}))
    inv1 = [r for r in out["leads"] if r["investor_id"] == "inv-1"]
    assert [r["event_time"] for r in inv1] == [at(60), at(60) + timedelta(days=2)]
    rescore = inv1[1]
    assert rescore["features"]["recency_days"] == pytest.approx(2.0)
    assert rescore["features"]["eng_1d"] < inv1[0]["features"]["eng_1d"]
    assert rescore["features"]["contactable"] == 1.0  # phone consent remains
    assert telemetry.per_topic("used")["investor.engagements"] == 5


@pytest.mark.parametrize("next_from", ["another shard", "the same shard"])
def test_a_silence_rescore_is_published_at_its_deadline_whatever_arrives_next(next_from) -> None:
    """The tenant's clock times a re-score, not the investor's shard: with the next
    event from an investor of another shard, the shard used to hear nothing more and
    never re-scored (in the demo: hours later, after a reviewer had decided the case)."""
    shards = 4
    home = shard_key("acme", "inv-1", shards)
    mover = next(i for i in (f"inv-{n}" for n in range(2, 100))
                 if (shard_key("acme", i, shards) == home) == (next_from == "the same shard"))
    deadline = at(60) + timedelta(days=2)  # the 9:00 window's end plus the silence
    messages = [
        signal("s-1", "p-1", at(0)),
        profile("pr-1", "inv-1", at(1)),
        engagement("e-1", "inv-1", at(10)),
        engagement("e-2", mover, deadline - timedelta(minutes=1)),
        engagement("e-3", mover, deadline),  # the tenant's clock reaches the deadline
    ]
    out, telemetry = run(messages, settings(windows={"shards_per_tenant": shards},
                                            lifecycle={"material_score_change": 0}))
    inv1 = [r for r in out["leads"] if r["investor_id"] == "inv-1"]
    assert [r["event_time"] for r in inv1] == [at(60), deadline]
    assert inv1[1]["features"]["recency_days"] == pytest.approx(2.0)
    assert telemetry.per_topic("used")["investor.engagements"] == 3


def test_processing_errors_become_dead_letters_and_the_flow_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = InvestorShard._on_profile

    def fragile(self, ingested):
        if ingested.event.event_id == "pr-bad":
            raise RuntimeError("boom")
        return original(self, ingested)

    monkeypatch.setattr(InvestorShard, "_on_profile", fragile)
    messages = [profile("pr-bad", "inv-1", at(0)), profile("pr-ok", "inv-2", at(1)),
                engagement("e-1", "inv-2", at(5), property_id=None),
                engagement("e-2", "inv-2", at(100), property_id=None)]
    out, telemetry = run(messages)
    assert reasons(out["dlq"]) == {"processing_error": 1}
    assert "RuntimeError: boom" in out["dlq"][0]["detail"]
    assert any(r["investor_id"] == "inv-2" for r in out["leads"])
    assert telemetry.per_topic("used")["investor.profiles"] == 1


def test_drift_alerts_are_published() -> None:
    config = settings(scoring={"drift": {"features": ["eng_1d"], "warmup": 5, "min_effect": 0.1,
                                         "confirm": 20,
                                         "feature_delta": 0.05}})
    messages = [signal("s-1", "p-1", at(0))]
    minute = 10
    for i in range(60):  # quiet investors...
        messages.append(engagement(f"q-{i}", f"inv-q{i}", at(minute)))
        minute += 7
    for i in range(60):  # ...then very busy ones
        for j in range(6):
            messages.append(engagement(f"b-{i}-{j}", f"inv-b{i}", at(minute + j)))
        minute += 7
    out, _ = run(messages, config)
    assert out["alerts"], "a shift in engagement volume should be detected"
    for alert in out["alerts"]:
        validate_record("ops.alerts", alert)
    assert {a["subject"] for a in out["alerts"]} == {"feature:eng_1d"}


def test_dead_letter_reasons_are_all_reachable() -> None:
    """Every reason in the contract is produced somewhere (this file or lifecycle tests)."""
    produced_here = {"duplicate", "late", "decode_error", "schema_error", "unknown_tenant",
                     "unknown_topic", "key_mismatch", "erased_subject", "processing_error",
                     "future_event_time", "unknown_case", "unauthorized"}
    by_crm_sync = {"crm_rejected"}  # tests/flows/test_crm_sync.py
    by_commands = {"rejected_command"}  # tests/replay/test_model_governance.py
    assert produced_here | by_crm_sync | by_commands == {r.value for r in DlqReason}


def test_only_signed_decisions_of_listed_reviewers_move_a_lead() -> None:
    """Forged, unsigned and unlisted decisions are dead-lettered by the running flow."""
    key = "acme-review-signing-key-for-tests-0001"
    config = settings(tenants={"acme": {"reviewers": ["rev-1"], "review_signing_key": key}})
    # An investor whose jurisdiction has no compliance pack: its lead goes to review.
    unsure = profile("pr-au", "inv-1", at(0))
    unsure = unsure._replace(value=orjson.dumps(orjson.loads(unsure.value) | {"jurisdiction": "AU"}))
    case = "case:acme/inv-1:1"
    messages = [
        signal("s-1", "p-1", at(0)), unsure,
        engagement("e-1", "inv-1", at(10), "esg_report_download"),
        engagement("e-2", "inv-1", at(130)),  # closes the first window: the case opens
        review_decision("d-forged", "inv-1", case, at(140)),  # unsigned
        review_decision("d-wrong-key", "inv-1", case, at(141), key="x" * 40),
        review_decision("d-mallory", "inv-1", case, at(142), key=key, reviewer="mallory"),
        review_decision("d-probe", "inv-1", "case:acme/inv-1:7", at(143)),  # unsigned probe
        review_decision("d-stale", "inv-1", "case:acme/inv-1:7", at(144), key=key),
        # The old form (before stop 31) of a case number that is not open:
        review_decision("d-old-form", "inv-1", "case:inv-1:2", at(145), key=key),
        review_decision("d-ok", "inv-1", case, at(150), key=key),
    ]
    out, telemetry = run(messages, config)
    assert [r["case_id"] for r in out["review"]] == [case]
    by_event = {d["event_id"]: d["reason"] for d in out["dlq"]}
    assert by_event == {"d-forged": "unauthorized", "d-wrong-key": "unauthorized",
                        "d-mallory": "unauthorized", "d-probe": "unauthorized",
                        "d-stale": "unknown_case", "d-old-form": "unknown_case"}
    for record in out["dlq"]:
        validate_record("leads.dlq", record)
    [handoff] = out["handoff"]
    assert handoff["approved_by_review"] and handoff["investor_id"] == "inv-1"
    refusals = [a for a in out["audit"] if a["agent"] == "review-auth"]
    assert len(refusals) == 4 and {a["decision"] for a in refusals} == {"unauthorized"}
    assert telemetry.per_topic("used")["lead.review-decisions"] == 1
    assert telemetry.dlq[("lead.review-decisions", "unauthorized")] == 4


def test_one_far_future_event_neither_moves_the_clock_nor_empties_its_tenant() -> None:
    """Issue 14, finding 4: one engagement stamped 2099 closed every window of its
    tenant, and 952 of the tenant's next 958 engagements were dead-lettered as late."""
    far = datetime(2099, 12, 31, tzinfo=timezone.utc)
    messages = [signal("s-1", "p-1", at(0)),
                engagement("e-2099", "inv-0", far, ingest=at(1))]
    messages += [engagement(f"e-{i}", f"inv-{i % 7}", at(2 + i)) for i in range(300)]
    out, telemetry = run(messages)
    assert reasons(out["dlq"]) == {"future_event_time": 1}
    [future] = out["dlq"]
    assert future["event_id"] == "e-2099" and future["value_b64"] is not None
    validate_record("leads.dlq", future)
    summary = telemetry.summary({}, len(messages), 1.0)
    assert summary["reconciled"] and summary["topics"]["investor.engagements"]["used"] == 300
    assert {lead["investor_id"] for lead in out["leads"]} == {f"inv-{i}" for i in range(7)}


def test_far_future_esg_dates_are_dead_letters_and_features_stay_in_range() -> None:
    """Issue 14, finding 1: ``data_as_of`` 9999-12-31 overflowed ``compute_features``
    (exit 1); 2100 gave a negative data age, a feature of 1.4e32 and an invalid lead."""
    def with_as_of(event_id: str, as_of: str, when: datetime) -> RawMessage:
        payload = orjson.loads(signal(event_id, "p-1", when).value) | {"data_as_of": as_of}
        return message("esg.property-signals", "p-1", payload, when)

    messages = [signal("s-0", "p-1", at(0)),
                with_as_of("s-9999", "9999-12-31", at(1)),
                with_as_of("s-2100", "2100-01-01", at(2)),
                # Dated the day after it was sent, and so after the engagements before it.
                with_as_of("s-next-day", (at(3) + timedelta(days=1)).date().isoformat(), at(3))]
    messages += [engagement(f"e-{i}", "inv-1", at(4 + i)) for i in range(5)]
    messages.append(engagement("e-close", "inv-2", at(200)))
    out, telemetry = run(messages)
    assert reasons(out["dlq"]) == {"schema_error": 2}
    assert out["leads"]
    for lead in out["leads"]:
        validate_record("leads.scored", lead)
    assert telemetry.summary({}, len(messages), 1.0)["features_clamped"] == 0



def test_offsets_reset_notices_become_alerts_and_never_inputs() -> None:
    """A Kafka source's report of a lost position flows to the alerts sink as an
    ``offsets_reset`` alert; it is not an input (in = used + DLQ still reconciles)."""
    notice = OffsetsReset("investor.engagements", 0, 500, 0, 0, 2, 1_900_000_000_000,
                          "stored position not on the broker (log 0..2)")
    messages = [notice, signal("s-1", "p-1", at(0)), engagement("e-1", "inv-1", at(5)),
                engagement("e-1", "inv-1", at(6))]  # e-1 again: read twice after a reset
    out, telemetry = run(messages)
    resets = [a for a in out["alerts"] if a["kind"] == "offsets_reset"]
    assert [a["subject"] for a in resets] == ["investor.engagements:0"]
    validate_record("ops.alerts", resets[0])
    assert resets[0]["tenant"] is None and resets[0]["details"]["old_offset"] == 500
    inputs = telemetry.per_topic("in")
    assert sum(inputs.values()) == 3
    assert reasons(out["dlq"]) == Counter({"duplicate": 1})


@pytest.mark.parametrize("batch_size", [1, 100])
def test_each_topics_sink_gets_its_erasure_tombstone_after_the_investors_records(
        batch_size: int) -> None:
    """Stop 30's review: in run mode leads and tombstones went to two sinks, each with
    its own producer, so a lead and the erasure tombstone after it (one batch, one
    epoch) could reach the partition in either order, and compaction kept the lead of
    an erased investor. With ``Sinks.tombstones=None`` each per-investor topic's sink
    receives its own deletions among its records, in the lifecycle's order."""
    messages = sorted([
        signal("s-1", "p-1", at(0)),
        profile("pr-1", "inv-1", at(2)),
        engagement("e-1", "inv-1", at(10)),
        engagement("e-2", "inv-1", at(20), "esg_report_download"),
        engagement("e-3", "inv-1", at(130)),  # the 9:00 window closes: a lead
        erasure("er-1", "inv-1", at(131)),
        engagement("e-4", "inv-9", at(140)),
    ], key=lambda m: m.timestamp_ms)
    out = {k: [] for k in ("leads", "dlq", "alerts", "review", "handoff", "audit", "shadow")}
    flow = build_flow(settings(), TestingSource(messages, batch_size=batch_size),
                      Sinks(**{k: TestingSink(v) for k, v in out.items()}, tombstones=None),
                      Telemetry(), clock=lambda: NOW, keys=KeyVault(":memory:"))
    run_main(flow)

    leads = [r for r in out["leads"] if getattr(r, "key", None) == "acme/inv-1"
             or (isinstance(r, dict) and r["investor_id"] == "inv-1")]
    assert len(leads) >= 2 and all(isinstance(r, dict) for r in leads[:-1])
    assert leads[-1] == Tombstone("leads.scored", "acme/inv-1")
    for kind, topic in (("review", "leads.review"), ("handoff", "crm.handoff"),
                        ("shadow", "leads.shadow")):
        assert Tombstone(topic, "acme/inv-1") in out[kind], kind
    assert not any(type(r) is Tombstone for r in out["dlq"] + out["alerts"] + out["audit"])
