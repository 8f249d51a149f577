"""The audit trail: every agent's decision, with the inputs it used and their lineage.

Audit records carry identifiers, numbers, verdicts and reasons — never contact
details (the flow never holds them in clear: profiles keep only a salted hash).

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
>>> r = audit_record("acme", "inv-1", t, t, "compliance", "compliance/1", "allowed",
...                  "email and phone lawful", {"jurisdiction": "GB"}, {"verdict": "allowed"}, [])
>>> r["date"], r["audit_id"]
('2026-03-02', 'audit:acme:inv-1:1772445600:compliance')
"""

from __future__ import annotations

from datetime import datetime

import orjson


def audit_record(tenant: str, investor_id: str, event_time: datetime, processed_at: datetime,
                 agent: str, agent_version: str, decision: str, reason: str, inputs: dict,
                 output: dict, lineage: list[dict] | str, sequence: str = "") -> dict:
    """One agent decision about one lead, ready for the audit output.

    ``lineage`` may come already encoded (a JSON string): the agents deciding about
    one score share it, and it is the largest part of a row.
    """
    suffix = f":{sequence}" if sequence else ""
    return {
        "audit_id": f"audit:{tenant}:{investor_id}:{int(event_time.timestamp())}:{agent}{suffix}",
        "tenant": tenant,
        "investor_id": investor_id,
        "event_time": event_time,
        "date": event_time.date().isoformat(),
        "agent": agent,
        "agent_version": agent_version,
        "decision": decision[:128],
        "reason": reason[:512],
        "inputs": orjson.dumps(inputs, option=orjson.OPT_NON_STR_KEYS).decode(),
        "output": orjson.dumps(output, option=orjson.OPT_NON_STR_KEYS).decode(),
        "lineage": lineage if isinstance(lineage, str) else orjson.dumps(lineage).decode(),
        "processed_at": processed_at,
    }


def audit_rows(tenant: str, investor_id: str, event_time: datetime, processed_at: datetime,
               lineage: str, decisions: list[tuple[str, str, str, str, dict, dict]]) -> list[dict]:
    """The rows of several agents deciding about one lead at one instant: each equal to
    ``audit_record(tenant, investor_id, event_time, processed_at, *decision, lineage)``,
    with what they share (identity, instant, partition date, lineage) worked out once.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    >>> d = [("scoring", "m/1", "hot", "top positive: none", {"a": 1}, {"p": 0.5}),
    ...      ("compliance", "c/1", "allowed", "pack GB", {}, {"blocked": []})]
    >>> audit_rows("acme", "inv-1", t, t, "[]", d) == [
    ...     audit_record("acme", "inv-1", t, t, *x, "[]") for x in d]
    True
    """
    prefix = f"audit:{tenant}:{investor_id}:{int(event_time.timestamp())}:"
    day = event_time.date().isoformat()
    dumps, option = orjson.dumps, orjson.OPT_NON_STR_KEYS
    return [{
        "audit_id": prefix + agent,
        "tenant": tenant,
        "investor_id": investor_id,
        "event_time": event_time,
        "date": day,
        "agent": agent,
        "agent_version": version,
        "decision": decision[:128],
        "reason": reason[:512],
        "inputs": dumps(inputs, option=option).decode(),
        "output": dumps(output, option=option).decode(),
        "lineage": lineage,
        "processed_at": processed_at,
    } for agent, version, decision, reason, inputs, output in decisions]
