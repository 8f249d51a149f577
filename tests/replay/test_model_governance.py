"""Champion and challenger in a replay: shadow never decides, the canary does, and a
signed ``ops.control`` command in the recording acts at its own position (issue 19,
parts 2 and 3)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from esg_leads.connectors.parquet_sink import read_records
from esg_leads.connectors.recording import RecordedMessage, RecordingReader, RecordingWriter
from esg_leads.flows.config import load_settings
from esg_leads.online_models.champion import in_canary
from esg_leads.operators import control_auth
from esg_leads.replay.diff import compare, load_run
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.replay.train import fit, register
from esg_leads.schemas.codec import decode_event, validate_record
from esg_leads.schemas.settings import Settings

WORLD = WorldSpec(tenants=1, investors=300, properties=40, days=6, seed=23, reviewers=False,
                  profile_answers=False)
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
KEY = "c" * 40


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("governance")
    recording = root / "world"
    generate(WORLD, recording)
    settings = load_settings(recording / "config.toml")
    registry = root / "registry"
    (trained,) = register(fit(recording, settings), registry, settings, source=recording)
    tenant = trained.tenant
    settings = with_(settings, registry={"directory": str(registry)},
                     tenants={tenant: {"control_signing_key": KEY}})
    return {"root": root, "recording": recording, "settings": settings, "tenant": tenant,
            "version": trained.version}


def with_(settings: Settings, **sections: dict) -> Settings:
    data = settings.model_dump(mode="python")
    for name, update in sections.items():
        if name == "tenants":
            for tenant, fields in update.items():
                data["tenants"][tenant] = {**data["tenants"][tenant], **fields}
        else:
            data[name] = {**data[name], **update}
    return Settings.model_validate(data)


def run(world: dict, name: str, settings: Settings, recording: Path | None = None) -> Path:
    out = world["root"] / name
    replay(recording or world["recording"], out, settings, clock=lambda: NOW)
    return out


def challenged(world: dict, share: float, **rules) -> Settings:
    return with_(world["settings"], models={
        "challengers": {world["tenant"]: {"version": world["version"], "canary_share": share}},
        "auto_promote": False, **rules})


def test_shadow_scores_are_present_and_never_decisive(world: dict) -> None:
    plain = run(world, "plain", world["settings"])
    shadow = run(world, "shadow", challenged(world, 0.0))
    for kind in ("leads", "review", "handoff"):
        assert (shadow / f"{kind}.parquet").read_bytes() == (plain / f"{kind}.parquet").read_bytes(), kind
    assert unsealed(shadow) == unsealed(plain)
    alerts = [a for a in read_records(shadow / "alerts.parquet") if a["detector"] != "model_lifecycle"]
    assert alerts == read_records(plain / "alerts.parquet")
    (started,) = [a for a in read_records(shadow / "alerts.parquet") if a["kind"] == "challenger_started"]
    assert started["subject"] == world["version"]
    scores = read_records(shadow / "shadow.parquet")
    leads = read_records(plain / "leads.parquet")
    assert len(scores) >= len(leads) > 100
    assert {s["decided_by"] for s in scores} == {"champion"}
    assert {s["challenger_version"] for s in scores} == {world["version"]}
    for record in scores[:50]:
        validate_record("leads.shadow", record)
    # The champion's side is the lead's probability; the challenger's is its own.
    by_key = {(lead["investor_id"], lead["event_time"]): lead["probability"] for lead in leads}
    matched = [s for s in scores if (s["investor_id"], s["event_time"]) in by_key]
    assert matched and all(s["champion_probability"] == by_key[(s["investor_id"], s["event_time"])]
                           for s in matched)
    assert any(s["challenger_probability"] != s["champion_probability"] for s in scores)
    assert not (plain / "shadow.parquet").exists() or not read_records(plain / "shadow.parquet")
    audit = [r for path in (shadow / "audit").rglob("*.parquet") for r in read_records_plain(path)
             if r["agent"] == "model_lifecycle"]
    assert [r["decision"] for r in audit] == ["challenger_started"]


def unsealed(out: Path) -> list[dict]:
    """Dead letters without their sealed values (encrypted under a fresh nonce each run)."""
    return [{k: v for k, v in d.items() if k != "value_b64"}
            for d in read_records(out / "dlq.parquet")]


def read_records_plain(path: Path) -> list[dict]:
    import pyarrow.parquet as pq
    return pq.read_table(path).to_pylist()


def test_the_canary_share_is_decided_by_the_challenger(world: dict) -> None:
    out = run(world, "canary", challenged(world, 0.3))
    tenant = world["tenant"]
    scores = read_records(out / "shadow.parquet")
    for s in scores:
        assert (s["decided_by"] == "challenger") == in_canary(tenant, s["investor_id"], 0.3)
    leads = read_records(out / "leads.parquet")
    canary = [lead for lead in leads if in_canary(tenant, lead["investor_id"], 0.3)]
    assert canary and all(f"canary-{world['version']}" in lead["model"]["model_version"]
                          for lead in canary)
    assert all("canary" not in lead["model"]["model_version"] for lead in leads
               if not in_canary(tenant, lead["investor_id"], 0.3))


def command(tenant: str, action: str, version: str | None, when: datetime, event_id: str,
            key: str = KEY, **changes) -> RecordedMessage:
    payload = {"tenant": tenant, "event_id": event_id, "event_time": when.isoformat(),
               "source": "test", "action": action, "operator": "ops-1"}
    if version is not None:
        payload["version"] = version
    event = decode_event("ops.control", orjson.dumps(payload))
    payload["signature"] = control_auth.sign_command(key, event)
    payload.update(changes)
    return RecordedMessage("ops.control", 0, int(event_id.rsplit("-", 1)[1]),
                           int(when.timestamp() * 1000), tenant.encode(), orjson.dumps(payload))


def with_commands(world: dict, name: str, commands: list[RecordedMessage]) -> Path:
    target = world["root"] / name
    shutil.rmtree(target, ignore_errors=True)
    with RecordingWriter(target) as writer:
        writer.write_many(RecordingReader(world["recording"]))
        writer.write_many(commands)
    shutil.copy(world["recording"] / "config.toml", target / "config.toml")
    return target


def middle(world: dict) -> datetime:
    times = [m.timestamp_ms for m in RecordingReader(world["recording"])]
    return datetime.fromtimestamp(times[len(times) // 2] / 1000, timezone.utc)


def test_a_recorded_promote_command_acts_at_its_position_every_time(world: dict) -> None:
    tenant, version = world["tenant"], world["version"]
    at = middle(world)
    recording = with_commands(world, "promote-rec", [
        command(tenant, "promote", version, at, "cmd-1"),
        command(tenant, "pin", version, at + timedelta(minutes=1), "cmd-2")])
    first = run(world, "promote-1", world["settings"], recording)
    again = run(world, "promote-2", with_(world["settings"], kafka={"batch_size": 7}), recording)
    assert compare(load_run(first), load_run(again))["equal"]  # as sets: batch order differs
    # Fresh scores (a state change re-publishes the lead's earlier score and model).
    leads = [lead for lead in read_records(first / "leads.parquet") if lead["state"] == "scored"]

    def when(lead: dict) -> datetime:
        return datetime.fromisoformat(lead["event_time"])

    before = [lead for lead in leads if when(lead) < at - timedelta(hours=2)]
    after = [lead for lead in leads if when(lead) > at + timedelta(hours=2)]
    assert before and after
    assert all(f"from-{version}" not in lead["model"]["model_version"] for lead in before)
    assert all(f"from-{version}" in lead["model"]["model_version"] for lead in after)
    kinds = [(a["kind"], a["details"]["trigger"]) for a in read_records(first / "alerts.parquet")
             if a["detector"] == "model_lifecycle"]
    assert kinds == [("model_promoted", "command:cmd-1"), ("model_pinned", "command:cmd-2")]
    summary = orjson.loads((first / "summary.json").read_bytes())
    assert summary["topics"]["ops.control"]["used"] == 2


def test_forged_unknown_and_repeated_commands_are_dead_letters_never_applied(world: dict) -> None:
    tenant, version = world["tenant"], world["version"]
    at = middle(world)
    recording = with_commands(world, "forged-rec", [
        command(tenant, "promote", version, at, "cmd-1", key="x" * 40),  # another key
        command(tenant, "promote", version, at, "cmd-2", operator="mallory"),  # altered
        command(tenant, "promote", version, at, "cmd-3", signature=None),  # unsigned
        command(tenant, "promote", "m-0000abcd", at, "cmd-4"),  # authentic, no such model
    ])
    plain = world["root"] / "plain"
    if not (plain / "leads.parquet").exists():
        plain = run(world, "plain", world["settings"])
    forged = run(world, "forged", world["settings"], recording)
    assert (forged / "leads.parquet").read_bytes() == (plain / "leads.parquet").read_bytes()
    dead = [d for d in read_records(forged / "dlq.parquet") if d["topic"] == "ops.control"]
    assert sorted((d["offset"], d["reason"]) for d in dead) == [
        (1, "unauthorized"), (2, "unauthorized"), (3, "unauthorized"), (4, "rejected_command")]
    assert "not signed" in next(d["detail"] for d in dead if d["offset"] == 3)
    assert KEY not in str(dead)
    summary = orjson.loads((forged / "summary.json").read_bytes())
    assert summary["dlq_by_reason"]["unauthorized"] >= 3
