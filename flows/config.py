"""Effective settings: defaults < ``ESG_LEADS_*`` environment < config file < flags.

Environment variables name a field path with double underscores, e.g.
``ESG_LEADS_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``ESG_LEADS_SCORING__ENSEMBLE_SIZE=16``; values are read as JSON when they parse
as JSON (numbers, booleans, lists, objects) and as plain strings otherwise (secrets
and every setting whose name is a secret's, see ``schemas.secrets``, are always
strings). librdkafka keys under ``kafka.client`` and ``kafka.secrets`` take
``_`` for ``.``, since a shell variable name cannot hold a dot:

>>> s = load_settings(environ={"ESG_LEADS_KAFKA__SECRETS__SASL_PASSWORD": "0042",
...                            "ESG_LEADS_KAFKA__CLIENT__SECURITY_PROTOCOL": "SASL_SSL"})
>>> s.kafka.client_config()["sasl.password"], s.kafka.client_config()["security.protocol"]
('0042', 'SASL_SSL')

>>> load_settings(environ={"ESG_LEADS_WINDOWS__LENGTH": "7200"}).windows.length.total_seconds()
7200.0
>>> load_settings(environ={"ESG_LEADS_WINDOWS__SHARDS_PER_TENANT": "0"})
Traceback (most recent call last):
...
flows.config.ConfigError: invalid setting windows.shards_per_tenant: Input should be greater than or equal to 1
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.secrets import Scrubber, is_secret_name, redact, secret_values
from schemas.settings import Settings

ENV_PREFIX = "ESG_LEADS_"


class ConfigError(ValueError):
    """The effective configuration is invalid; the message names the field."""


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


#: Settings read from the environment as the string they are, never as JSON: secrets,
#: which may look like numbers ("0042", "12345...") and must not lose a digit or a zero.
#: Tenant ids keep their ``-`` (``ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEW_SIGNING_KEY``).
_STRING_LEAVES = frozenset({"contact_hash_salt", "review_signing_key"})


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        if path[:2] in (["kafka", "client"], ["kafka", "secrets"]) and len(path) == 3:
            # librdkafka keys are dotted, and a shell variable name cannot hold a dot:
            # ESG_LEADS_KAFKA__SECRETS__SASL_PASSWORD names ``sasl.password``.
            path[2] = path[2].replace("_", ".")
        value: Any = raw
        if (path[:2] != ["kafka", "secrets"] and path[-1] not in _STRING_LEAVES
                and not is_secret_name(path[-1])):
            try:  # a secret stays the string it is, even when it looks like a number
                value = json.loads(raw)
            except ValueError:
                pass
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _describe(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid setting {where}: {first['msg']}"


def load_settings(config_file: str | Path | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build the effective settings; raise :class:`ConfigError` naming a bad field."""
    environ = os.environ if environ is None else environ
    layers = _from_environ(environ)
    if config_file is not None:
        path = Path(config_file)
        try:
            layers = _merge(layers, tomllib.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    if overrides:
        layers = _merge(layers, overrides)
    try:
        return Settings.model_validate(layers)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced by ``'***'``.

    Secrets are what ``schemas.secrets`` says they are: every ``SecretStr`` and every
    value under a secret's name, wherever it is (``kafka.client``, tenants, ...).

    >>> s = load_settings(environ={"ESG_LEADS_KAFKA__CLIENT__SASL_PASSWORD": "1234"})
    >>> masked(s)["kafka"]["client"]
    {'sasl.password': '***'}
    >>> s.kafka.client_config()["sasl.password"]  # still a string, as typed
    '1234'
    """
    return json.loads(json.dumps(redact(settings.model_dump(mode="python")), default=str))


def scrubber(settings: Settings) -> Scrubber:
    """Scrubs the clear text of every secret of ``settings`` out of free text (logs)."""
    return Scrubber(secret_values(settings.model_dump(mode="python")))
