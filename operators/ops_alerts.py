"""Alerts about the deployment rather than one tenant: what an operator must hear of.

The Kafka source reports that it had to restart a partition away from its stored
position (:class:`~schemas.records.OffsetsReset`); this is the rule that turns the
report into an ``ops.alerts`` record (:class:`schemas.outputs.Alert`, ``tenant``
null: a partition carries every tenant's events).

The idempotency key names the partition and the lost position, so a resume that sees
the same loss again (the snapshot before the reset was the last one written) upserts
onto the same alert.

>>> from esg_leads.schemas.records import OffsetsReset
>>> notice = OffsetsReset("investor.engagements", 2, 512, 0, 0, 40, 1_767_225_600_000,
...                       "stored position not on the broker (log 0..40)")
>>> alert = offsets_reset_alert(notice, datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc))
>>> alert["idempotency_key"], alert["tenant"], alert["subject"]
('alert:offsets_reset:investor.engagements:2:512', None, 'investor.engagements:2')
>>> alert["details"]["old_offset"], alert["details"]["new_offset"], alert["event_time"].isoformat()
(512, 0, '2026-01-01T00:00:00+00:00')
"""

from __future__ import annotations

from datetime import datetime, timezone

from esg_leads.schemas.outputs import SCHEMA_VERSION, AlertKind
from esg_leads.schemas.records import OffsetsReset

AGENT_VERSION = "ops_alerts/1"


def offsets_reset_alert(notice: OffsetsReset, now: datetime) -> dict:
    """The ``offsets_reset`` alert for ``notice``; ``now`` is its processing time.

    ``event_time`` is when the source saw the loss; ``details`` name the gap: reading
    went on at ``new_offset`` instead of ``old_offset``, and ``skipped`` offsets
    (those between the two, when the new position is ahead) can no longer be read.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": (f"alert:{AlertKind.OFFSETS_RESET.value}:{notice.topic}:"
                            f"{notice.partition}:{notice.old_offset}"),
        "tenant": None,
        "kind": AlertKind.OFFSETS_RESET.value,
        "detector": AGENT_VERSION,
        "subject": f"{notice.topic}:{notice.partition}",
        "event_time": datetime.fromtimestamp(notice.detected_at_ms / 1000, tz=timezone.utc),
        "processed_at": now,
        "details": {
            "topic": notice.topic,
            "partition": notice.partition,
            "old_offset": notice.old_offset,
            "new_offset": notice.new_offset,
            "log_start": notice.log_start,
            "log_end": notice.log_end,
            "skipped": notice.skipped,
            "detail": notice.detail[:500],
        },
    }
