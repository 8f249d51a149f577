"""Effective settings and what is shown of them: no secret in clear (issue 14, finding 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from esg_leads.cli.main import main
from esg_leads.flows.config import ConfigError, load_settings
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from tests import zygote
from tests.kafka_helpers import ESG_LEADS, refused_address

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
    shown = zygote.run([ESG_LEADS, "config", "--config", str(secret_config(tmp_path))],
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
    with refused_address() as nowhere:
        run = zygote.popen([ESG_LEADS, "run", "--config", str(secret_config(tmp_path)),
                                "--bootstrap", nowhere], cwd=tmp_path,
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
    generate(WorldSpec(tenants=2, investors=60, properties=10, days=2, seed=5, profile_answers=False), world)
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


# ------------------------------------------- layering (issue 20, part 4: 12-factor order)

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from esg_leads.flows.config import load_layers, origins  # noqa: E402

#: One value per layer for two settings, each settable in every layer
#: (``--metrics-port`` and ``--bootstrap`` are the flags).
LAYER_VALUES = {
    "file": {"port": 1001, "bootstrap": "file-host:9092"},
    "env": {"port": 1002, "bootstrap": "env-host:9092"},
    "flag": {"port": 1003, "bootstrap": "flag-host:9092"},
}


def layered(tmp_path: Path, present: set[str]):
    config = None
    if "file" in present:
        config = tmp_path / "layers.toml"
        values = LAYER_VALUES["file"]
        config.write_text(f'[metrics]\nport = {values["port"]}\n'
                          f'[kafka]\nbootstrap_servers = "{values["bootstrap"]}"\n')
    environ = {}
    if "env" in present:
        values = LAYER_VALUES["env"]
        environ = {"ESG_LEADS_METRICS__PORT": str(values["port"]),
                   "ESG_LEADS_KAFKA__BOOTSTRAP_SERVERS": values["bootstrap"]}
    overrides = {}
    if "flag" in present:
        values = LAYER_VALUES["flag"]
        overrides = {"metrics": {"port": values["port"]},
                     "kafka": {"bootstrap_servers": values["bootstrap"]}}
    return load_layers(config, overrides, environ)


@given(present=st.sets(st.sampled_from(["file", "env", "flag"])))
def test_the_highest_layer_present_wins_and_is_named_as_the_origin(
        tmp_path_factory: pytest.TempPathFactory, present: set[str]) -> None:
    loaded = layered(tmp_path_factory.mktemp("layers"), present)
    top = max(present, key=["file", "env", "flag"].index, default="default")
    port, bootstrap = loaded.settings.metrics.port, loaded.settings.kafka.bootstrap_servers
    if top == "default":
        assert (port, bootstrap) == (None, "127.0.0.1:9092")
    else:
        assert (port, bootstrap) == (LAYER_VALUES[top]["port"], LAYER_VALUES[top]["bootstrap"])
    rows = {key: origin for key, _, origin in origins(loaded)}
    assert rows["metrics.port"].split(":")[0] == top
    assert rows["kafka.bootstrap_servers"].split(":")[0] == top
    assert rows["kafka.batch_size"] == "default"


def test_the_environment_overrides_the_config_file(tmp_path: Path) -> None:
    """12-factor: a deployment's environment wins over the file baked into its image
    (it was the other way round before issue 20)."""
    config = tmp_path / "image.toml"
    config.write_text('[kafka]\nbootstrap_servers = "baked-in:9092"\nbatch_size = 7\n')
    settings = load_settings(config, environ={"ESG_LEADS_KAFKA__BOOTSTRAP_SERVERS": "prod:9092"})
    assert settings.kafka.bootstrap_servers == "prod:9092"
    assert settings.kafka.batch_size == 7  # what the environment does not set, the file does
    # ... and a flag wins over both.
    flagged = load_settings(config, overrides={"kafka": {"bootstrap_servers": "flag:9092"}},
                            environ={"ESG_LEADS_KAFKA__BOOTSTRAP_SERVERS": "prod:9092"})
    assert flagged.kafka.bootstrap_servers == "flag:9092"


def test_env_and_file_merge_field_by_field_inside_a_tenant(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text('[tenants.acme-capital]\nreviewers = ["ann"]\nreview_ticket_limit_eur = 5\n')
    settings = load_settings(config, environ={
        "ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEW_SIGNING_KEY": SIGNING_KEY,
        "ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEW_TICKET_LIMIT_EUR": "9"})
    tenant = settings.tenants["acme-capital"]
    assert tenant.reviewers == ("ann",) and tenant.review_ticket_limit_eur == 9
    assert tenant.review_signing_key.get_secret_value() == SIGNING_KEY


def test_a_secret_from_a_file_variable(tmp_path: Path) -> None:
    secret = tmp_path / "crm_token"
    secret.write_text("0042-from-a-docker-secret\n")  # the newline is no part of it
    key = tmp_path / "key"
    key.write_text("1234567890" * 4)  # digits: read as JSON it would become a number
    settings = load_settings(environ={
        "ESG_LEADS_CRM__TOKEN_FILE": str(secret),
        "ESG_LEADS_KAFKA__SECRETS__SASL_PASSWORD_FILE": str(key),
        "ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEW_SIGNING_KEY_FILE": str(key)})
    assert settings.crm.token.get_secret_value() == "0042-from-a-docker-secret"
    assert settings.kafka.client_config()["sasl.password"] == "1234567890" * 4
    assert settings.tenants["acme-capital"].review_signing_key.get_secret_value() == "1234567890" * 4


@pytest.mark.parametrize("problem", ["missing", "directory", "both"])
def test_a_bad_file_variable_is_one_line_and_exit_2(tmp_path: Path, problem: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESG_LEADS_")}
    target = {"missing": str(tmp_path / "nope"), "directory": str(tmp_path)}.get(problem)
    if problem == "both":
        (tmp_path / "token").write_text(CRM_TOKEN)
        env |= {"ESG_LEADS_CRM__TOKEN": CRM_TOKEN, "ESG_LEADS_CRM__TOKEN_FILE": str(tmp_path / "token")}
    else:
        env["ESG_LEADS_CRM__TOKEN_FILE"] = target
    done = zygote.run([ESG_LEADS, "config"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    expected = {"missing": "cannot read", "directory": "cannot read",
                "both": "both ESG_LEADS_CRM__TOKEN and ESG_LEADS_CRM__TOKEN_FILE are set"}[problem]
    assert line.startswith("esg-leads config: error: ") and expected in line
    assert "ESG_LEADS_CRM__TOKEN_FILE" in line  # names the variable to fix
    assert CRM_TOKEN not in done.stderr


def test_show_origin_names_every_layer_and_masks_secrets(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(CRM_TOKEN)
    config = secret_config(tmp_path)
    config.write_text(config.read_text() + "[metrics]\nhost = \"0.0.0.0\"\n")
    env = {**env_with_secrets(), "ESG_LEADS_SCORING__ENSEMBLE_SIZE": "16",
           "ESG_LEADS_WEBHOOKS__HOST": "10.0.0.1"}
    done = zygote.run([ESG_LEADS, "config", "--config", str(config), "--show-origin",
                           "--metrics-port", "9464"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert_no_secret(done.stdout + done.stderr, "esg-leads config --show-origin")
    rows = dict(reversed(line.split("\t", 1)) for line in done.stdout.splitlines())
    assert rows["metrics.port = 9464"] == "flag"
    assert rows["scoring.ensemble_size = 16"] == "env:ESG_LEADS_SCORING__ENSEMBLE_SIZE"
    assert rows['metrics.host = "0.0.0.0"'] == f"file:{config}"
    assert rows['kafka.client."sasl.password" = "***"'] == f"file:{config}"
    assert rows['contact_hash_salt = "***"'] == "env:ESG_LEADS_CONTACT_HASH_SALT"
    assert rows['windows.shards_per_tenant = 16'] == "default"
    assert rows['webhooks.host = "10.0.0.1"'] == "env:ESG_LEADS_WEBHOOKS__HOST"


def test_a_watched_feature_that_does_not_exist_is_refused_by_name() -> None:
    """A typo in a drift watch list would watch nothing, silently: it is a setting error."""
    for key in ("features", "window_features"):
        with pytest.raises(ConfigError, match=f"scoring.drift.{key}: no feature named "
                                              "'esg_content_lfit'"):
            load_settings(overrides={"scoring": {"drift": {key: ["esg_content_lift",
                                                                 "esg_content_lfit"]}}})
    load_settings(overrides={"scoring": {"drift": {"window_features": ["esg_content_lift"]}}})


def test_the_crm_field_map_takes_the_lead_key_and_refuses_a_typo_of_it() -> None:
    """``lead_key`` (``<tenant>/<investor_id>``) is the CRM's external id in a CRM shared
    by tenants; a field the handoff does not have is still a setting error."""
    crm = load_settings(overrides={"crm": {"field_map": {
        "lead_key": "External_Id__c", "tenant": "Tenant__c"}}}).crm
    assert crm.field_map == {"lead_key": "External_Id__c", "tenant": "Tenant__c"}
    with pytest.raises(ConfigError, match=r"unknown handoff field\(s\) \['lead_id'\]"):
        load_settings(overrides={"crm": {"field_map": {"lead_id": "External_Id__c"}}})
    # The default body names the tenant (the request path does too).
    assert {"tenant", "investor_id"} <= set(load_settings().crm.field_map)
