"""``esg-leads models promote|pin|unpin|rollback`` without a broker: what it signs, and
the operator mistakes it refuses in one line (exit 2)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from esg_leads.cli.main import main
from esg_leads.online_models.model_store import ModelStore
from esg_leads.operators.validation import Parser
from esg_leads.schemas.records import Ingested, RawMessage
from esg_leads.schemas.settings import Settings
from tests.online_models.test_model_store import NOW, artifact

KEY = "m" * 40


def config(tmp_path: Path, registry: Path | None = None) -> Path:
    path = tmp_path / "control.toml"
    path.write_text(f'[tenants.acme]\ncontrol_signing_key = "{KEY}"\n[tenants.beta]\n'
                    + (f'[registry]\ndirectory = "{registry}"\n' if registry else ""))
    return path


def command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_printed_command_is_signed_and_the_flow_accepts_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "registry"
    version = ModelStore(registry).register(artifact(), NOW)
    code, out, err = command(capsys, "promote", version[:8], "--tenant", "acme", "--operator",
                             "ops-1", "--note", "better on Q1", "--event-time",
                             "2026-03-02T11:00:00+01:00", "--config", str(config(tmp_path, registry)))
    assert code == 0, err
    sent = json.loads(out)
    assert sent["version"] == version  # the prefix resolved: the signed command is exact
    assert sent["event_time"] == "2026-03-02T10:00:00.000000Z"
    settings = Settings.model_validate({"tenants": {"acme": {"control_signing_key": KEY}}})
    raw = RawMessage("ops.control", 0, 0, int(datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
                                              .timestamp() * 1000), b"acme", out.strip().encode())
    assert type(Parser(settings.tenants).parse(raw, NOW)) is Ingested
    forged = {**sent, "version": "m-ffffffffffff"}
    raw = raw._replace(value=orjson.dumps(forged))
    assert Parser(settings.tenants).parse(raw, NOW)["reason"] == "unauthorized"


def test_unpin_takes_no_version_and_rollback_takes_previous(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(config(tmp_path))
    code, out, _ = command(capsys, "unpin", "--tenant", "acme", "--operator", "ops-1",
                           "--config", path)
    assert code == 0 and "version" not in json.loads(out)
    code, out, _ = command(capsys, "rollback", "previous", "--tenant", "acme", "--operator",
                           "ops-1", "--config", path)
    assert code == 0 and json.loads(out)["version"] == "previous"


@pytest.mark.parametrize(("args", "message"), [
    (["pin", "m-0123abcd", "--tenant", "ghost"], "unknown tenant 'ghost'"),
    (["pin", "m-0123abcd", "--tenant", "beta"], "'beta' has no control_signing_key"),
    (["promote", "latest", "--tenant", "acme"], "invalid command: version"),
    (["promote", "m-0123abcd", "--tenant", "acme", "--event-time", "2026-03-02T10:00"],
     "needs a timezone"),
    (["promote", "m-0123abcd", "--tenant", "acme", "--registry", "/nonexistent/registry"],
     "no model registry at"),
])
def test_operator_mistakes_are_one_line_and_exit_2(tmp_path: Path, capsys, args, message) -> None:
    code, out, err = command(capsys, *args, "--operator", "ops-1", "--config",
                             str(config(tmp_path)))
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert KEY not in err


def test_a_version_missing_from_the_registry_is_refused(tmp_path: Path, capsys) -> None:
    registry = tmp_path / "registry"
    ModelStore(registry).register(artifact(), NOW)
    code, _, err = command(capsys, "promote", "m-0000aaaa", "--tenant", "acme", "--operator",
                           "ops-1", "--config", str(config(tmp_path, registry)))
    assert code == 2 and "m-0000aaaa" in err
