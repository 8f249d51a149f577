"""Erasure everywhere (issue 14, finding 8): after an ``investor.erasure`` nothing of the
investor's name, e-mail, phone or free text is readable in any file a replay writes —
dead letters written before the erasure included — nor in recovery snapshots.

A generated world gets, for one investor with contact details, the messages that
carry their personal data into dead letters: a re-delivered profile (``duplicate``),
a profile a producer broke (``schema_error``), a review decision with a free-text
note; then the erasure; then more of the same after it.
"""

from __future__ import annotations

import base64
import sqlite3
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.connectors.parquet_sink import read_records, records_of
from esg_leads.connectors.recording import RecordingReader, RecordingWriter
from esg_leads.flows.config import load_settings
from esg_leads.flows.pipeline import Sinks, build_flow
from esg_leads.operators.erasure import open_dead_letter
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.records import RawMessage

SPEC = WorldSpec(tenants=1, investors=150, properties=40, days=4, seed=21, malformed_rate=0.0,
                 profile_answers=False)


def world_messages(world: Path) -> list[RawMessage]:
    return [m for batch in RecordingReader(world).iter_batches() for m in batch]


def with_personal_dead_letters(messages: list[RawMessage]) -> tuple[list[RawMessage], dict]:
    """The world's messages plus the test's, and the erased investor's personal strings."""
    start, end = messages[0].timestamp_ms, messages[-1].timestamp_ms
    erase_at = start + (end - start) * 3 // 4
    # The investor most engaged before the erasure, with a profile: scored, audited.
    engaged: dict[bytes, int] = {}
    for m in messages:
        if m.topic == "investor.engagements" and m.timestamp_ms < erase_at:
            engaged[m.key] = engaged.get(m.key, 0) + 1
    profile = max((m for m in messages if m.topic == "investor.profiles"
                   and m.timestamp_ms < erase_at - 3_600_000
                   and orjson.loads(m.value).get("contact")),
                  key=lambda m: (engaged.get(m.key, 0), m.key))
    body = orjson.loads(profile.value)
    investor, tenant, contact = body["investor_id"], body["tenant"], body["contact"]
    note = f"{contact['name']} asked to be called at home"
    personal = {"name": contact["name"], "email": contact["email"], "phone": contact["phone"],
                "note": note}
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        offsets[(m.topic, m.partition)] = max(offsets.get((m.topic, m.partition), -1), m.offset)

    def add(topic: str, value: bytes, at_ms: int) -> RawMessage:
        offsets[(topic, 0)] = offsets.get((topic, 0), -1) + 1
        return RawMessage(topic, 0, offsets[(topic, 0)], at_ms, investor.encode(), value)

    def envelope(event_id: str, at_ms: int) -> dict:
        from datetime import datetime, timezone
        when = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc).isoformat()
        return {"tenant": tenant, "event_id": event_id, "event_time": when, "source": "test"}

    t = profile.timestamp_ms
    broken = orjson.dumps(body | {"investor_type": "not-a-type"})
    decision = envelope("rd-1", t + 60_000) | {
        "investor_id": investor, "case_id": f"case-{investor}", "verdict": "approve",
        "reviewer": "rev-1", "note": note}
    extra = [
        add("investor.profiles", profile.value, t + 1_000),            # duplicate, before
        add("investor.profiles", broken, t + 2_000),                    # schema_error, before
        add("lead.review-decisions", orjson.dumps(decision), t + 60_000),
        add("investor.erasure", orjson.dumps(envelope("er-x", erase_at) | {"investor_id": investor}),
            erase_at),
        add("investor.profiles", broken, erase_at + 60_000),            # schema_error, after
        add("investor.profiles", orjson.dumps(body | envelope("pr-after", erase_at + 120_000)),
            erase_at + 120_000),                                        # erased_subject, after
    ]
    return sorted(messages + extra, key=RawMessage.sort_key), {
        "investor": investor, "tenant": tenant, "personal": personal,
        "engagements": engaged.get(profile.key, 0)}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    world = tmp_path_factory.mktemp("world")
    generate(SPEC, world)
    messages, about = with_personal_dead_letters(world_messages(world))
    recording = tmp_path_factory.mktemp("recording")
    with RecordingWriter(recording) as writer:
        writer.write_many(messages)
    (recording / "config.toml").write_text((world / "config.toml").read_text())
    return recording, about


def readable_copies(path: Path) -> list[bytes]:
    """Everything a reader of ``path`` can get out of it without a key: the raw bytes,
    and for Parquet every row as JSON plus every dead letter's base64 value decoded."""
    if path.suffix != ".parquet":
        return [path.read_bytes()]
    table = pq.read_table(path)
    copies = [orjson.dumps(table.to_pylist(), default=str)]
    if "record" in table.column_names:
        for record in records_of(table):
            value = record.get("value_b64")
            if value:
                copies.append(base64.b64decode(value))
    return copies


def leaks(directory: Path, personal: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        for copy in readable_copies(path):
            for label, text in personal.items():
                if text.encode() in copy or orjson.dumps(text)[1:-1] in copy:
                    found.setdefault(str(path.relative_to(directory)), []).append(label)
    return found


def test_nothing_personal_of_an_erased_investor_is_readable_after_a_replay(
        case: tuple[Path, dict], tmp_path: Path) -> None:
    recording, about = case
    out = tmp_path / "out"
    replay(recording, out, load_settings(recording / "config.toml"))

    assert leaks(out, about["personal"]) == {}
    # The dead letters are there, with their reasons; only their values are gone.
    letters = read_records(out / "dlq.parquet")
    mine = [d for d in letters
            if d["key_b64"] == base64.b64encode(about["investor"].encode()).decode()]
    assert {d["reason"] for d in mine} >= {"duplicate", "schema_error", "erased_subject"}
    assert len(mine) >= 5
    with KeyVault(out / "dlq-keys.sqlite") as vault:
        for letter in mine:
            if letter["sealed"]:
                with pytest.raises(LookupError):
                    open_dead_letter(letter, vault, {about["tenant"]})
            else:
                assert letter["value_b64"] is None
        # Positive control: another investor's sealed letter opens with the store.
        other = next(d for d in letters if d["sealed"] and d not in mine)
        assert orjson.loads(open_dead_letter(other, vault, {about["tenant"]}))["event_id"]
    # The audit trail keeps the erasure's own row, and no other row about the investor.
    audit = pq.read_table(out / "audit").to_pylist()
    assert [r["agent"] for r in audit if r["investor_id"] == about["investor"]] == ["erasure"]
    assert about["engagements"] >= 5  # so it was scored and audited before the erasure
    assert len({r["investor_id"] for r in audit}) > 10


def test_no_contact_data_in_recovery_snapshots(case: tuple[Path, dict], tmp_path: Path) -> None:
    """Snapshots (pickled operator state in SQLite) hold hashes of contact details, never
    the details; and no personal string survives the erasure there either."""
    recording, about = case
    settings = load_settings(recording / "config.toml")
    messages = world_messages(recording)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    sinks = Sinks(**{k: TestingSink([]) for k in
                     ("leads", "dlq", "alerts", "review", "handoff", "audit", "tombstones")})
    run_main(build_flow(settings, TestingSource(messages, batch_size=50), sinks),
             epoch_interval=timedelta(0), recovery_config=RecoveryConfig(recovery))
    stored = b"".join(p.read_bytes() for p in recovery.iterdir())
    rows = b"".join(bytes(blob) for path in recovery.glob("*.sqlite3")
                    for (blob,) in sqlite3.connect(path).execute(
                        "SELECT ser_change FROM snaps WHERE ser_change IS NOT NULL"))
    assert rows, "the run took snapshots"
    assert about["investor"].encode() not in rows  # erased: not even the id is kept
    # Positive control: other investors' ids are in the snapshots, in clear.
    assert sum(m.key in rows for m in messages[:200] if m.topic == "investor.profiles") > 5
    for text in about["personal"].values():
        assert text.encode() not in stored
        assert text.encode() not in rows


def test_a_replay_keeps_its_own_key_store_and_never_touches_the_deployments(
        case: tuple[Path, dict], tmp_path: Path) -> None:
    recording, about = case
    live = tmp_path / "live-keys.sqlite"
    with KeyVault(live) as vault:  # the deployment's key for the same investor id
        live_key = vault.key_for(about["tenant"], about["investor"])
    settings = load_settings(recording / "config.toml")
    settings = settings.model_copy(update={"dlq": settings.dlq.model_copy(
        update={"key_store": str(live)})})
    out = tmp_path / "out"
    replay(recording, out, settings)
    with KeyVault(live) as vault:  # the replay's erasure of that id shredded nothing live
        assert vault.existing_key(about["tenant"], about["investor"]) == live_key
        assert vault.erased_at(about["tenant"], about["investor"]) is None
    with KeyVault(out / "dlq-keys.sqlite") as vault:  # it erased in its own store
        assert vault.existing_key(about["tenant"], about["investor"]) is None
        assert vault.erased_at(about["tenant"], about["investor"]) is not None
