"""``esg-leads explain``: one lead's story from a run's outputs, and the lineage it shows."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from esg_leads.connectors.parquet_sink import read_records
from esg_leads.connectors.recording import RecordingReader

from esg_leads.cli.main import main
from esg_leads.flows.config import load_settings
from esg_leads.flows.explain import explain
from esg_leads.operators.features import FEATURE_SET_VERSION
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec


def test_explain_tells_the_story_of_a_lead(tmp_path: Path) -> None:
    world, run = tmp_path / "world", tmp_path / "run"
    generate(WorldSpec(investors=300, properties=60, days=8, seed=2, profile_answers=False), world)
    replay(world, run, load_settings(world / "config.toml"))
    investor = pq.read_table(run / "leads.parquet").column("investor_id")[0].as_py()
    buffer = io.StringIO()
    assert explain(run, investor, recording=world, console=Console(file=buffer, width=160)) == 0
    text = buffer.getvalue()
    for part in ("Input events", "Scores", "Latest features", "Agent decisions", "compliance",
                 "State history", "action=", investor):
        assert part in text, part
    assert "@example.org" not in text
    # A run's outputs without that lead: exit 1, not a usage error.
    assert explain(run, "inv-nobody", console=Console(file=io.StringIO())) == 1


def test_explain_unknown_lead_and_missing_outputs(tmp_path: Path, capsys) -> None:
    assert main(["explain", "inv-x", "--out", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    # A directory without a run's outputs is a mistake, not a run without that lead
    # (issue 20): one line, exit 2.
    assert main(["explain", "inv-x", "--out", str(tmp_path / "empty")]) == 2
    assert "holds no run outputs" in capsys.readouterr().err


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("lineage")
    world, run = out / "world", out / "run"
    generate(WorldSpec(tenants=2, investors=400, properties=60, days=12, seed=4, profile_answers=False), world)
    replay(world, run, load_settings(world / "config.toml", environ={}, overrides={
        "lifecycle": {"uncertain_review_after": 0}}))
    return world, run


def _records(path: Path) -> list[dict]:
    return read_records(path)


def test_handoff_lineage_resolves_to_recorded_offsets(replayed: tuple[Path, Path]) -> None:
    """Issue 19.6: every handoff names the model and feature set that decided and the
    input events behind it, property signals included, each at a recorded offset that
    holds that very event."""
    world, run = replayed
    recorded = {(m.topic, m.partition, m.offset): orjson.loads(m.value)
                for m in RecordingReader(world) if m.value is not None}
    handoffs = _records(run / "handoff.parquet")
    assert handoffs
    topics = set()
    for handoff in handoffs:
        assert handoff["model_version"].startswith(f"bagged-logreg:{handoff['tenant']}:")
        assert handoff["feature_set_version"] == FEATURE_SET_VERSION
        assert handoff["lineage"]
        for ref in handoff["lineage"]:
            event = recorded[(ref["topic"], ref["partition"], ref["offset"])]
            assert event["event_id"] == ref["event_id"] and event["tenant"] == handoff["tenant"]
            if ref["topic"] == "investor.engagements":
                assert event["investor_id"] == handoff["investor_id"]
            topics.add(ref["topic"])
    assert {"investor.engagements", "esg.property-signals"} <= topics
    # A property signal in a lineage is about a property the investor engaged with.
    for handoff in handoffs:
        engaged = {e.get("property_id") for e in recorded.values()
                   if e.get("investor_id") == handoff["investor_id"]}
        assert {recorded[(r["topic"], r["partition"], r["offset"])]["property_id"]
                for r in handoff["lineage"] if r["topic"] == "esg.property-signals"} <= engaged


def test_scored_leads_and_cases_carry_versions_and_bounded_lineage(
        replayed: tuple[Path, Path]) -> None:
    _, run = replayed
    leads, cases = _records(run / "leads.parquet"), _records(run / "review.parquet")
    assert leads and cases
    for case in cases:
        assert case["feature_set_version"] == FEATURE_SET_VERSION and case["model_version"]
    assert all(len(r["lineage"]) <= 64 for r in (*leads, *cases))
    # (Lineage beyond the bound, digested: tests/operators/test_lineage.py.)


def test_explain_shows_a_handoffs_lineage_back_to_offsets(replayed: tuple[Path, Path]) -> None:
    world, run = replayed
    handoff = _records(run / "handoff.parquet")[0]
    buffer = io.StringIO()
    assert explain(run, handoff["investor_id"], recording=world,
                   console=Console(file=buffer, width=200)) == 0
    text = buffer.getvalue()
    assert f"Lineage of {handoff['idempotency_key']}" in text
    assert handoff["feature_set_version"] in text and "esg.property-signals/" in text
    ref = handoff["lineage"][0]
    assert f"{ref['topic']}/{ref['partition']}/{ref['offset']}" in text
    assert "NO:" not in text


def test_explain_names_a_stale_source_and_since_when(tmp_path: Path) -> None:
    """Issue 18: a lead scored while a source was stale says so in its story."""
    from datetime import datetime, timezone

    from esg_leads.connectors.parquet_sink import to_table
    from esg_leads.operators.scoring import TenantScorer
    from esg_leads.schemas.settings import Settings
    from tests.operators.test_degradation import _cold_vector, _status

    now = datetime(2026, 3, 20, tzinfo=timezone.utc)
    (lead,), _ = TenantScorer("acme", Settings()).score_many([_cold_vector(_status())], now)
    pq.write_table(to_table("leads", [lead.record]), tmp_path / "leads.parquet")
    buffer = io.StringIO()
    assert explain(tmp_path, "inv-0", console=Console(file=buffer, width=300)) == 0
    assert "stale epc-register since 2026-03-01T10:00 (trust 50%)" in buffer.getvalue()


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replay where two tenants both have ``inv-1``, each scored, reviewed and
    handed off (tests/two_tenants.py)."""
    from tests.two_tenants import replayed

    return replayed(tmp_path_factory.mktemp("two-tenants"), erase=False)


def _story(run: Path, tenant: str | None) -> str:
    buffer = io.StringIO()
    assert explain(run, "inv-1", tenant=tenant, console=Console(file=buffer, width=300)) == 0
    return buffer.getvalue()


def test_an_investor_id_of_two_tenants_is_refused_with_the_tenants(
        two_tenants: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id alone that two tenants' leads have is never one story made of both."""
    from esg_leads.flows.explain import AmbiguousLead
    from tests.two_tenants import TENANT_A, TENANT_B

    buffer = io.StringIO()
    with pytest.raises(AmbiguousLead) as refused:
        explain(two_tenants, "inv-1", console=Console(file=buffer))
    assert refused.value.tenants == [TENANT_A, TENANT_B] and buffer.getvalue() == ""
    capsys.readouterr()
    assert main(["explain", "inv-1", "--out", str(two_tenants)]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert ": error: " in line and f"({TENANT_A}, {TENANT_B})" in line
    assert f"{TENANT_A}/inv-1" in line and captured.out == ""


def test_a_tenants_lead_is_its_story_only(two_tenants: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.two_tenants import TENANT_A, TENANT_B

    records = {kind: read_records(two_tenants / f"{kind}.parquet",
                                  filters=[("investor_id", "=", "inv-1")])
               for kind in ("leads", "review", "handoff")}
    for tenant, other in ((TENANT_A, TENANT_B), (TENANT_B, TENANT_A)):
        text = _story(two_tenants, tenant)
        mine = {kind: [r for r in rows if r["tenant"] == tenant] for kind, rows in records.items()}
        theirs = [r for rows in records.values() for r in rows if r["tenant"] == other]
        assert all(mine.values()) and theirs
        assert (f"tenant {tenant}, {len(mine['leads'])} published scores, "
                f"{len(mine['review'])} review cases, {len(mine['handoff'])} handoffs") in text
        assert other not in text  # no lead, case, handoff or audit row of the other tenant
        for handoff in mine["handoff"]:
            assert f"handoff {handoff['idempotency_key']}" in text
    # The command line: TENANT/INVESTOR_ID or --tenant, the same story.
    capsys.readouterr()
    assert main(["explain", f"{TENANT_B}/inv-1", "--out", str(two_tenants)]) == 0
    by_key = capsys.readouterr().out
    assert main(["explain", "inv-1", "--tenant", TENANT_B, "--out", str(two_tenants)]) == 0
    assert capsys.readouterr().out == by_key and f"tenant {TENANT_B}," in by_key
    assert main(["explain", f"{TENANT_A}/inv-1", "--tenant", TENANT_B,
                 "--out", str(two_tenants)]) == 2
    assert f"is not of --tenant {TENANT_B}" in capsys.readouterr().err
    # A tenant without that investor: no lead (exit 1), never the other tenant's.
    buffer = io.StringIO()
    assert explain(two_tenants, "inv-1", tenant="gamma-fund", console=Console(file=buffer)) == 1
    assert "no lead 'gamma-fund/inv-1'" in buffer.getvalue()
