"""Effective settings and what is shown of them: no secret in clear (issue 14, finding 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flows.cli import main
from flows.config import ConfigError, load_settings
from replay.generator import generate
from replay.simulate import WorldSpec
from tests.kafka_helpers import ESG_LEADS, free_port

#: One value per kind of secret, set through the config file.
TOML_SECRETS = {
    "sasl.password": "toml-sasl-password-1",
    "ssl.key.pem": "-----BEGIN PRIVATE KEY-----toml-pem-2",
    "sasl.oauthbearer.client.secret": "toml-oauth-secret-3",
    "ssl.keystore.password": "toml-keystore-4",
    "ssl.key.password": "toml-key-password-5",
    "basic.auth.user.info": "svc:toml-userinfo-6",
}
#: ... and through the environment (``_`` stands for ``.`` under kafka.client).
ENV_SECRETS = {
    "ESG_LEADS_KAFKA__CLIENT__SASL_OAUTHBEARER_CONFIG": "clientSecret=env-oauth-config-7",
    "ESG_LEADS_KAFKA__SECRETS__SSL_TRUSTSTORE_PASSWORD": "env-truststore-8",
    "ESG_LEADS_CONTACT_HASH_SALT": "env-salt-9",
    "ESG_LEADS_KAFKA__CLIENT__SASL_TOKEN": "4242424242",  # looks like a number
}
SIGNING_KEY = "toml-signing-key-10-at-least-32-characters"
URL_PASSWORD = "url-password-11"
CRM_TOKEN = "toml-crm-token-12"
WEBHOOK_SECRET = "toml-webhook-secret-13-at-least-32-characters"


def secret_config(tmp_path: Path) -> Path:
    lines = ["[kafka.client]"]
    lines += [f'"{k}" = "{v}"' for k, v in TOML_SECRETS.items()]
    lines += ['"sasl.username" = "svc-user"', '"security.protocol" = "PLAINTEXT"',
              f'"sasl.oauthbearer.token.endpoint.url" = "https://svc:{URL_PASSWORD}@idp/token"',
              '[tenants."acme-capital"]', f'review_signing_key = "{SIGNING_KEY}"',
              f'webhook_secret = "{WEBHOOK_SECRET}"',
              'reviewers = ["ann"]', '[tenants."borealis-re"]',
              "[crm]", f'token = "{CRM_TOKEN}"',
              "[crm.field_map]", 'idempotency_key = "External_Key__c"', 'score = "hs_lead_score"']
    path = tmp_path / "secrets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def every_secret() -> list[str]:
    values = [*TOML_SECRETS.values(), *ENV_SECRETS.values(), SIGNING_KEY, URL_PASSWORD,
              CRM_TOKEN, WEBHOOK_SECRET]
    return values + [v.split("=", 1)[-1] for v in values] + ["toml-userinfo-6"]


def assert_no_secret(text: str, where: str) -> None:
    leaked = [v for v in every_secret() if v in text]
    assert not leaked, f"{where} shows {leaked}"


def env_with_secrets() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESG_LEADS_")}
    return {**env, **ENV_SECRETS}


def test_config_masks_every_secret_from_file_and_environment(tmp_path: Path) -> None:
    shown = subprocess.run([ESG_LEADS, "config", "--config", str(secret_config(tmp_path))],
                           capture_output=True, text=True, env=env_with_secrets(), timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert_no_secret(shown.stdout + shown.stderr, "esg-leads config")
    settings = json.loads(shown.stdout)
    client = settings["kafka"]["client"]
    assert client["sasl.username"] == "svc-user" and client["security.protocol"] == "PLAINTEXT"
    assert client["sasl.oauthbearer.token.endpoint.url"] == "https://***@idp/token"
    assert all(client[k] == "***" for k in TOML_SECRETS)
    assert client["sasl.token"] == "***" and settings["contact_hash_salt"] == "***"
    assert settings["tenants"]["acme-capital"]["review_signing_key"] == "***"
    assert settings["tenants"]["acme-capital"]["reviewers"] == ["ann"]
    assert settings["tenants"]["acme-capital"]["webhook_secret"] == "***"
    assert settings["crm"]["token"] == "***"
    # A field map names fields: ``idempotency_key`` is no key to hide.
    assert settings["crm"]["field_map"] == {"idempotency_key": "External_Key__c",
                                            "score": "hs_lead_score"}
    # ... while the clients get every one of them, as typed.
    loaded = load_settings(secret_config(tmp_path), environ=ENV_SECRETS)
    client_config = loaded.kafka.client_config()
    assert client_config["sasl.token"] == "4242424242"
    assert client_config["ssl.truststore.password"] == "env-truststore-8"


def test_run_start_line_and_log_show_no_secret(tmp_path: Path) -> None:
    """``esg-leads run`` against a broker that is not there: its start line and all it
    logs while trying to connect."""
    log = tmp_path / "run.log"
    run = subprocess.Popen([ESG_LEADS, "run", "--config", str(secret_config(tmp_path)),
                            "--bootstrap", f"127.0.0.1:{free_port()}"], cwd=tmp_path,
                           stdout=log.open("w"), stderr=subprocess.STDOUT,
                           env=env_with_secrets(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "esg-leads run: brokers=" not in log.read_text() and run.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(30)
    text = log.read_text()
    assert "tenants=acme-capital,borealis-re" in text
    assert_no_secret(text, "esg-leads run")


def test_replay_summary_and_outputs_hold_no_secret(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    world, out = tmp_path / "world", tmp_path / "out"
    generate(WorldSpec(tenants=2, investors=60, properties=10, days=2, seed=5), world)
    assert main(["replay", str(world), "--out", str(out),
                 "--config", str(secret_config(tmp_path))]) == 0
    captured = capsys.readouterr()
    assert_no_secret(captured.out + captured.err, "esg-leads replay")
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "summary.json" for p in written)
    for path in written:
        assert_no_secret(path.read_bytes().decode("latin-1"), str(path))


def test_credentials_in_the_bootstrap_address_are_refused() -> None:
    with pytest.raises(ConfigError, match="must not hold credentials") as error:
        load_settings(overrides={"kafka": {"bootstrap_servers": "sasl_ssl://u:pw-x@host:9093"}},
                      environ={})
    assert "pw-x" not in str(error.value)
