"""``esg-leads models promote|rollback --bootstrap`` against the dev broker: a live
``run`` obeys the signed commands read from ``ops.control``, and a replay of the
recorded topics decides exactly what the run decided (issue 19 part 3)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from esg_leads.cli.main import main
from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.recording import RecordingReader, RecordingWriter
from esg_leads.flows.config import load_settings
from esg_leads.replay.diff import compare, load_run
from esg_leads.replay.generator import generate
from esg_leads.replay.record import record
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.replay.train import fit, register
from esg_leads.schemas.topics import ALL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS
from tests import zygote
from tests.kafka_helpers import ESG_LEADS

SPEC = WorldSpec(tenants=1, investors=250, properties=40, days=6, seed=31, reviewers=False,
                 profile_answers=False)
KEY = "q" * 40


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("control")
    recording = root / "world"
    generate(SPEC, recording)
    settings = load_settings(recording / "config.toml", environ={})
    (trained,) = register(fit(recording, settings), root / "registry", settings, source=recording)
    config = root / "live.toml"
    text = (recording / "config.toml").read_text()
    header = f'[tenants."{trained.tenant}"]\n'
    config.write_text(text.replace(header, f'{header}control_signing_key = "{KEY}"\n')
                      + f'\n[registry]\ndirectory = "{root / "registry"}"\n'
                      + "\n[kafka]\ntick_interval_ms = 0\n")
    times = sorted(m.timestamp_ms for m in RecordingReader(recording))
    return {"root": root, "recording": recording, "config": config, "tenant": trained.tenant,
            "version": trained.version, "times": times}


def at(world: dict, share: float) -> datetime:
    return datetime.fromtimestamp(world["times"][int(len(world["times"]) * share)] / 1000,
                                  timezone.utc)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess:
    """``esg-leads *args`` in this process (the live run is the process under test)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_commands_in_a_live_run_decide_as_in_the_replay_of_its_recording(
        world: dict, capsys: pytest.CaptureFixture[str]) -> None:
    tenant, version, config = world["tenant"], world["version"], str(world["config"])
    promote_at, rollback_at = at(world, 0.4), at(world, 0.7)
    root = world["root"]
    with DevBroker(topics=list(ALL_TOPICS), partitions=3) as broker:
        bootstrap = broker.bootstrap
        # The world before the promotion, the commands, then the rest: the run reads
        # the commands from Kafka like any input (with a forged one among them).
        first, rest = split(world, promote_at, root)
        publish(first, bootstrap)
        for action, when, event_id in (("promote", promote_at, "mc-1"),
                                       ("rollback", rollback_at, "mc-2")):
            done = cli(capsys, "models", action, version if action == "promote" else "previous",
                       "--tenant", tenant, "--operator", "ops-1", "--config", config,
                       "--event-id", event_id, "--event-time", when.isoformat(),
                       "--bootstrap", bootstrap)
            assert done.returncode == 0, done.stderr
            assert "published" in done.stderr
        forged = orjson.loads(cli(capsys, "models", "pin", version, "--tenant", tenant,
                                  "--operator", "ops-1", "--config", config, "--event-id",
                                  "mc-3", "--event-time", promote_at.isoformat()).stdout)
        forged["operator"] = "mallory"  # altered after signing
        from tests.kafka_helpers import produce
        produce(bootstrap, "ops.control", tenant.encode(), orjson.dumps(forged))
        publish(rest, bootstrap)
        live = zygote.run([ESG_LEADS, "run", "--bootstrap", bootstrap, "--config", config,
                               "--until-end"], cwd=root, capture_output=True, text=True,
                              timeout=240)
        assert live.returncode == 0, live.stderr
        record({"bootstrap.servers": bootstrap}, list(OUTPUT_TOPICS), root / "live")
        record({"bootstrap.servers": bootstrap}, list(INPUT_TOPICS), root / "inputs")
    decided = load_run(root / "live")
    alerts = [a for a in decided["alerts"].values() if a["detector"] == "model_lifecycle"]
    assert sorted((a["kind"], a["details"]["trigger"]) for a in alerts) == [
        ("model_promoted", "command:mc-1"), ("model_rolled_back", "command:mc-2")]
    dead = [d for d in decided["dlq"].values() if d["topic"] == "ops.control"]
    assert [(d["reason"], d["event_id"]) for d in dead] == [("unauthorized", "mc-3")]
    versions = {lead["model"]["model_version"] for lead in decided["leads"].values()}
    assert any(f"from-{version}" in v for v in versions)
    assert any(f"from-{version}" not in v for v in versions)

    (root / "inputs" / "config.toml").write_text(world["config"].read_text())
    replay(root / "inputs", root / "replayed", load_settings(world["config"], environ={}))
    report = compare(decided, load_run(root / "replayed"))
    assert report["equal"], {k: v for k, v in report.items() if isinstance(v, dict) and any(v.values())}


def split(world: dict, when: datetime, root: Path) -> tuple[Path, Path]:
    cut = int(when.timestamp() * 1000)
    parts = (root / "first", root / "rest")
    with RecordingWriter(parts[0]) as first, RecordingWriter(parts[1]) as rest:
        for batch in RecordingReader(world["recording"]).iter_batches():
            first.write_many([m for m in batch if m.timestamp_ms < cut])
            rest.write_many([m for m in batch if m.timestamp_ms >= cut])
    return parts


def publish(recording: Path, bootstrap: str) -> None:
    from esg_leads.connectors.publish import publish_recording

    published = publish_recording(recording, bootstrap)
    assert not any(published["repartitioned"].values()), published



