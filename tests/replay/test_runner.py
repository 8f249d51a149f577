"""``esg-leads replay``: outputs, reconciliation, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from flows.config import load_settings
from replay.generator import generate
from replay.runner import replay
from replay.simulate import WorldSpec
from schemas.codec import validate_record

SPEC = WorldSpec(tenants=2, investors=600, properties=120, days=12, seed=4, malformed_rate=0.02)
PROCESSING_TIME_FIELDS = {"processed_at"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(SPEC, out)
    return out


def records(path: Path) -> list[dict]:
    """Output records without their processing-time fields."""
    rows = pq.read_table(path, columns=["record"]).column("record").to_pylist()
    out = []
    for row in rows:
        record = orjson.loads(row)
        for field in PROCESSING_TIME_FIELDS:
            record.pop(field, None)
        out.append(record)
    return out


def test_outputs_validate_and_reconcile(world: Path, tmp_path: Path) -> None:
    summary = replay(world, tmp_path, load_settings(world / "config.toml"))
    assert summary["reconciled"]
    for topic, row in summary["topics"].items():
        assert row["in"] == row["used"] + row["dead_lettered"], topic
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["outputs"] == summary["outputs"]
    assert summary["outputs"]["leads"] > 500
    assert summary["dlq_by_reason"].keys() >= {"decode_error", "schema_error", "duplicate",
                                               "unknown_tenant", "late"}
    assert summary["events_per_second"] > 0 and summary["wall_seconds"] > 0
    for kind, topic in (("leads", "leads.scored"), ("dlq", "leads.dlq"), ("alerts", "ops.alerts")):
        rows = pq.read_table(tmp_path / f"{kind}.parquet").column("record").to_pylist()
        assert len(rows) == summary["outputs"][kind]
        for row in rows[:300]:
            validate_record(topic, orjson.loads(row))


def test_two_replays_give_identical_outputs(world: Path, tmp_path: Path) -> None:
    settings = load_settings(world / "config.toml")
    replay(world, tmp_path / "a", settings)
    replay(world, tmp_path / "b", settings)
    for kind in ("leads", "dlq", "alerts"):
        a, b = records(tmp_path / "a" / f"{kind}.parquet"), records(tmp_path / "b" / f"{kind}.parquet")
        assert a == b, kind


def test_a_different_model_setting_changes_the_scores(world: Path, tmp_path: Path) -> None:
    base = load_settings(world / "config.toml")
    other = load_settings(world / "config.toml", overrides={"scoring": {"learning_rate": 0.05}})
    replay(world, tmp_path / "a", base)
    replay(world, tmp_path / "b", other)
    a, b = records(tmp_path / "a" / "leads.parquet"), records(tmp_path / "b" / "leads.parquet")
    assert [r["idempotency_key"] for r in a] == [r["idempotency_key"] for r in b]
    assert any(x["probability"] != y["probability"] for x, y in zip(a, b, strict=True))


def test_no_personal_contact_data_in_any_output(world: Path, tmp_path: Path) -> None:
    replay(world, tmp_path, load_settings(world / "config.toml"))
    for kind in ("leads", "alerts"):
        blob = (tmp_path / f"{kind}.parquet").read_bytes()
        text = pq.read_table(tmp_path / f"{kind}.parquet").to_pylist().__repr__()
        assert "@example.org" not in text and b"@example.org" not in blob
