"""The world's reviewers: they decide the cases the flow opens, signed, within capacity."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from esg_leads.connectors.recording import RecordingReader
from esg_leads.flows.config import load_settings
from esg_leads.operators import review_auth
from esg_leads.replay.generator import generate
from esg_leads.replay.reviewers import DAY_S, WORK_END_H, WORK_START_H, Case, ReviewerTeam, decide
from esg_leads.replay.simulate import WorldSpec
from esg_leads.replay.world import dev_review_signing_key
from esg_leads.schemas.codec import decode_event

SPEC = WorldSpec(tenants=3, investors=600, properties=80, days=20, seed=3, profile_answers=False)
#: Review cases per 1k investors of the same world before needs_info and the wait for
#: evidence (measured on main at 33a43cf: 108 cases, 542 investors scored); goal: <= 25 %.
CASES_PER_1K_BEFORE = 199.3


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each world's replay with its own settings: the generator's last round (it settles
    the reviewers' decisions by replaying the world; the last round is of the world as
    written), not a replay of its own."""
    summaries = {}
    for reviewers in (True, False):
        base = tmp_path_factory.mktemp(f"reviewers-{reviewers}")
        generate(dataclasses.replace(SPEC, reviewers=reviewers), base / "world",
                 replayed=base / "run")
        summaries[reviewers] = json.loads((base / "run" / "summary.json").read_text())
        summaries[reviewers]["world"] = base / "world"
    return summaries


def test_with_reviewers_the_loop_closes(runs) -> None:
    kpis = runs[True]["autonomy"]
    assert kpis["autonomy_rate"] >= 0.9
    assert kpis["review_cases_per_1k_investors"] <= 0.25 * CASES_PER_1K_BEFORE
    assert kpis["review_queue_age_days"] <= 3.0  # every case older than 3 days is decided
    decisions = runs[True]["topics"]["lead.review-decisions"]
    assert decisions["in"] > 0 and decisions["reconciled"]
    # Decisions for cases closed before the reviewer got to them (the CRM disqualified
    # the lead, its last channel went) are allowed, but must stay a small share.
    assert decisions["dlq_by_reason"].get("unknown_case", 0) <= 0.15 * decisions["in"]
    assert set(decisions["dlq_by_reason"]) <= {"unknown_case", "duplicate"}
    assert kpis["review_decisions"] == decisions["used"]


def test_without_reviewers_cases_wait(runs) -> None:
    """The same world with --reviewers off: the cases are opened and never decided."""
    kpis = runs[False]["autonomy"]
    assert "lead.review-decisions" not in runs[False]["topics"]
    assert kpis["review_decisions"] == 0 and kpis["open_review_cases"] > 0
    assert kpis["review_queue_age_days"] > 3.0


def test_the_world_records_its_decisions(runs) -> None:
    world: Path = runs[True]["world"]
    meta = json.loads((world / "world.json").read_text())
    assert meta["review_decisions"] == meta["per_topic"]["lead.review-decisions"] > 0
    assert 1 <= meta["review_rounds"] <= 4
    seen = 0
    for message in RecordingReader(world):
        if message.topic != "lead.review-decisions":
            continue
        decision = decode_event(message.topic, message.value)
        key = dev_review_signing_key(SPEC.seed, decision.tenant)
        assert review_auth.refusal(decision, load_settings(
            config_file=world / "config.toml").tenants[decision.tenant]) is None
        assert review_auth.verify(key, decision.signature, **review_auth.decision_fields(decision))
        seen += 1
    assert seen == meta["review_decisions"]


# ------------------------------------------------------------------- the team model

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
TEAM = {"acme": ReviewerTeam("acme", capacity_per_day=3, median_delay_hours=4, noise=0.1)}


def test_capacity_working_hours_and_order() -> None:
    cases = [Case(f"case:inv-{i}:1", "acme", f"inv-{i}", T0 + 9 * 3600 + i) for i in range(10)]
    decisions = decide(cases, TEAM, {}, seed=1, end_s=T0 + 30 * DAY_S)
    assert len(decisions) == 10
    days = Counter(int(orjson.loads(orjson.dumps(d["payload"]))["event_time"][8:10])
                   for d in decisions)
    assert max(days.values()) <= 3
    for d in decisions:
        hour = d["payload"]["event_time"].hour + d["payload"]["event_time"].minute / 60
        assert WORK_START_H <= hour < WORK_END_H
        assert d["payload"]["event_time"].timestamp() >= T0 + 9 * 3600
    assert decide(cases, TEAM, {}, seed=1, end_s=T0 + 30 * DAY_S) == decisions


def test_verdicts_follow_the_truth_and_late_cases_stay_open() -> None:
    cases = [Case(f"case:inv-{i}:1", "acme", f"inv-{i}", T0 + i * 3600) for i in range(200)]
    team = {"acme": ReviewerTeam("acme", capacity_per_day=1000, median_delay_hours=4, noise=0.1)}
    likely = decide(cases, team, {f"inv-{i}": 0.8 for i in range(200)}, 1, T0 + 60 * DAY_S)
    unlikely = decide(cases, team, {f"inv-{i}": 0.05 for i in range(200)}, 1, T0 + 60 * DAY_S)
    approve = [sum(d["payload"]["verdict"] == "approve" for d in ds) for ds in (likely, unlikely)]
    assert approve[0] > 180 and approve[1] < 20
    assert decide(cases, team, {}, 1, end_s=T0 + 2 * DAY_S) != []
    assert len(decide(cases, team, {}, 1, end_s=T0 + 2 * DAY_S)) < 60


def test_verdicts_do_not_depend_on_the_form_of_the_case_id() -> None:
    """Case ids name the tenant since stop 31 (``case:<tenant>/<investor>:<n>``). The
    simulated reviewers seed, order and name their decisions by ``case:<investor>:<n>``,
    the old id's form, so a world generated before gets exactly the same verdicts: on
    a4481ae, seeded by the id itself, the new form moved them (one handoff of the golden
    world, every review digest). Only the case id (and so the signature) differs."""
    team = {t: ReviewerTeam(t, capacity_per_day=4, median_delay_hours=5, noise=0.15)
            for t in ("acme", "beta")}
    truth = {f"inv-{i}": i / 40 for i in range(40)}

    def cases(new: bool) -> list[Case]:
        return [Case(f"case:{t}/inv-{i}:{n}" if new else f"case:inv-{i}:{n}", t, f"inv-{i}",
                     T0 + (i % 7) * 3600)  # ties in seen_s: the order's second key counts
                for t in ("acme", "beta") for i in range(40) for n in (1, 2) if (i + n) % 3]

    old, new = (decide(cases(form), team, truth, seed=5, end_s=T0 + 40 * DAY_S)
                for form in (False, True))
    assert len(old) == len(new) > 100
    assert {d["payload"]["verdict"] for d in old} == {"approve", "reject", "needs_info"}
    for before, after in zip(old, new, strict=True):
        assert after["payload"]["case_id"] == before["payload"]["case_id"].replace(
            "case:", f"case:{after['payload']['tenant']}/")
        same = {k: v for k, v in before["payload"].items() if k not in ("case_id", "signature")}
        assert same == {k: v for k, v in after["payload"].items()
                        if k not in ("case_id", "signature")}
        assert (before["ingest_s"], before["key"]) == (after["ingest_s"], after["key"])
    # The decision's event id keeps the old form too (its order, its dedup key).
    assert old[0]["payload"]["event_id"].startswith("rd:case:inv-")
