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
    assert startup_warnings(Settings.model_validate({"contact_hash_salt": "s3cret",
                                                     "recovery": {"directory": "r"}})) == []
    # Without a key store on disk, sealed dead letters could not be opened after a stop.
    assert any("dlq.key_store" in w for w in startup_warnings(
        Settings.model_validate({"contact_hash_salt": "s3cret"})))


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
