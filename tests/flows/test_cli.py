"""The ``esg-leads`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from flows.cli import main
from flows.run import startup_warnings
from schemas.settings import Settings
from schemas.topics import ALL_TOPICS


def test_schema_prints_every_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert set(schemas) == set(ALL_TOPICS)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_of_one_topic_and_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "leads.scored"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == "urn:esg-leads:topic:leads.scored"
    assert main(["schema", "leads.nope"]) == 2
    assert "unknown topic 'leads.nope'" in capsys.readouterr().err


def test_generate_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, run = tmp_path / "world", tmp_path / "run"
    assert main(["generate", "--investors", "200", "--days", "5", "--seed", "3",
                 "--out", str(world)]) == 0
    assert "messages" in capsys.readouterr().err
    assert main(["replay", str(world), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "reconciled: yes" in err and "config.toml" in err
    assert {p.name for p in run.iterdir()} >= {"leads.parquet", "dlq.parquet", "alerts.parquet",
                                               "summary.json"}


def test_invalid_config_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tmp_path / "world"
    main(["generate", "--investors", "50", "--days", "2", "--out", str(world)])
    bad = tmp_path / "bad.toml"
    bad.write_text("[windows]\nshards_per_tenant = 0\n")
    assert main(["replay", str(world), "--out", str(tmp_path / "run"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "windows.shards_per_tenant" in err and "Traceback" not in err
    bad.write_text("[windows\n")
    assert main(["replay", str(world), "--out", str(tmp_path / "run"), "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_bad_generate_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--days", "5", "--drift-at", "9", "--out", str(tmp_path)]) == 2
    assert "drift day" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("esg-leads", path=str(Path(sys.executable).parent))
    assert exe is not None
    done = subprocess.run([exe, "schema", "crm.outcomes"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout)["x-kafka-key"] == "investor_id"


def test_run_warns_only_while_the_contact_salt_is_the_dev_default() -> None:
    assert any("contact_hash_salt" in w for w in startup_warnings(Settings()))
    assert startup_warnings(Settings.model_validate({"contact_hash_salt": "s3cret"})) == []


def test_replay_serves_metrics_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, run = tmp_path / "world", tmp_path / "run"
    main(["generate", "--investors", "100", "--days", "3", "--seed", "5", "--out", str(world)])
    assert main(["replay", str(world), "--out", str(run), "--metrics-port", "0"]) == 0
    err = capsys.readouterr().err
    url = next(word for word in err.split() if word.endswith("/metrics"))
    body = urllib.request.urlopen(url, timeout=5).read().decode()  # the server outlives the run
    summary = json.loads((run / "summary.json").read_text())
    read = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("esg_leads_input_messages_total{"))
    assert read == summary["messages"] > 0


# ------------------------------------------------------- faults (issue 14, "Faults")

#: ``esg-leads replay`` that signals itself once the first batch has been read: the
#: signal is real (the handler ``replay`` installs takes it) and lands mid-run, every
#: time, however fast or loaded the machine is.
SIGNAL_AFTER_FIRST_BATCH = """
import os, signal, sys
import flows.progress
from flows.cli import main

update = flows.progress.Progress.update

def update_then_signal(self, done, total=None):
    if not getattr(update_then_signal, "sent", False):
        update_then_signal.sent = True
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return update(self, done, total)

flows.progress.Progress.update = update_then_signal
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    world = tmp_path_factory.mktemp("world")
    assert main(["generate", "--investors", "300", "--days", "6", "--seed", "8",
                 "--out", str(world)]) == 0
    config = world / "batches.toml"  # many batches: the signal lands between two
    config.write_text((world / "config.toml").read_text() + "\n[kafka]\nbatch_size = 200\n")
    return world, config


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signalled_replay_writes_what_it_read_and_exits_128_plus_signal(
        small_world: tuple[Path, Path], tmp_path: Path, signame: str, code: int) -> None:
    world, config = small_world
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_FIRST_BATCH, signame, "replay",
                           str(world), "--out", str(out), "--config", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stderr
    assert f"{signame}: stopping" in done.stderr and "INTERRUPTED after 200 of" in done.stderr
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["messages"] == 200 < summary["recording_messages"]
    assert sum(t["in"] for t in summary["topics"].values()) == 200 and summary["reconciled"]
    import pyarrow.parquet as pq

    for kind in ("leads", "review", "handoff", "dlq", "alerts"):
        assert pq.read_table(out / f"{kind}.parquet").num_rows == summary["outputs"][kind]
    assert not (out / ".parts").exists()


def test_an_unwritable_out_is_one_line_and_exit_2(small_world: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    world, _ = small_world
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "out"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "replay", str(world), "--out",
                           str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"esg-leads replay: error: cannot write {target}: Not a directory"]
    assert "Traceback" not in done.stderr


def test_run_refuses_an_unwritable_audit_or_recovery_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for flags in (["--recovery-dir", str(tmp_path / "file" / "r")],
                  ["--config", str(_audit_in(tmp_path, tmp_path / "file" / "a"))]):
        done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--bootstrap",
                               "127.0.0.1:9", *flags], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("esg-leads run: error: cannot write ")
        assert "Traceback" not in done.stderr


def _audit_in(tmp_path: Path, directory: Path) -> Path:
    config = tmp_path / "audit.toml"
    config.write_text(f'[audit]\ndirectory = "{directory}"\n')
    return config
