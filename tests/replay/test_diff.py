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
    leaves tenant B's ``inv-1``."""
    messages = [RecordedMessage("leads.scored", 0, 0, 1, b"acme/inv-1", _lead("acme", "inv-1")),
                RecordedMessage("leads.scored", 0, 1, 2, b"beta/inv-1", _lead("beta", "inv-1")),
                RecordedMessage("leads.scored", 0, 2, 3, b"acme/inv-1", None)]
    write_messages(tmp_path, messages)
    assert sorted(load_run(tmp_path)["leads"]) == ["lead:beta:inv-1:1"]


def test_a_tombstone_deletes_what_compaction_would_across_the_key_upgrade(
        tmp_path: Path) -> None:
    """A recording that spans the upgrade from bare investor-id keys: a tombstone deletes
    the records last written under its very key, as compaction does. Review of stop 30:
    a bare-id tombstone deleted every tenant's records of that id, even those written
    under new keys, which compaction keeps."""
    messages = [RecordedMessage("leads.scored", 0, 0, 1, b"inv-1", _lead("acme", "inv-1")),
                RecordedMessage("leads.scored", 0, 1, 2, b"inv-2", _lead("beta", "inv-2")),
                # After the upgrade: acme's inv-1 again under its new key, a new record.
                RecordedMessage("leads.scored", 0, 2, 3, b"acme/inv-1",
                                orjson.dumps({"tenant": "acme", "investor_id": "inv-1",
                                              "score": 60, "idempotency_key": "lead:acme:inv-1:2"})),
                # tombstone-old-keys deletes the old keys; acme's new record stays.
                RecordedMessage("leads.scored", 0, 3, 4, b"inv-1", None),
                RecordedMessage("leads.scored", 0, 4, 5, b"inv-2", None),
                RecordedMessage("leads.scored", 0, 5, 6, b"beta/inv-9", None)]
    write_messages(tmp_path, messages)
    assert sorted(load_run(tmp_path)["leads"]) == ["lead:acme:inv-1:2"]


def test_a_record_upserted_under_a_new_key_survives_its_old_keys_tombstone(
        tmp_path: Path) -> None:
    """The same idempotency key re-sent under the new key (a re-emission after the
    upgrade) belongs to the new key: the old key's tombstone leaves it."""
    lead = _lead("acme", "inv-1")
    messages = [RecordedMessage("leads.scored", 0, 0, 1, b"inv-1", lead),
                RecordedMessage("leads.scored", 0, 1, 2, b"acme/inv-1", lead),
                RecordedMessage("leads.scored", 0, 2, 3, b"inv-1", None)]
    write_messages(tmp_path, messages)
    assert sorted(load_run(tmp_path)["leads"]) == ["lead:acme:inv-1:1"]
