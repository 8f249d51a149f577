"""``esg-leads diff RUN_A RUN_B``: do two runs decide the same?

A run is a replay's output directory (``leads.parquet``, ...) or a recording of a
live run's output topics (``esg-leads record --topics leads.scored ...``). Records
are matched by idempotency key — the identity a consumer upserts by — and
compared without their processing-time fields. Useful as a regression check of a
new model or setting against a recorded stream (shadow evaluation).

>>> a = {"leads": {"k1": {"idempotency_key": "k1", "score": 50, "state": "planned"}}}
>>> b = {"leads": {"k1": {"idempotency_key": "k1", "score": 55, "state": "in_review"}}}
>>> report = compare(a, b)
>>> report["equal"], report["leads"]["changed"][0]["changes"]
(False, ['score 50 -> 55', 'state planned -> in_review'])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from esg_leads.connectors.parquet_sink import read_records

#: Output kind -> (replay file, topic).
KINDS = {"leads": ("leads.parquet", "leads.scored"), "review": ("review.parquet", "leads.review"),
         "handoff": ("handoff.parquet", "crm.handoff"), "dlq": ("dlq.parquet", "leads.dlq"),
         "alerts": ("alerts.parquet", "ops.alerts")}
#: Fields that record when a record was processed, not what was decided.
PROCESSING_TIME = frozenset({"processed_at"})
#: Fields whose change is shown as a value change (others are listed by name).
SHOWN = ("score", "probability", "state", "tier", "reason", "kind")


def _strip(record: dict) -> dict:
    # A sealed dead-letter value is ciphertext under the run's own key store: two runs
    # seal the same bytes differently (operators/erasure.py), so it is not compared.
    skip = PROCESSING_TIME | {"value_b64"} if record.get("sealed") else PROCESSING_TIME
    return {k: v for k, v in record.items() if k not in skip}


def load_run(path: str | Path) -> dict[str, dict[str, dict]]:
    """Output records of a run by kind and idempotency key (the last one per key wins)."""
    path = Path(path)
    runs: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
    if any(path.glob("segment-*.parquet")):  # a recording of output topics
        from esg_leads.connectors.recording import RecordingReader

        by_topic = {topic: kind for kind, (_, topic) in KINDS.items()}
        # What compaction keeps: a tombstone deletes the records last written under its
        # very key, whatever the key's form (<tenant>/<investor_id>, or a bare id in a
        # recording that spans the upgrade to it); an index, not a scan per tombstone.
        written: dict[str, dict[bytes, set[str]]] = {kind: {} for kind in KINDS}
        key_of: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        for message in RecordingReader(path):
            kind = by_topic.get(message.topic)
            if kind is None:
                continue
            key = message.key or b""
            if message.value is None:  # a tombstone deletes the key's records
                for idempotency_key in written[kind].pop(key, ()):
                    if key_of[kind].get(idempotency_key) == key:
                        del key_of[kind][idempotency_key]
                        runs[kind].pop(idempotency_key, None)
                continue
            record = orjson.loads(message.value)
            idempotency_key = record["idempotency_key"]
            runs[kind][idempotency_key] = _strip(record)
            key_of[kind][idempotency_key] = key
            written[kind].setdefault(key, set()).add(idempotency_key)
        return runs
    for kind, (name, _) in KINDS.items():
        file = path / name
        if file.exists():
            for record in read_records(file):
                runs[kind][record["idempotency_key"]] = _strip(record)
    return runs


def _changes(a: dict, b: dict) -> list[str]:
    out = [f"{k} {a.get(k)} -> {b.get(k)}" for k in SHOWN if a.get(k) != b.get(k)]
    others = sorted(k for k in a.keys() | b.keys() if k not in SHOWN and a.get(k) != b.get(k))
    if others:
        out.append("also: " + ", ".join(others))
    return out


def compare(a: dict[str, dict[str, dict]], b: dict[str, dict[str, dict]],
            sample: int = 20) -> dict[str, Any]:
    report: dict[str, Any] = {"equal": True}
    for kind in a.keys() | b.keys():
        left, right = a.get(kind, {}), b.get(kind, {})
        only_a = sorted(left.keys() - right.keys())
        only_b = sorted(right.keys() - left.keys())
        changed = [{"key": k, "changes": _changes(left[k], right[k])}
                   for k in sorted(left.keys() & right.keys()) if left[k] != right[k]]
        deltas = [right[c["key"]]["score"] - left[c["key"]]["score"] for c in changed
                  if "score" in left[c["key"]] and "score" in right[c["key"]]]
        report[kind] = {
            "a": len(left), "b": len(right), "only_in_a": only_a[:sample],
            "only_in_b": only_b[:sample], "n_only_in_a": len(only_a), "n_only_in_b": len(only_b),
            "n_changed": len(changed), "changed": changed[:sample],
            "mean_abs_score_delta": round(sum(abs(d) for d in deltas) / len(deltas), 3) if deltas else 0,
        }
        if only_a or only_b or changed:
            report["equal"] = False
    return report


def render(report: dict[str, Any]) -> str:
    if report["equal"]:
        counts = ", ".join(f"{k} {v['a']}" for k, v in sorted(report.items()) if k != "equal")
        return f"identical ({counts})"
    lines = ["different:"]
    for kind, r in sorted((k, v) for k, v in report.items() if k != "equal"):
        if not (r["n_only_in_a"] or r["n_only_in_b"] or r["n_changed"]):
            lines.append(f"  {kind}: identical ({r['a']})")
            continue
        lines.append(f"  {kind}: {r['a']} vs {r['b']}; only in A {r['n_only_in_a']}, only in B "
                     f"{r['n_only_in_b']}, changed {r['n_changed']} (mean |score delta| "
                     f"{r['mean_abs_score_delta']})")
        for c in r["changed"][:5]:
            lines.append(f"    {c['key']}: {'; '.join(c['changes'])}")
        for key in r["only_in_a"][:3]:
            lines.append(f"    only in A: {key}")
        for key in r["only_in_b"][:3]:
            lines.append(f"    only in B: {key}")
    return "\n".join(lines)
