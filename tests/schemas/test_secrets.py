"""The one rule of what is secret, and that a secret never shows (issue 14, finding 7)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from esg_leads.flows.config import load_settings, masked, scrubber
from esg_leads.schemas.secrets import MASK, Scrubber, is_secret_name, mask_url_userinfo, redact
from esg_leads.schemas.settings import Settings

#: librdkafka's secret settings, and the spellings other clients (CRM, schema registry) use.
SECRET_NAMES = [
    "sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem",
    "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "sasl.jaas.config",
    "basic.auth.user.info", "ssl_truststore_password", "review_signing_key", "api_key",
    "apiKey", "clientSecret", "ACCESS_TOKEN", "refresh-token", "private_key", "privateKey",
    "credentials", "db_passwd", "passphrase", "contact_hash_salt", "signing.key",
]
PUBLIC_NAMES = [
    "security.protocol", "sasl.mechanism", "sasl.username", "ssl.key.location",
    "ssl.keystore.location", "ssl.ca.location", "ssl.certificate.pem", "client.id",
    "sasl.oauthbearer.token.endpoint.url", "sasl.oauthbearer.client.id", "bootstrap_servers",
    "statistics.interval.ms", "review_ticket_limit_eur", "reviewers", "group.id",
    "enable.ssl.certificate.verification", "topics", "monkey.business",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_names(name: str) -> None:
    assert not is_secret_name(name)


def test_the_default_settings_lose_nothing_but_their_secrets() -> None:
    """The rule must not hide ordinary settings: only the salt is masked by default."""
    plain = json.loads(json.dumps(Settings().model_dump(mode="python"), default=str))
    shown = masked(Settings())
    assert shown.pop("contact_hash_salt") == MASK
    plain.pop("contact_hash_salt")
    assert shown == plain


def test_url_credentials_are_masked_wherever_they_stand() -> None:
    assert mask_url_userinfo("https://user:pa@ss@crm.example/x?y=1") == \
        "https://***@crm.example/x?y=1"
    assert mask_url_userinfo("https://ghp_token@host") == "https://***@host"
    assert mask_url_userinfo("mail me at a@b.c, see https://host/x") == \
        "mail me at a@b.c, see https://host/x"
    assert redact({"endpoint": ["https://u:p@h1", "https://h2"]}) == \
        {"endpoint": ["https://***@h1", "https://h2"]}


def test_a_tenant_named_like_a_secret_keeps_its_settings_visible() -> None:
    s = load_settings(overrides={"tenants": {"token-fund": {"reviewers": ["ann"],
                                                            "review_signing_key": "k3y-value" * 4}}},
                      environ={})
    shown = masked(s)["tenants"]["token-fund"]
    assert shown["reviewers"] == ["ann"] and shown["review_signing_key"] == MASK


def test_scrubber_masks_known_values_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    s = load_settings(overrides={"kafka": {"client": {"sasl.password": "pw-in-a-log"}}}, environ={})
    logger = logging.getLogger("test.secrets")
    handler = logging.StreamHandler()
    records: list[str] = []
    handler.emit = lambda r: records.append(handler.format(r))  # type: ignore[method-assign]
    handler.addFilter(scrubber(s))
    logger.addHandler(handler)
    try:
        logger.error("auth failed with %s at %s", "pw-in-a-log", "kafka://bob:other@h:1")
        try:
            raise RuntimeError("password pw-in-a-log refused")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "pw-in-a-log" not in text and "other" not in text
    assert "auth failed with *** at kafka://***@h:1" in text and "RuntimeError" in text


def test_short_values_are_not_scrubbed_from_free_text() -> None:
    assert Scrubber({"1", "abc"})("1 abc 10") == "1 abc 10"


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_SEP = st.sampled_from([".", "_", "-"])
_SECRET_WORD = st.sampled_from(["password", "passwd", "secret", "token", "key", "credentials",
                                "jaas", "privatekey", "apikey", "passphrase", "salt"])


@st.composite
def secret_looking_names(draw: st.DrawFn) -> str:
    before = draw(st.lists(_WORD, max_size=3))
    after = draw(st.lists(_WORD.filter(lambda w: not w.isdigit()), max_size=2))
    words = [*before, draw(_SECRET_WORD), *after]
    sep = draw(_SEP)
    name = sep.join(words)
    return name.upper() if draw(st.booleans()) else name


@settings(max_examples=200, deadline=None)
@given(name=secret_looking_names(),
       value=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                            exclude_characters='\\"'), min_size=0, max_size=20))
def test_random_secret_names_under_kafka_client_never_leak(name: str, value: str) -> None:
    """Whatever a secret is called, if its name says so it never shows: in ``config``'s
    output, in the start line, or in a log line that happens to quote it. (A last word
    such as ``location`` or ``url`` says the value is not the secret: see PUBLIC_NAMES.)"""
    from esg_leads.flows.run import startup_line

    if not is_secret_name(name):  # a last word that names a place ("...key.location")
        return
    marker = f"S3CR3T<{value}>"
    s = load_settings(overrides={"kafka": {"client": {name: marker}}}, environ={})
    assert s.kafka.client_config()[name] == marker  # the client still gets it
    shown = json.dumps(masked(s))
    assert marker not in shown and "S3CR3T" not in shown
    assert marker not in startup_line(s, 1, None)
    assert marker not in scrubber(s)(f"error: {name}={marker} refused")


def test_secret_values_kept_as_typed_from_the_environment() -> None:
    s = load_settings(environ={"ESG_LEADS_KAFKA__CLIENT__SASL_PASSWORD": "1234",
                               "ESG_LEADS_KAFKA__CLIENT__SSL_KEY_PEM": "true"})
    assert s.kafka.client_config()["sasl.password"] == "1234"
    assert s.kafka.client_config()["ssl.key.pem"] == "true"
    assert isinstance(Settings().contact_hash_salt, SecretStr)
