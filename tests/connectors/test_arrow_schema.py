"""connectors/arrow_schema.py: output structs follow the topic models."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.arrow_schema import JSON_METADATA, TIMESTAMP, arrow_type
from connectors.parquet_merge import finalize
from connectors.parquet_sink import TOPICS, read_records, records_of, schema_of, to_table
from schemas.outputs import ScoredLead
from schemas.topics import OUTPUT_TOPICS

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


def alert(i: int, details: dict) -> dict:
    return {"schema_version": 1, "idempotency_key": f"alert:{i}", "tenant": "acme",
            "kind": "drift_detected", "detector": "adwin", "subject": "acme/global",
            "event_time": T0 + timedelta(seconds=i), "processed_at": T0, "details": details}


@pytest.mark.parametrize("kind", sorted(TOPICS))
def test_each_output_record_is_a_struct_of_its_topic_models_fields(kind: str) -> None:
    model = OUTPUT_TOPICS[TOPICS[kind]].model
    record = schema_of(kind).field("record").type
    assert pa.types.is_struct(record)
    assert [f.name for f in record] == list(model.model_fields)
    for name in ("event_time", "processed_at", "timestamp"):
        if name in model.model_fields:
            assert record.field(name).type == TIMESTAMP, name


def test_a_field_added_to_a_model_follows_into_the_struct() -> None:
    class Extended(ScoredLead):
        lineage_hash: str | None = None
        as_of: datetime | None = None

    record = arrow_type(Extended)
    assert record.field("lineage_hash").type == pa.string()
    assert record.field("as_of").type == TIMESTAMP


@given(details=st.dictionaries(st.text(max_size=12), st.floats(allow_nan=False,
                                                                 allow_infinity=False)
                               | st.text(max_size=12), max_size=4))
def test_a_union_field_keeps_its_values_as_json(details: dict) -> None:
    field = schema_of("alerts").field("record").type.field("details")
    assert field.type == pa.string() and field.metadata == JSON_METADATA
    back = records_of(to_table("alerts", [alert(1, details)]))[0]
    assert back["details"] == orjson.loads(orjson.dumps(details))
    assert back["event_time"] == "2026-03-01T09:30:01+00:00"  # as the flow's encoder writes it


def test_an_offset_timestamp_is_stored_as_its_utc_instant() -> None:
    record = alert(0, {})
    record["event_time"] = "2026-03-01T10:30:00+01:00"  # a record decoded from JSON
    table = to_table("alerts", [record])
    assert table.column("record").combine_chunks().field("event_time")[0].as_py() == T0
    assert records_of(table)[0]["event_time"] == "2026-03-01T09:30:00+00:00"


def test_an_output_written_with_json_records_is_upgraded_by_an_upsert(tmp_path) -> None:
    """Replaying into a directory an earlier version wrote (the record as JSON text)."""
    old = to_table("alerts", [alert(1, {"p": 0.5})])
    legacy = old.set_column(old.schema.get_field_index("record"), "record",
                            pa.array([orjson.dumps(r).decode() for r in records_of(old)]))
    out = tmp_path / "alerts.parquet"
    pq.write_table(legacy, out)
    assert read_records(out)[0]["details"] == {"p": 0.5}  # readers take either form
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(to_table("alerts", [alert(1, {"p": 0.5}), alert(2, {"n": "x"})]),
                   parts / "alerts-000.parquet")
    assert finalize(parts, "alerts", out) == 2  # alert:1 once: upserted by key
    assert pq.read_schema(out).equals(schema_of("alerts"))
    assert [r["idempotency_key"] for r in read_records(out)] == ["alert:1", "alert:2"]
