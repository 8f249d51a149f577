"""End to end: a generated world with ``drift_at`` raises a drift alert soon after the
onset and none before it (issue 18: within 2 simulated days), and the alert starts a
retraining challenger."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from esg_leads.flows.config import load_settings
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import DAY_S, WorldSpec

SPEC = WorldSpec(tenants=1, investors=600, properties=100, days=11, seed=7, drift_at=9.0,
                 reviewers=False, profile_answers=False)


def test_drift_is_detected_within_two_days_and_not_before(tmp_path: Path) -> None:
    generate(SPEC, tmp_path / "world")
    replay(tmp_path / "world", tmp_path / "run", load_settings(tmp_path / "world" / "config.toml"))
    onset = SPEC.start.timestamp() + SPEC.drift_at * DAY_S
    alerts = [a for a in pq.read_table(tmp_path / "run" / "alerts.parquet").to_pylist()
              if a["kind"] == "drift_detected"]
    times = sorted(a["event_time"].timestamp() for a in alerts)
    assert times, "no drift alert"
    assert times[0] >= onset, "a drift alert before the onset"
    assert times[0] - onset <= 2 * DAY_S
    first = min(alerts, key=lambda a: a["event_time"])
    assert first["detector"] == "PSI" and len(first["subject"].split(",")) >= 3
    # ... and starts a retraining challenger at the same instant, on the same evidence.
    retrains = [a for a in pq.read_table(tmp_path / "run" / "alerts.parquet").to_pylist()
                if a["kind"] == "retraining_triggered"]
    assert retrains and min(a["event_time"] for a in retrains) == first["event_time"]
    assert any(a["subject"] == first["subject"] for a in retrains)
