"""The model lifecycle of one tenant: promotion and rollback rules, pin, commands."""

from __future__ import annotations

import pickle
import random
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from esg_leads.online_models.model_store import ModelStore
from esg_leads.operators import control_auth
from esg_leads.operators.model_lifecycle import MODEL_SUBJECT
from esg_leads.operators.scoring import TenantScorer
from esg_leads.operators.warm_start import scorer_artifact
from esg_leads.schemas.codec import decode_event, validate_record
from esg_leads.schemas.records import Emitted, Ingested
from esg_leads.schemas.settings import Settings
from tests.operators.test_scoring import NOW, example, score, separable

KEY = "k" * 40
WHEN = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)


def trained_version(registry: Path, flip: bool, seed: int) -> str:
    """A registered model of tenant acme, taught the separable rule (or its opposite)."""
    scorer = TenantScorer("acme", Settings.model_validate({"tenants": {"acme": {}}}))
    rng = random.Random(seed)
    for i in range(800):
        v, y = separable(i, rng)
        scorer.learn(example(v, y != flip), NOW)
    artifact = scorer_artifact(scorer, name="bagged-logreg", labels=800, positives=400,
                               window=(None, None), until=None, validation={}, parent=None,
                               created_by="test", source="memory")
    return ModelStore(registry).register(artifact, NOW)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("registry")
    return {"dir": root, "good": trained_version(root, False, 1),
            "bad": trained_version(root, True, 2)}


def settings(registry: dict, challenger: str | None = None, **models) -> Settings:
    data = {"tenants": {"acme": {"control_signing_key": KEY}},
            "registry": {"directory": str(registry["dir"])},
            "models": {"min_labels": 50, "window_labels": 200, "watch_labels": 400, **models}}
    if challenger is not None:
        data["models"]["challengers"] = {"acme": {"version": registry[challenger]}}
    return Settings.model_validate(data)


def feed(scorer: TenantScorer, n: int, seed: int, start: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        v, y = separable(i, rng)
        out += scorer.process([example(v, y)], NOW)
    return out


def alerts(out: list) -> list[dict]:
    return [o for o in out if isinstance(o, dict) and o.get("detector") == "model_lifecycle"]


def command(action: str, version: str | None, event_id: str, offset: int = 0) -> Ingested:
    payload = {"tenant": "acme", "event_id": event_id, "event_time": WHEN.isoformat(),
               "source": "test", "action": action, "operator": "ops-1"}
    if version is not None:
        payload["version"] = version
    event = decode_event("ops.control", orjson.dumps(payload))
    payload["signature"] = control_auth.sign_command(KEY, event)
    value = orjson.dumps(payload)
    return Ingested(decode_event("ops.control", value), "ops.control", 0, offset,
                    int(WHEN.timestamp() * 1000), b"acme", value)


def test_a_better_challenger_is_promoted_by_the_paired_test(registry: dict) -> None:
    scorer = TenantScorer("acme", settings(registry, "good"))
    out = feed(scorer, 300, seed=5)
    (promoted,) = [a for a in alerts(out) if a["kind"] == "model_promoted"]
    validate_record("ops.alerts", promoted)
    assert promoted["details"]["trigger"] == "rule"
    assert promoted["details"]["lower_bound"] > 0
    assert promoted["details"]["shared_labels"] >= 50
    assert scorer.origin == registry["good"]
    assert scorer.governor.challenger is None and scorer.governor.predecessor is not None
    audit = [o.record for o in out if isinstance(o, Emitted) and o.kind == "audit"]
    assert [r["decision"] for r in audit] == ["challenger_started", "model_promoted"]
    assert {r["investor_id"] for r in audit} == {MODEL_SUBJECT}


def test_a_worse_challenger_is_never_promoted(registry: dict) -> None:
    scorer = TenantScorer("acme", settings(registry, "bad"))
    out = feed(scorer, 400, seed=6)
    assert [a["kind"] for a in alerts(out)] == ["challenger_started"]
    assert scorer.origin is None
    assert scorer.governor.challenger_test.mean() < 0  # the champion loses less


def test_a_promotion_that_degrades_is_rolled_back_unless_pinned(registry: dict) -> None:
    scorer = TenantScorer("acme", settings(registry))
    feed(scorer, 300, seed=7)  # the online champion learns the rule
    out = scorer.process([command("promote", registry["bad"], "c-1")], NOW)
    assert [a["kind"] for a in alerts(out)] == ["model_promoted"]
    assert scorer.origin == registry["bad"]
    pinned = pickle.loads(pickle.dumps(scorer))  # the same state, then pinned
    assert [a["kind"] for a in alerts(pinned.process([command("pin", registry["bad"], "c-2")], NOW))] \
        == ["model_pinned"]

    out = feed(scorer, 300, seed=8, start=300)
    (rolled,) = alerts(out)
    assert rolled["kind"] == "model_rolled_back" and rolled["details"]["trigger"] == "rule"
    assert rolled["details"]["previous"] == registry["bad"] and scorer.origin is None

    assert alerts(feed(pinned, 300, seed=8, start=300)) == []  # pinned: no rule acts
    assert pinned.origin == registry["bad"]
    unpinned = alerts(pinned.process([command("unpin", None, "c-3")], NOW))
    assert [a["kind"] for a in unpinned] == ["model_unpinned"]
    assert [a["kind"] for a in alerts(feed(pinned, 300, seed=9, start=600))] == ["model_rolled_back"]


def test_commands_rollback_previous_and_refuse_what_cannot_apply(registry: dict) -> None:
    scorer = TenantScorer("acme", settings(registry))
    out = scorer.process([command("rollback", "previous", "c-1")], NOW)
    (dead,) = out
    assert dead["reason"] == "rejected_command" and "predecessor" in dead["detail"]
    scorer.process([command("promote", registry["good"], "c-2")], NOW)
    out = scorer.process([command("rollback", "previous", "c-3")], NOW)
    assert [a["kind"] for a in alerts(out)] == ["model_rolled_back"] and scorer.origin is None
    (again,) = scorer.process([command("promote", registry["good"], "c-2", offset=9)], NOW)
    assert again["reason"] == "duplicate"
    (missing,) = scorer.process([command("promote", "m-0000abcd", "c-4")], NOW)
    assert missing["reason"] == "rejected_command" and "m-0000abcd" in missing["detail"]
    assert scorer.origin is None


def test_canary_leads_name_the_challenger_and_shadow_covers_every_vector(registry: dict) -> None:
    config = settings(registry).model_copy(deep=True)
    config = Settings.model_validate({**config.model_dump(mode="python"), "models": {
        "challengers": {"acme": {"version": registry["good"], "canary_share": 0.5}},
        "auto_promote": False}})
    config = config.model_copy(update={"tenants": {"acme": config.tenants["acme"]}})
    scorer = TenantScorer("acme", config)
    rng = random.Random(3)
    vectors = [separable(i, rng)[0] for i in range(40)]
    out = scorer.process(vectors, NOW)
    shadow = [o.record for o in out if isinstance(o, Emitted) and o.kind == "shadow"]
    assert len(shadow) == 40
    # Keyed as the other per-investor outputs: the tenant's own investor.
    assert all(o.key == f"acme/{o.record['investor_id']}" for o in out
               if isinstance(o, Emitted) and o.kind == "shadow")
    for record in shadow:
        validate_record("leads.shadow", record)
    leads = {r["investor_id"]: r for r in score_records(out)}
    canary = {s["investor_id"] for s in shadow if s["decided_by"] == "challenger"}
    assert 5 < len(canary) < 35
    for s in shadow:
        decided = s["challenger_probability"] if s["investor_id"] in canary else s["champion_probability"]
        assert leads[s["investor_id"]]["probability"] == decided
        assert ("canary-" in leads[s["investor_id"]]["model"]["model_version"]) == (
            s["investor_id"] in canary)
    # Without the challenger, the champion's leads are those of the non-canary investors.
    plain = TenantScorer("acme", settings(registry))
    for record in score(plain, vectors):
        if record["investor_id"] not in canary:
            assert record == leads[record["investor_id"]]


def score_records(out: list) -> list[dict]:
    return [o.record for o in out if type(o).__name__ == "Scored"]


def retrain(scorer: TenantScorer) -> list:
    """A drift detection now; the retraining challenger starts at the next scoring step."""
    scorer.governor.drift_detected("PSI", "score", WHEN)
    return alerts(scorer.process([separable(999, random.Random(5))[0]], NOW))


def test_a_pin_also_stops_drift_retraining_until_unpinned(registry: dict) -> None:
    scorer = TenantScorer("acme", settings(registry))
    assert [a["kind"] for a in retrain(scorer)] == ["retraining_triggered"]
    scorer.process([command("pin", registry["good"], "c-1")], NOW)
    assert scorer.governor.challenger is None  # dropped: it could have been promoted
    assert retrain(scorer) == [] and scorer.governor.challenger is None
    scorer.process([command("unpin", None, "c-2")], NOW)
    assert [a["kind"] for a in retrain(scorer)] == ["retraining_triggered"]


def test_the_retraining_challenger_scores_in_shadow_and_decides_nothing(registry: dict) -> None:
    # No look due within this test: the challenger stays in shadow.
    scorer = TenantScorer("acme", settings(registry, retraining={"look_labels": 1000}))
    feed(scorer, 100, seed=11)
    plain = pickle.loads(pickle.dumps(scorer))
    assert [a["kind"] for a in retrain(scorer)] == ["retraining_triggered"]
    plain.process([separable(999, random.Random(5))[0]], NOW)  # the vector retrain() scored
    feed(scorer, 50, seed=12, start=100)
    feed(plain, 50, seed=12, start=100)
    rng = random.Random(13)
    vectors = [separable(i, rng)[0] for i in range(20)]
    out = scorer.process(vectors, NOW)
    shadow = [o.record for o in out if isinstance(o, Emitted) and o.kind == "shadow"]
    assert {s["challenger_version"] for s in shadow} == {"online-g1"}
    assert {s["decided_by"] for s in shadow} == {"champion"} and len(shadow) == 20
    assert score_records(out) == score_records(plain.process(vectors, NOW))


def test_a_command_before_the_first_score_promotes_the_configured_challenger(registry: dict) -> None:
    scorer = TenantScorer("acme", settings(registry, "good"))
    out = scorer.process([command("promote", registry["good"], "c-1")], NOW)
    assert [a["kind"] for a in alerts(out)] == ["model_promoted"]
    rng = random.Random(14)
    out = feed(scorer, 5, seed=14) + scorer.process([separable(i, rng)[0] for i in range(5)], NOW)
    assert alerts(out) == [] and scorer.origin == registry["good"]
    assert not [o for o in out if isinstance(o, Emitted) and o.kind == "shadow"]
