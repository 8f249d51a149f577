"""Investors without a profile answer the flow's info request; the flow then scores them."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from esg_leads.connectors.recording import RecordingReader
from esg_leads.replay.generator import generate
from esg_leads.replay.profile_answers import (
    MEDIAN_DELAY_HOURS,
    InfoRequest,
    answer,
    info_requests,
)
from esg_leads.replay.simulate import WorldSpec

#: Reviewers off: the rounds here are the answers' alone, and the world without answers
#: needs no replay at all (it is the first world the generator writes).
SPEC = WorldSpec(tenants=2, investors=800, properties=120, days=14, seed=5, reviewers=False)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("profile-answers")
    # The generator's last round is the replay of the world as written: kept, not redone.
    report = generate(SPEC, base / "world", replayed=base / "run")
    generate(SPEC, base / "again")
    generate(dataclasses.replace(SPEC, profile_answers=False), base / "off")
    return {"base": base, "report": report}


def _messages(world: Path) -> list:
    return list(RecordingReader(world))


def _answers(world: Path) -> dict[str, tuple[datetime, float]]:
    """investor -> (answer event time, ingest s) of the answers in ``world``."""
    found = {}
    for m in _messages(world):
        if m.topic == "investor.profiles" and m.value.startswith(b"{") and b'"pa:' in m.value:
            payload = orjson.loads(m.value)
            if payload.get("event_id", "").startswith("pa:"):
                found[payload["investor_id"]] = (
                    datetime.fromisoformat(payload["event_time"]), m.timestamp_ms / 1000)
    return found


def _leads(run: Path, investors: set[str]) -> dict[str, list[dict]]:
    table = pq.read_table(run / "leads.parquet", columns=[
        "investor_id", "event_time", "state", "record.compliance.pack", "record.features",
        "record.outreach_plan.steps"])
    by_investor: dict[str, list[dict]] = defaultdict(list)
    for row in table.to_pylist():
        if row["investor_id"] in investors:
            by_investor[row["investor_id"]].append(row)
    for rows in by_investor.values():
        rows.sort(key=lambda r: r["event_time"])
    return by_investor


def test_asked_investors_answer_and_leave_needs_info_scored_with_their_profile(worlds) -> None:
    base, report = worlds["base"], worlds["report"]
    answers = _answers(base / "world")
    assert len(answers) >= 5
    leads = _leads(base / "run", set(answers))
    rescored = 0
    for investor, (answered_at, _) in answers.items():
        rows = leads[investor]
        # The flow asked first: a needs_info record whose plan sends the info request.
        asks = [step["at"] for r in rows if r["state"] == "needs_info"
                for step in r["steps"] or () if step["trigger"] == "lead needs info"]
        assert asks and min(asks) < answered_at, investor
        before = [r for r in rows if r["event_time"] < answered_at]
        assert all(dict(r["features"])["profile_completeness"] == 0 and r["pack"] is None
                   for r in before)
        after = [r for r in rows if r["event_time"] >= answered_at]
        # Scored again with the profile: its facts in the features, a rule pack decided
        # the channels, and the lead is out of needs_info for good.
        scored = [r for r in after if r["state"] != "needs_info" and r["pack"] is not None
                  and dict(r["features"])["profile_completeness"] > 0]
        rescored += bool(scored)
        assert rows[-1]["state"] != "needs_info", investor
    # Every answer is acted on (none of these leads was closed before its answer).
    assert rescored == len(answers)
    figures = report.profile_answers
    assert (figures.answered, figures.rescored) == (len(answers), rescored)
    assert figures.asked > figures.answered and 0 < figures.decided <= figures.rescored
    assert report.settled is True
    meta = json.loads((base / "world" / "world.json").read_text())
    assert meta["profile_answers"] == figures.as_dict() and meta["settled"] is True
    # The first replay found the requests; the last changed nothing.
    assert report.round_changes[0]["answers"] > 0
    assert report.round_changes[-1] == {"decisions": 0, "answers": 0}
    assert meta["round_changes"] == list(report.round_changes)


def test_only_investors_without_a_profile_answer_and_their_answer_is_ingested_soon(worlds) -> None:
    world = worlds["base"] / "world"
    answers = _answers(world)
    others = {orjson.loads(m.value)["investor_id"] for m in _messages(world)
              if m.topic == "investor.profiles" and m.value.startswith(b"{")
              and b'"pa:' not in m.value and b'"investor_id"' in m.value}
    assert not others & set(answers)
    for answered_at, ingest_s in answers.values():
        assert 0 <= ingest_s - answered_at.timestamp() < 3600


def test_same_arguments_same_bytes(worlds) -> None:
    base = worlds["base"]
    names = sorted(p.name for p in (base / "world").iterdir())
    assert names == sorted(p.name for p in (base / "again").iterdir())
    for name in names:
        assert (base / "world" / name).read_bytes() == (base / "again" / name).read_bytes(), name


def test_answers_leave_every_other_message_of_the_world_as_it_was(worlds) -> None:
    """The world with answers is the world without them plus the answers: nothing else
    moves (no draw of the world's random streams, no other event id)."""
    base = worlds["base"]
    answered = set(_answers(base / "world"))

    def rows(world: Path, skip_answers: bool) -> list[tuple]:
        return [(m.topic, m.partition, m.timestamp_ms, m.key, m.value) for m in _messages(world)
                if not (skip_answers and m.topic == "investor.profiles"
                        and m.key.decode() in answered and b'"pa:' in m.value)]

    assert rows(base / "world", True) == rows(base / "off", False)
    assert len(rows(base / "world", False)) == len(rows(base / "off", False)) + len(answered)
    for name in ("truth.parquet", "config.toml"):
        assert (base / "world" / name).read_bytes() == (base / "off" / name).read_bytes()
    off = json.loads((base / "off" / "world.json").read_text())
    assert "profile_answers" not in off and "profile_answers" not in off["spec"]


# ---------------------------------------------------------------- the answer model

def test_answers_follow_intent_and_come_hours_to_days_later() -> None:
    requests = [InfoRequest("t", f"inv-{i}", 0.0) for i in range(4000)]
    intents = {f"inv-{i}": (0.05 if i % 2 else 0.8) for i in range(4000)}
    got = answer(requests, intents, seed=3, end_s=1e12)
    keen = sum(1 for a in got if intents[a.investor_id] == 0.8) / 2000
    idle = sum(1 for a in got if intents[a.investor_id] == 0.05) / 2000
    assert 0.70 < keen < 0.82 and 0.19 < idle < 0.29  # 0.76 and 0.235 expected
    hours = sorted(a.answer_s / 3600 for a in got)
    assert 0.8 * MEDIAN_DELAY_HOURS < statistics.median(hours) < 1.2 * MEDIAN_DELAY_HOURS
    assert hours[0] < 6 and hours[-1] > 72
    # An answer that would come after the world ends is never sent.
    assert all(a.answer_s < 30 * 3600 for a in answer(requests, intents, seed=3, end_s=30 * 3600))
    # Investors with a profile (not in the map) do not answer.
    assert answer(requests, {}, seed=3, end_s=1e12) == []


def test_info_requests_are_what_the_flow_published(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)

    def record(investor: str, hours: float, state: str, steps: list[dict]) -> dict:
        return {"tenant": "acme", "investor_id": investor, "state": state,
                "event_time": t0 + timedelta(hours=hours),
                "record": {"outreach_plan": {"steps": steps}}}

    def ask(at_hours: float) -> dict:
        return {"channel": "email", "trigger": "lead needs info",
                "at": t0 + timedelta(hours=at_hours)}

    email = {"channel": "email", "trigger": "plan approved", "at": t0}
    rows = [
        record("inv-a", 0, "needs_info", [ask(2)]),  # sent at its instant...
        record("inv-a", 30, "needs_info", [ask(31)]),  # ...a later request: the first counts
        record("inv-b", 1, "needs_info", [ask(1)]),  # published later than its instant
        record("inv-c", 0, "needs_info", []),  # e-mail objected to: nobody is asked
        record("inv-d", 0, "planned", [email]),  # not an info request
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "leads.parquet")
    # The flow published inv-b's record 5 h after its event time (its tenant's clock).
    late = {(t0 + timedelta(hours=1)).timestamp(): 5 * 3600.0}
    requests = info_requests(tmp_path / "leads.parquet",
                             lambda tenant, event_s: event_s + late.get(event_s, 0.0))
    assert [(r.investor_id, (r.asked_s - t0.timestamp()) / 3600) for r in requests] == [
        ("inv-a", 2.0), ("inv-b", 6.0)]
