"""The 90-day evaluation protocol and handoff precision, on a world built by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from esg_leads.replay.quality import HORIZON, evaluate_horizon, handoff_precision, horizon_label

START = datetime(2026, 1, 5, tzinfo=timezone.utc)


def day(d: float) -> datetime:
    return START + timedelta(days=d)


@pytest.fixture
def world_and_run(tmp_path: Path) -> tuple[Path, Path]:
    world, run = tmp_path / "world", tmp_path / "run"
    world.mkdir()
    run.mkdir()
    (world / "world.json").write_text(json.dumps({"spec": {"start": START.isoformat(), "days": 60}}))
    # a converts on day 50, b is turned down on day 45, c is still open at the end
    # (censored), d converted on day 30 (before the evaluated third).
    truth = [("a", day(50), True, 0.5), ("b", day(45), False, 0.2), ("c", None, None, None),
             ("d", day(30), True, 0.7)]
    pq.write_table(pa.table({
        "tenant": ["acme"] * len(truth),
        "investor_id": [t[0] for t in truth],
        "decision_at": pa.array([t[1] for t in truth], pa.timestamp("ms", tz="UTC")),
        "converted": [t[2] for t in truth],
        "p_convert": [t[3] for t in truth],
        "p_convert_pre_drift": [0.5, 0.2, 0.3, 0.7],
        "p_convert_post_drift": [0.9, 0.9, 0.9, 0.9],
    }), world / "truth.parquet")
    leads = [("a", day(10), 0.1), ("a", day(41), 0.6), ("a", day(42), 0.45), ("b", day(41), 0.25),
             ("c", day(41), 0.35), ("d", day(41), 0.9)]
    pq.write_table(pa.table({
        "tenant": ["acme"] * len(leads),
        "investor_id": [x[0] for x in leads],
        "event_time": pa.array([x[1] for x in leads], pa.timestamp("ms", tz="UTC")),
        "probability": [x[2] for x in leads],
    }), run / "leads.parquet")
    pq.write_table(pa.table({"tenant": ["acme"] * 3, "investor_id": ["a", "b", "c"]}),
                   run / "handoff.parquet")
    return world, run


def test_the_90_day_protocol_by_hand(world_and_run):
    result = evaluate_horizon(*world_and_run)
    # Labelled: a's two scores (converted 8-9 days later: positive), b's (negative).
    # ECE: bins 6, 4, 2 hold 0.6 / 1, 0.45 / 1, 0.25 / 0 -> (0.4 + 0.55 + 0.25) / 3.
    # Against the truth, c counts too: (0.1 + 0.05 + 0.05 + 0.05) / 4.
    assert result == {
        "horizon_days": 90, "from_day": 40.0, "scores_evaluated": 3, "investors_evaluated": 2,
        "skipped": {"after_decision": 1, "censored": 1}, "positive_rate": 0.6667,
        "mean_probability": 0.4333, "ece": 0.4, "oracle_ece": 0.4, "auc": 1.0,
        "oracle_auc": 1.0, "auc_ratio": 1.0, "open_scores": 4, "ece_vs_truth": 0.0625,
        "mean_true_probability": 0.375,
    }


def test_handoff_precision_by_hand(world_and_run):
    # a converted, b did not, c is undecided; 2 of the 3 decided investors converted.
    assert handoff_precision(*world_and_run) == {
        "handed_off_investors": 3, "with_known_outcome": 2, "converted": 1, "precision": 0.5,
        "base_rate": 0.6667, "lift": 0.75}


def test_another_tenants_investor_of_the_same_id_is_another_investor(world_and_run):
    """beta's ``a``, turned down, handed off too: one more investor with a known outcome,
    not a second reading of acme's ``a`` (which converted)."""
    world, run = world_and_run
    for path, extra in ((world / "truth.parquet", {"tenant": "beta", "investor_id": "a",
                                                    "decision_at": day(45), "converted": False,
                                                    "p_convert": 0.1, "p_convert_pre_drift": 0.1,
                                                    "p_convert_post_drift": 0.1}),
                        (run / "handoff.parquet", {"tenant": "beta", "investor_id": "a"})):
        table = pq.read_table(path)
        pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([extra], table.schema)]),
                       path)
    assert handoff_precision(world, run) == {
        "handed_off_investors": 4, "with_known_outcome": 3, "converted": 1,
        "precision": 0.3333, "base_rate": 0.5, "lift": 0.67}
    # acme's a keeps its own truth: the protocol's numbers do not move.
    assert evaluate_horizon(world, run)["positive_rate"] == 0.6667


@pytest.mark.parametrize(("decided", "converted", "at", "expected"), [
    (100, True, 10, True),     # exactly 90 days before the conversion: within
    (100, True, 9.99, False),  # just over 90 days before it
    (100, False, 50, False),   # turned down
    (50, True, 50, "decided"),  # at the decision: not an open lead
    (None, None, 59, None),    # the world ends first: censored
])
def test_horizon_label_at_the_edges(decided, converted, at, expected):
    truth = {"decision_at": None if decided is None else day(decided), "converted": converted}
    assert horizon_label(day(at), truth, HORIZON, day(60)) == expected


def test_a_horizon_that_passes_inside_the_world_is_a_negative():
    truth = {"decision_at": None, "converted": None}
    assert horizon_label(day(0), truth, timedelta(days=30), day(60)) is False
