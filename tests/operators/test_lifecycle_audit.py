from __future__ import annotations

import orjson

from esg_leads.operators.audit import audit_record
from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.operators.lifecycle_audit import AGENT_VERSION, erasure_row, notice_row
from tests.operators.test_lifecycle import NOW, SETTINGS, notice, of, scored


def test_a_published_lead_gets_one_row_per_agent_sharing_identity_and_lineage() -> None:
    """The five rows an explain reads back: distinct ids, one instant, the record's lineage."""
    first = scored(0.8)
    out = LifecycleShard(SETTINGS).process([first], NOW)
    rows = of(out, "audit")
    [lead] = of(out, "leads")
    assert [r["agent"] for r in rows] == ["scoring", "compliance", "outreach", "review-routing",
                                          "state-machine"]
    assert len({r["audit_id"] for r in rows}) == 5
    assert {(r["tenant"], r["investor_id"], r["event_time"], r["date"]) for r in rows} == {
        ("acme", "inv-1", lead["event_time"], lead["event_time"].date().isoformat())}
    assert all(orjson.loads(r["lineage"]) == lead["lineage"] for r in rows)
    state = rows[-1]
    assert state["agent_version"] == AGENT_VERSION and state["decision"] == lead["state"]
    assert orjson.loads(state["inputs"]) == {"score": lead["score"]}


def test_notice_and_erasure_rows_name_the_message_they_came_from() -> None:
    n = notice("outcome", 1, detail="disqualified")
    row = notice_row(n, "disqualified", None, NOW)
    assert row == audit_record(n.tenant, n.investor_id, n.event_time, NOW, "state-machine",
                               AGENT_VERSION, "disqualified", "outcome",
                               {"notice": "outcome", "detail": "disqualified"},
                               {"state": "disqualified"},
                               [{"event_id": n.ref[0], "topic": n.ref[1],
                                 "partition": n.ref[2], "offset": n.ref[3]}],
                               sequence=n.ref[0])
    assert row["audit_id"].endswith(f":state-machine:{n.ref[0]}")
    gone = erasure_row(n, NOW)
    assert (gone["agent"], gone["decision"]) == ("erasure", "erased")
    assert orjson.loads(gone["lineage"])[0]["event_id"] == n.ref[0]
