"""The whole flow on hand-made streams, through bytewax's testing source and sink."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.pipeline import Sinks, build_flow
from flows.telemetry import Telemetry
from operators.investor_state import InvestorShard
from operators.scoring import TenantScorer
from schemas.codec import validate_record
from schemas.outputs import DlqReason
from schemas.records import OffsetsReset, RawMessage
from schemas.settings import Settings
from tests.flows.events import (
    at,
    duplicate_of,
    engagement,
    erasure,
    message,
    outcome,
    profile,
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


def run(messages: list[RawMessage], config: Settings | None = None) -> tuple[dict, Telemetry]:
    out = {k: [] for k in ("leads", "dlq", "alerts", "review", "handoff", "audit", "tombstones")}
    telemetry = Telemetry()
    flow = build_flow(config or settings(), TestingSource(messages, batch_size=4),
                      Sinks(**{k: TestingSink(v) for k, v in out.items()}), telemetry,
                      clock=lambda: NOW)
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
    out, telemetry = run(messages)

    dead = out["dlq"]
    for record in dead:
        validate_record("leads.dlq", record)
    assert reasons(dead) == {
        "duplicate": 2, "late": 1, "decode_error": 1, "schema_error": 1,
        "unknown_tenant": 1, "unknown_topic": 1, "key_mismatch": 1, "erased_subject": 2,
    }
    late = next(d for d in dead if d["reason"] == "late")
    assert (late["topic"], late["event_id"]) == ("investor.engagements", "e-late")
    assert orjson.loads(__import__("base64").b64decode(late["value_b64"]))["event_id"] == "e-late"
    assert all(d["value_b64"] is None for d in dead if d["reason"] == "erased_subject")

    leads = out["leads"]
    for record in leads:
        validate_record("leads.scored", record)
    inv1 = [r for r in leads if r["investor_id"] == "inv-1"]
    # One lead per closed window with activity; the last window closes at end of stream.
    assert [r["event_time"] for r in inv1][:2] == [at(60), at(180)]
    first = inv1[0]
    assert {ref["event_id"] for ref in first["lineage"]} == {"e-view", "e-report"}
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
                     "future_event_time"}
    assert produced_here | {"unknown_case", "unauthorized"} == {r.value for r in DlqReason}


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
