"""The ``offsets_reset`` alert: what an operator hears when a stored position was lost."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors.parquet_sink import to_table
from esg_leads.operators.ops_alerts import offsets_reset_alert
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.outputs import AlertKind
from esg_leads.schemas.records import OffsetsReset

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
offsets = st.integers(min_value=0, max_value=2**62)


@given(topic=st.sampled_from(["investor.engagements", "crm.outcomes", "esg.property-signals"]),
       partition=st.integers(0, 10_000), old=offsets, low=offsets, span=offsets,
       detected_ms=st.integers(946_684_800_000, 4_102_444_799_000), detail=st.text(max_size=800))
def test_every_reset_makes_a_valid_alert_keyed_by_the_lost_position(
        topic: str, partition: int, old: int, low: int, span: int, detected_ms: int,
        detail: str) -> None:
    notice = OffsetsReset(topic, partition, old, low, low, low + span, detected_ms, detail)
    alert = offsets_reset_alert(notice, NOW)
    model = validate_record("ops.alerts", alert)  # the published contract, as JSON
    assert model.kind is AlertKind.OFFSETS_RESET and model.tenant is None
    assert model.subject == f"{topic}:{partition}"
    assert alert["details"]["old_offset"] == old and alert["details"]["new_offset"] == low
    assert alert["details"]["skipped"] == max(0, low - old)
    # A resume that sees the same loss again, later, upserts onto the same alert.
    again = offsets_reset_alert(notice._replace(detected_at_ms=detected_ms + 1), NOW)
    assert again["idempotency_key"] == alert["idempotency_key"]
    other = offsets_reset_alert(notice._replace(partition=partition + 1), NOW)
    assert other["idempotency_key"] != alert["idempotency_key"]


def test_an_alert_without_tenant_fits_the_replay_alerts_file() -> None:
    notice = OffsetsReset("crm.outcomes", 0, 9, 0, 0, 3, 1_900_000_000_000, "lost")
    table = to_table("alerts", [offsets_reset_alert(notice, NOW)])
    assert table.column("tenant").to_pylist() == [None]
    assert table.column("kind").to_pylist() == ["offsets_reset"]
