"""Effective settings, layered by pydantic-settings: defaults < the ``--config`` TOML file <
``ESG_LEADS_*`` environment < command-line flags.

The environment wins over the file, as 12-factor deployments expect: the file baked into
an image or a ConfigMap holds the shared values, a deployment's environment overrides
them, and a flag overrides both for one invocation.

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
esg_leads.flows.config.ConfigError: invalid setting windows.shards_per_tenant: Input should be greater than or equal to 1

A variable ending in ``_FILE`` names a file holding the value (Docker and Kubernetes
secrets): ``ESG_LEADS_CRM__TOKEN_FILE=/run/secrets/crm_token`` sets ``crm.token`` to the
file's content, without its final newline.

>>> load_settings(environ={"ESG_LEADS_CRM__TOKEN_FILE": "/no/such/file"})
Traceback (most recent call last):
...
esg_leads.flows.config.ConfigError: ESG_LEADS_CRM__TOKEN_FILE: cannot read /no/such/file: No such file or directory
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from esg_leads.schemas.secrets import Scrubber, is_secret_name, redact, secret_values
from esg_leads.schemas.settings import Settings

ENV_PREFIX = "ESG_LEADS_"
#: ``ESG_LEADS_<PATH>_FILE``: the value of ``<PATH>`` is the named file's content.
FILE_SUFFIX = "_FILE"
#: The layers, lowest first; ``esg-leads config --show-origin`` names them.
LAYERS = ("default", "file", "env", "flag")


class ConfigError(ValueError):
    """The effective configuration is invalid; the message names the field."""


#: Settings read from the environment as the string they are, never as JSON: secrets,
#: which may look like numbers ("0042", "12345...") and must not lose a digit or a zero.
#: Tenant ids keep their ``-`` (``ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEW_SIGNING_KEY``).
_STRING_LEAVES = frozenset({"contact_hash_salt", "review_signing_key"})

Path_ = tuple[str, ...]


def _path_of(name: str) -> list[str]:
    path = name[len(ENV_PREFIX):].lower().split("__")
    if path[:2] in (["kafka", "client"], ["kafka", "secrets"]) and len(path) == 3:
        # librdkafka keys are dotted, and a shell variable name cannot hold a dot:
        # ESG_LEADS_KAFKA__SECRETS__SASL_PASSWORD names ``sasl.password``.
        path[2] = path[2].replace("_", ".")
    return path


def _parse(path: list[str], raw: str) -> Any:
    if (path[:2] == ["kafka", "secrets"] or path[-1] in _STRING_LEAVES
            or is_secret_name(path[-1])):
        return raw  # a secret stays the string it is, even when it looks like a number
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _read_secret_file(name: str, file: str) -> str:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{name}: cannot read {file}: {reason}") from None
    # Secret files usually end with a newline (``echo token > file``): it is no part of it.
    return text[:-1] if text.endswith("\n") else text


def _from_environ(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Path_, str]]:
    """The environment layer as a tree, and the variable that set each leaf."""
    tree: dict[str, Any] = {}
    names: dict[Path_, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        if name.endswith(FILE_SUFFIX) and len(name) > len(ENV_PREFIX) + len(FILE_SUFFIX):
            target = name[: -len(FILE_SUFFIX)]
            if target in environ:
                raise ConfigError(f"both {target} and {name} are set: keep one")
            path = _path_of(target)
            value = _parse(path, _read_secret_file(name, raw))
        else:
            path = _path_of(name)
            value = _parse(path, raw)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # ESG_LEADS_KAFKA=1 and ESG_LEADS_KAFKA__X=2
                raise ConfigError(f"{name} sets a field inside {'.'.join(path[:-1])}, which "
                                  "another variable sets whole")
            node = child
        node[path[-1]] = value
        names[tuple(path)] = name
    return tree, names


@dataclass
class _Load:
    """The inputs of one :func:`load_layers` call, and what each layer gave."""

    config_file: Path | None
    environ: Mapping[str, str]
    overrides: Mapping[str, Any]
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_names: dict[Path_, str] = field(default_factory=dict)


_LOAD: ContextVar[_Load] = ContextVar("esg_leads_settings_load")


class _Layer(PydanticBaseSettingsSource):
    """One layer as a pydantic-settings source, remembering what it gave (for origins)."""

    def __init__(self, settings_cls: type[BaseSettings], name: str, data: dict[str, Any]):
        super().__init__(settings_cls)
        self.name, self.data = name, data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        _LOAD.get().layers[self.name] = self.data
        return self.data


def _toml(settings_cls: type[BaseSettings], path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a file")
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)()
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None


class _LayeredSettings(Settings, BaseSettings):
    """:class:`Settings` built from the layers; only :func:`load_layers` creates it."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   env_settings: Any, dotenv_settings: Any,
                                   file_secret_settings: Any) -> tuple[Any, ...]:
        load = _LOAD.get()
        env, load.env_names = _from_environ(load.environ)
        # Highest priority first: flags > environment > file (> defaults, added by
        # pydantic-settings). pydantic-settings merges them deeply, field by field.
        return (_Layer(settings_cls, "flag", dict(load.overrides)),
                _Layer(settings_cls, "env", env),
                _Layer(settings_cls, "file", _toml(settings_cls, load.config_file)))


def _describe(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid setting {where}: {first['msg']}"


@dataclass(frozen=True)
class Loaded:
    """Effective settings with what each layer set (for ``config --show-origin``)."""

    settings: Settings
    layers: Mapping[str, Mapping[str, Any]]
    config_file: Path | None
    env_names: Mapping[Path_, str]


def load_layers(config_file: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> Loaded:
    """Build the effective settings and keep each layer; raise :class:`ConfigError`."""
    load = _Load(Path(config_file) if config_file is not None else None,
                 os.environ if environ is None else environ, overrides or {})
    token = _LOAD.set(load)
    try:
        layered = _LayeredSettings()
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    finally:
        _LOAD.reset(token)
    # The rest of the code sees a plain Settings (already validated: no second pass).
    settings = Settings.model_construct(
        _fields_set=set(layered.model_fields_set),
        **{name: getattr(layered, name) for name in Settings.model_fields})
    _check_feature_names(settings)
    return Loaded(settings, load.layers, load.config_file, load.env_names)


def _check_feature_names(settings: Settings) -> None:
    """Settings that name features must name real ones: a typo in a watched feature would
    otherwise silently watch nothing (the feature set is defined in operators/, above the
    schemas that hold the settings, so the check is here)."""
    from esg_leads.operators.features import FEATURE_NAMES

    drift = settings.scoring.drift
    for key, names in (("scoring.drift.features", drift.features),
                       ("scoring.drift.window_features", drift.window_features)):
        unknown = [name for name in names if name not in FEATURE_NAMES]
        if unknown:
            raise ConfigError(f"invalid setting {key}: no feature named "
                              f"{', '.join(map(repr, unknown))} (features: "
                              f"{', '.join(FEATURE_NAMES)})")


def load_settings(config_file: str | Path | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build the effective settings; raise :class:`ConfigError` naming a bad field."""
    return load_layers(config_file, overrides, environ).settings


def _leaves(data: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _leaves(value, (*path, str(key)))
    else:
        yield path, data


def _set_in(layer: Mapping[str, Any], path: Path_) -> bool:
    """Whether ``layer`` set ``path`` (or a value containing it: ``tenants`` whole)."""
    node: Any = layer
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, Mapping):
            return True
    return True


def _key(path: Path_) -> str:
    return ".".join(p if p.replace("_", "").replace("-", "").isalnum() else json.dumps(p)
                    for p in path)


def origins(loaded: Loaded) -> list[tuple[str, Any, str]]:
    """Every setting as ``(key, shown value, origin)``; secrets masked.

    The origin is the highest layer that set it: ``flag``, ``env:VARIABLE``,
    ``file:PATH`` or ``default``.

    >>> loaded = load_layers(overrides={"metrics": {"port": 9464}},
    ...                      environ={"ESG_LEADS_CRM__TOKEN": "t0k3n-value"})
    >>> rows = {key: (value, origin) for key, value, origin in origins(loaded)}
    >>> rows["metrics.port"], rows["crm.token"], rows["metrics.host"]
    ((9464, 'flag'), ('***', 'env:ESG_LEADS_CRM__TOKEN'), ('127.0.0.1', 'default'))
    """
    rows = []
    for path, value in _leaves(masked(loaded.settings)):
        origin = "default"
        for layer in reversed(LAYERS[1:]):
            if _set_in(loaded.layers.get(layer, {}), path):
                origin = layer
                break
        if origin == "file":
            origin = f"file:{loaded.config_file}"
        elif origin == "env":
            name = next((n for p, n in loaded.env_names.items() if path[:len(p)] == p), None)
            origin = f"env:{name}" if name else "env"
        rows.append((_key(path), value, origin))
    return rows


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
