"""``esg-leads explain --out DIR TENANT/INVESTOR_ID``: one lead's whole story from a run's outputs.

Reads the scored leads, review cases, handoffs and the audit trail of a replay (or
a recorded live run) and prints, in event-time order: the input events behind the
lead (lineage; with ``--recording``, what each event was), its scores with intervals
and reasons, the latest features, every agent decision, the state history, and each
handoff's lineage back to topic, partition and offset (with ``--recording``, checked
against the recorded input).

A lead is a tenant's investor: tenants share the outputs, and two tenants' ``inv-1``
are two leads (``<tenant>/<investor_id>``, :mod:`~esg_leads.schemas.keys`). Every file
is read filtered on both ids; an investor id given alone must name one tenant's lead,
or :class:`AmbiguousLead` lists the tenants instead of telling one story made of
several (a compliance officer would explain another tenant's decision).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.compute as pc
import pyarrow.dataset as ds
from rich.console import Console
from rich.table import Table

from esg_leads.connectors.parquet_sink import read_records


class AmbiguousLead(ValueError):
    """An investor id given without a tenant that several tenants' outputs hold.

    >>> print(AmbiguousLead("inv-1", ["acme", "beta"], frozenset({"acme"})))
    investor 'inv-1' is a lead of 2 tenants (acme (audit rows only: erased?), beta); name one: acme/inv-1 or --tenant acme
    """

    def __init__(self, investor_id: str, tenants: list[str],
                 audit_only: frozenset[str] = frozenset()) -> None:
        self.investor_id, self.tenants = investor_id, tenants
        # A tenant with audit rows alone has erased the investor (its erasure row stays).
        named = [f"{t} (audit rows only: erased?)" if t in audit_only else t for t in tenants]
        super().__init__(
            f"investor {investor_id!r} is a lead of {len(tenants)} tenants ({', '.join(named)}); "
            f"name one: {tenants[0]}/{investor_id} or --tenant {tenants[0]}")


def _records(path: Path, investor_id: str, tenant: str | None) -> list[dict]:
    if not path.exists():
        return []
    filters = [("investor_id", "=", investor_id)]
    if tenant is not None:
        filters.append(("tenant", "=", tenant))
    return read_records(path, filters=filters)


def _audit(out: Path, investor_id: str, tenant: str | None) -> list[dict]:
    folder = out / "audit"
    if not folder.exists():
        return []
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    wanted = pc.field("investor_id") == investor_id
    if tenant is not None:  # the hive partition ``tenant=<t>``: only its files are read
        wanted &= pc.field("tenant") == tenant
    table = dataset.to_table(filter=wanted)
    rows = table.to_pylist()
    rows.sort(key=lambda r: (r["event_time"], r["audit_id"]))
    return rows


def _events(recording: Path, refs: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], dict]:
    """What the referenced input events were (engagement fields only: no contact data)."""
    from esg_leads.connectors.recording import RecordingReader

    found = {}
    for message in RecordingReader(recording):
        ref = (message.topic, message.partition, message.offset)
        if ref in refs:
            payload = orjson.loads(message.value)
            found[ref] = {k: payload.get(k) for k in ("event_id", "event_time", "action",
                                                      "channel", "property_id", "epc_band",
                                                      "campaign_id", "kind")
                          if payload.get(k) is not None}
    return found


def _lineage_table(title: str, refs: list[dict], details: dict, checked: bool) -> Table:
    """References back to their offsets; with a recording, whether each one is there."""
    table = Table(title=title, title_justify="left")
    for column in ("event", "topic/partition/offset", "what", *(("in recording",) if checked else ())):
        table.add_column(column, overflow="fold")
    for ref in refs:
        what = dict(details.get((ref["topic"], ref["partition"], ref["offset"])) or {})
        found = what.pop("event_id", None)
        row = [ref["event_id"], f"{ref['topic']}/{ref['partition']}/{ref['offset']}",
               " ".join(f"{k}={v}" for k, v in what.items())]
        if checked:
            row.append("yes" if found == ref["event_id"] else
                       "NO: another event there" if found else "NO: offset not recorded")
        table.add_row(*row)
    return table


def _omitted(record: dict) -> str:
    omitted = record.get("lineage_omitted")
    if not omitted:
        return "all contributing inputs listed"
    return (f"{omitted['count']} more contributing inputs not listed (digest "
            f"{omitted['digest'][:16]}…; listed in earlier audit rows {omitted.get('audit') or ''}*)")


def explain(out: Path, investor_id: str, recording: Path | None = None,
            console: Console | None = None, tenant: str | None = None) -> int:
    """Print the story of ``tenant``'s lead ``investor_id``; 1 if ``out`` has none.

    ``tenant`` ``None``: the investor id must be one tenant's lead in ``out``, else
    :class:`AmbiguousLead` (nothing printed).
    """
    console = console or Console()
    leads = sorted(_records(out / "leads.parquet", investor_id, tenant),
                   key=lambda r: r["event_time"])
    cases = _records(out / "review.parquet", investor_id, tenant)
    handoffs = _records(out / "handoff.parquet", investor_id, tenant)
    audit = _audit(out, investor_id, tenant)
    tenants = sorted({r["tenant"] for r in (*leads, *cases, *handoffs, *audit)})
    if len(tenants) > 1:
        raise AmbiguousLead(investor_id, tenants, frozenset(tenants) - {
            r["tenant"] for r in (*leads, *cases, *handoffs)})
    if not (leads or audit):
        name = investor_id if tenant is None else f"{tenant}/{investor_id}"
        console.print(f"no lead {name!r} in {out} (erased, never scored, or a typo)")
        return 1
    tenant = tenants[0]
    console.print(f"[bold]Lead {investor_id}[/bold] — tenant {tenant}, "
                  f"{len(leads)} published scores, {len(cases)} review cases, "
                  f"{len(handoffs)} handoffs")

    refs = {}
    for record in (*leads, *handoffs):
        for ref in record.get("lineage") or ():
            refs[(ref["topic"], ref["partition"], ref["offset"])] = ref["event_id"]
    details = _events(recording, set(refs)) if recording is not None else {}
    events = Table(title="Input events (lineage)", title_justify="left")
    for column in ("event", "topic/partition/offset", "what"):
        events.add_column(column)
    for (topic, partition, offset), event_id in sorted(refs.items(), key=lambda kv: kv[1]):
        what = details.get((topic, partition, offset))
        events.add_row(event_id, f"{topic}/{partition}/{offset}",
                       " ".join(f"{k}={v}" for k, v in what.items()) if what else "")
    console.print(events)

    # The score's meaning, where it is read: a percentage, over a stated horizon.
    scores = Table(title="Scores (score: % chance of conversion within the horizon after 'as of'"
                         " — scoring.horizon, 90 days by default — calibrated on outcomes)",
                   title_justify="left")
    for column in ("as of", "score", "90% interval", "tier", "state", "compliance", "why"):
        scores.add_column(column, overflow="fold")
    for lead in leads:
        e = lead["explanation"]
        why = ", ".join([f"+{c['feature']}" for c in e["top_positive"]]
                        + [f"-{c['feature']}" for c in e["top_negative"]]
                        + [f"stale {s['source']} since {str(s['stale_since'])[:16]} (trust "
                           f"{s['trust']:.0%})" for s in e.get("stale_sources") or ()])
        compliance = lead.get("compliance") or {}
        scores.add_row(str(lead["event_time"])[:16], str(lead["score"]),
                       f"{100 * lead['interval']['low']:.0f}–{100 * lead['interval']['high']:.0f}",
                       lead["tier"], lead["state"], compliance.get("verdict", ""), why)
    console.print(scores)

    if leads:
        latest = leads[-1]
        features = ", ".join(f"{k}={v:.3g}" for k, v in latest["features"].items())
        console.print(f"[bold]Latest features[/bold] ({latest['model']['feature_set_version']}, "
                      f"model {latest['model']['model_version']}): {features}")
        sources = ", ".join(f"{k} {v:.0%}" for k, v in latest["explanation"]["source_weights"].items())
        console.print(f"[bold]Data sources[/bold]: {sources}")
        plan = latest.get("outreach_plan")
        if plan:
            steps = " → ".join(f"{s['channel']} (+{s['wait_days']:g}d, {s['trigger']})"
                               for s in plan["steps"]) or "no lawful channel"
            claims = "; ".join(f"{c['claim']} on {c['property_id']} ({c['evidence']})"
                               for c in plan["claims"]) or "none"
            console.print(f"[bold]Outreach plan[/bold]: {steps}\n  leading with "
                          f"{', '.join(plan['lead_properties']) or '-'}; claims: {claims}")

    decisions = Table(title="Agent decisions (audit trail)", title_justify="left")
    for column in ("as of", "agent", "version", "decision", "reason"):
        decisions.add_column(column, overflow="fold")
    for row in audit:
        decisions.add_row(str(row["event_time"])[:16], row["agent"], row["agent_version"],
                          row["decision"], row["reason"])
    console.print(decisions)

    history = [(row["event_time"], orjson.loads(row["output"]).get("transitions", []))
               for row in audit if row["agent"] == "state-machine"]
    path = [f"{a}→{b}" for _, moves in history for a, b in moves]
    console.print("[bold]State history[/bold]: " + (", ".join(path) or "no transitions"))
    for case in cases:
        console.print(f"review case {case['case_id']}: "
                      + "; ".join(f"{r['code']} — check: {r['check']}" for r in case["reasons"]))
    for handoff in handoffs:
        console.print(f"handoff {handoff['idempotency_key']} (score {handoff['score']}, "
                      f"approved by review: {handoff['approved_by_review']}; model "
                      f"{handoff.get('model_version') or '?'}, features "
                      f"{handoff.get('feature_set_version') or '?'})")
        if handoff.get("lineage"):
            console.print(_lineage_table(f"Lineage of {handoff['idempotency_key']}",
                                         handoff["lineage"], details, recording is not None))
        console.print("  " + _omitted(handoff))
    return 0
