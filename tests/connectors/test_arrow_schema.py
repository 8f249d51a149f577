"""connectors/arrow_schema.py: output structs follow the topic models."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors.arrow_schema import JSON_METADATA, TIMESTAMP, arrow_type
from esg_leads.connectors.parquet_merge import finalize
from esg_leads.connectors.parquet_sink import (
    COLUMNS,
    TOPICS,
    read_records,
    records_of,
    schema_of,
    to_table,
)
from esg_leads.schemas.outputs import ScoredLead
from esg_leads.schemas.topics import OUTPUT_TOPICS

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


def _leads() -> tuple[dict, dict]:
    """Two scored lead records as the flow makes them, the second with stale sources."""
    from esg_leads.operators.scoring import TenantScorer
    from esg_leads.schemas.settings import Settings
    from tests.operators.test_degradation import _cold_vector, _status

    scorer = TenantScorer("acme", Settings())
    (fresh,), _ = scorer.score_many([_cold_vector(None)], T0)
    (stale,), _ = scorer.score_many([_cold_vector(_status())._replace(investor_id="inv-2")], T0)
    return fresh.record, stale.record


def test_a_record_decoded_from_json_makes_the_table_the_flows_record_makes() -> None:
    """Issue 16: the flow's records (datetimes) go to pyarrow as they are; one decoded from
    JSON (ISO strings, nested too) is converted first; both make the same rows, and the
    flat columns are the record's fields."""
    fresh, stale = _leads()
    assert stale["explanation"]["stale_sources"]  # instants nested in a list of structs
    decoded = orjson.loads(orjson.dumps(stale))
    made = to_table("leads", [fresh, stale])
    assert made.equals(to_table("leads", [fresh, decoded]))
    assert made.schema.equals(schema_of("leads"))
    for name, _ in COLUMNS["leads"]:
        assert made.column(name).to_pylist() == [fresh[name], stale[name]], name
    back = records_of(made)[1]  # as a consumer of the topic decodes it
    assert {k: v for k, v in back.items() if k in decoded} == decoded


def _without(kind: pa.DataType, drop: dict) -> pa.DataType:
    """``kind`` without the fields ``drop`` names (nested: a dict per struct field)."""
    fields = []
    for f in kind:
        inner = drop.get(f.name)
        if inner is True:
            continue
        fields.append(f.with_type(_without(f.type, inner)) if inner else f)
    return pa.struct(fields)


def test_leads_written_before_the_alignment_and_readiness_intervals_are_upgraded(tmp_path) -> None:
    """Issue 18: ``esg_alignment.interval``, ``engagement_readiness_interval`` and the
    explanation's stale sources are optional, so a leads file an earlier version wrote (its
    struct without them) is read, upserted into the current struct, and validates."""
    from esg_leads.operators.scoring import TenantScorer
    from esg_leads.schemas.settings import Settings
    from tests.operators.test_degradation import _cold_vector, _status

    scorer = TenantScorer("acme", Settings())
    (fresh,), _ = scorer.score_many([_cold_vector(None)], T0)
    (stale,), _ = scorer.score_many([_cold_vector(_status())._replace(investor_id="inv-2")], T0)
    old_record = dict(fresh.record, esg_alignment={k: v for k, v in fresh.record["esg_alignment"].items()
                                                   if k != "interval"})
    del old_record["engagement_readiness_interval"]
    new_type = schema_of("leads").field("record").type
    old_type = _without(new_type, {"engagement_readiness_interval": True,
                                   "esg_alignment": {"interval": True},
                                   "explanation": {"stale_sources": True,
                                                   "stale_evidence_share": True}})
    table = to_table("leads", [old_record])
    index = table.schema.get_field_index("record")
    legacy = table.set_column(index, pa.field("record", old_type), pa.array(
        [{k: v for k, v in table.column("record").to_pylist()[0].items()
          if k in old_type.names}], type=old_type))
    out = tmp_path / "leads.parquet"
    pq.write_table(legacy, out)
    (old_back,) = read_records(out)
    assert "engagement_readiness_interval" not in old_back
    ScoredLead.model_validate_json(orjson.dumps(old_back))
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(to_table("leads", [stale.record]), parts / "leads-000.parquet")
    assert finalize(parts, "leads", out) == 2
    assert pq.read_schema(out).equals(schema_of("leads"))
    old_back, stale_back = sorted(read_records(out), key=lambda r: r["investor_id"])
    assert old_back["engagement_readiness_interval"] is None
    assert old_back["esg_alignment"]["interval"] is None
    assert old_back["explanation"]["stale_sources"] is None
    for record in (old_back, stale_back):
        ScoredLead.model_validate_json(orjson.dumps(record))  # as a consumer decodes it
    assert stale_back["esg_alignment"]["interval"] == stale.record["esg_alignment"]["interval"]
    (source,) = stale_back["explanation"]["stale_sources"]
    assert source["source"] == "epc-register" and source["trust"] == 0.5
    assert datetime.fromisoformat(source["stale_since"]) == \
        stale.record["explanation"]["stale_sources"][0]["stale_since"]
