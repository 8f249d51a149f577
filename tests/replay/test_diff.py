"""``esg-leads diff`` of a recording of output topics: tombstones by key."""

from __future__ import annotations

from pathlib import Path

import orjson

from esg_leads.connectors.recording import RecordedMessage, write_messages
from esg_leads.replay.diff import load_run


def _lead(tenant: str, investor: str) -> bytes:
    return orjson.dumps({"tenant": tenant, "investor_id": investor, "score": 50,
                         "idempotency_key": f"lead:{tenant}:{investor}:1"})


def test_a_tombstone_deletes_its_tenants_records_only(tmp_path: Path) -> None:
    """Keys name the tenant (``<tenant>/<investor_id>``): tenant A's tombstone of ``inv-1``
    leaves tenant B's ``inv-1``. A bare-id tombstone (a recording made before keys named
    the tenant) deletes every tenant's, as compaction did then."""
    messages = [RecordedMessage("leads.scored", 0, 0, 1, b"acme/inv-1", _lead("acme", "inv-1")),
                RecordedMessage("leads.scored", 0, 1, 2, b"beta/inv-1", _lead("beta", "inv-1")),
                RecordedMessage("leads.scored", 0, 2, 3, b"acme/inv-2", _lead("acme", "inv-2")),
                RecordedMessage("leads.scored", 0, 3, 4, b"beta/inv-2", _lead("beta", "inv-2")),
                RecordedMessage("leads.scored", 0, 4, 5, b"acme/inv-1", None),
                RecordedMessage("leads.scored", 0, 5, 6, b"inv-2", None)]
    write_messages(tmp_path, messages)
    assert sorted(load_run(tmp_path)["leads"]) == ["lead:beta:inv-1:1"]
