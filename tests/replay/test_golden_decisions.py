"""Every decision of one seeded world, pinned: an optimisation must not change any.

Issue 16 asks that decisions before and after each optimisation be compared with
``esg-leads diff`` over a seeded world. This test keeps the "before": a fingerprint of
every output record (per kind and idempotency key, the fields ``esg-leads diff`` shows
plus a SHA-256 of the whole record without processing-time fields) in
``golden/decisions.json``. A change that moves any decision fails here with the diff's
own report of what moved. When a change is *meant* to change decisions (a new feature,
a new rule), regenerate the file and say so in the commit:

    ESG_UPDATE_GOLDEN=1 python -m pytest tests/replay/test_golden_decisions.py
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson
import pytest

from esg_leads.flows.config import load_settings
from esg_leads.replay.diff import SHOWN, compare, load_run, render
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec

GOLDEN = Path(__file__).parent / "golden" / "decisions.json"
#: Two tenants, malformed, duplicate and late input, reviews, in a few seconds (no
#: handoff, alert or erasure happens this early: those are pinned as none).
SPEC = WorldSpec(tenants=2, investors=300, properties=60, days=12, seed=23,
                 malformed_rate=0.02, profile_answers=False)
OVERRIDES = {"windows": {"shards_per_tenant": 3},
             "lifecycle": {"uncertain_review_after": 0, "review_band": 0.3}}


def fingerprint(run: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Per kind and key: the fields the diff shows, and a hash of the whole record."""
    def one(record: dict) -> dict:
        body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        return {**{k: record[k] for k in SHOWN if k in record},
                "sha256": hashlib.sha256(body).hexdigest()[:20]}
    return {kind: {key: one(r) for key, r in sorted(records.items())}
            for kind, records in sorted(run.items())}


def as_lines(pinned: dict) -> str:
    """JSON with one record per line: a change of decisions reads as a change of lines."""
    kinds = []
    for kind, records in pinned.items():
        lines = ",\n".join(f"  {orjson.dumps(key).decode()}: {orjson.dumps(r).decode()}"
                            for key, r in records.items())
        kinds.append(f"{orjson.dumps(kind).decode()}: {{\n{lines}\n}}" if lines
                     else f"{orjson.dumps(kind).decode()}: {{}}")
    return "{\n" + ",\n".join(kinds) + "\n}\n"


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> dict:
    world = tmp_path_factory.mktemp("world")
    generate(SPEC, world)
    out = tmp_path_factory.mktemp("out")
    settings = load_settings(world / "config.toml", environ={}, overrides=OVERRIDES)
    replay(world, out, settings)
    return fingerprint(load_run(out))


def test_every_decision_of_the_seeded_world_is_as_pinned(decided: dict) -> None:
    if os.environ.get("ESG_UPDATE_GOLDEN"):
        GOLDEN.write_text(as_lines(decided))
    pinned = orjson.loads(GOLDEN.read_bytes())
    report = compare(pinned, decided)
    assert report["equal"], render(report)


def test_the_pinned_world_exercises_every_kind_of_decision(decided: dict) -> None:
    """A fingerprint of nothing would pin nothing."""
    assert all(decided[kind] for kind in ("leads", "review", "dlq"))
    assert {r.get("state") for r in decided["leads"].values()} >= {"scored", "in_review", "disqualified", "suppressed", "needs_info"}
    reasons = {r.get("reason") for r in decided["dlq"].values()}
    assert {"duplicate", "late", "schema_error", "unknown_tenant"} <= reasons, reasons
