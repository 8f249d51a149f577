"""What counts as a secret in the settings, and how it is kept out of every output.

One rule, used by ``esg-leads config``, the ``run`` start line, logs and summaries:
a value is secret when it is a :class:`~pydantic.SecretStr`, or when the name it is
given under looks like a secret's (``sasl.password``, ``ssl.key.pem``,
``sasl.oauthbearer.client.secret``, ``review_signing_key``, ``api_token``,
``basic.auth.user.info``, ``sasl.jaas.config`` ...). Names are compared word by word
(``.``, ``_``, ``-`` and camelCase split them), so ``clientSecret`` and
``CLIENT_SECRET`` are the same name. A name whose last word says it holds only where
a secret lives or how it is used (``ssl.key.location``, ``...token.endpoint.url``,
``encryption_key_id``) is not a secret. Free text also loses URL credentials
(``https://user:pass@host`` -> ``https://***@host``).

>>> is_secret_name("sasl.password"), is_secret_name("ssl.key.pem"), is_secret_name("clientSecret")
(True, True, True)
>>> is_secret_name("security.protocol"), is_secret_name("ssl.key.location")
(False, False)
>>> redact({"client": {"sasl.username": "bob", "sasl.password": "hunter2"}})
{'client': {'sasl.username': 'bob', 'sasl.password': '***'}}
>>> redact({"field_map": {"idempotency_key": "External_Key__c"}})  # field names, not secrets
{'field_map': {'idempotency_key': 'External_Key__c'}}
>>> mask_url_userinfo("crm at https://svc:s3cr3t@crm.example.com/api")
'crm at https://***@crm.example.com/api'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

#: What a secret is shown as.
MASK = "***"

#: Words that make a name secret wherever they stand in it.
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "tokens",
    "credential", "credentials", "creds", "jaas", "salt", "key", "keys", "privatekey",
    "apikey", "cookie", "bearer", "signature", "pin",
})
#: Run-together spellings (``dbpassword``, ``basic.auth.user.info``, ``apiKey``): looked
#: for in the name with its separators removed.
_SECRET_FRAGMENTS = ("password", "passwd", "passphrase", "secret", "token", "credential",
                     "jaas", "privatekey", "apikey", "signingkey", "accesskey", "userinfo",
                     "oauthbearerconfig", "oauthbearerextensions")
#: A last word that says the value is where or how a secret is used, not the secret.
_NOT_SECRET_TAILS = frozenset({
    "location", "path", "file", "dir", "directory", "url", "uri", "endpoint", "id", "ids",
    "type", "name", "names", "algorithm", "algorithms", "mechanism", "mechanisms", "method",
    "ms", "seconds", "interval", "enable", "enabled", "size", "bytes", "length", "format",
    "limit", "cmd", "command", "provider",
})
#: Mappings whose keys are names of *fields*, not of settings (``crm.field_map`` maps
#: ``idempotency_key`` to a CRM property name): their values are judged as plain text.
_NAME_MAPS = frozenset({"field_map", "topics"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
#: ``scheme://userinfo@``: userinfo may itself hold ``@`` or ``:`` typed carelessly, so
#: everything up to the last ``@`` before the path is masked.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#]*@")
_USERINFO = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://(?P<userinfo>[^\s/?#]*)@")
#: Secret values shorter than this are not scrubbed out of free text: "1" or "true"
#: would otherwise be masked in every number and flag of a log line.
MIN_SCRUB_LENGTH = 4


def _words(name: str) -> list[str]:
    return [w.lower() for w in _SEPARATORS.split(_CAMEL.sub("_", name)) if w]


def is_secret_name(name: str) -> bool:
    """Whether a setting called ``name`` (one key, dotted or not) holds a secret."""
    words = _words(name)
    if not words or words[-1] in _NOT_SECRET_TAILS:
        return False
    squashed = "".join(words)
    return (any(w in _SECRET_WORDS for w in words)
            or any(f in squashed for f in _SECRET_FRAGMENTS))


def is_secret(name: str, value: Any) -> bool:
    """Whether ``value``, given under the key ``name``, is a secret: the one rule."""
    if isinstance(value, SecretStr):
        return True
    # ``None`` is no secret, and shows that none is set.
    return value is not None and not isinstance(value, (Mapping, list, tuple)) \
        and is_secret_name(name)


def mask_url_userinfo(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


def redact(data: Any, name: str = "") -> Any:
    """Plain data (``model_dump()`` output) with every secret replaced by ``***``.

    Mappings keep their keys (a tenant named ``token-fund`` is not a secret; what it
    holds is judged by its own keys); a list under a secret name loses every item.
    """
    if is_secret(name, data):
        return MASK
    if isinstance(data, Mapping):
        if name in _NAME_MAPS:
            return {k: redact(v) for k, v in data.items()}
        return {k: redact(v, str(k)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact(v, name) for v in data]  # items are judged by the list's name
    if isinstance(data, str):
        return mask_url_userinfo(data)
    return data


def secret_values(data: Any, name: str = "") -> set[str]:
    """The clear text of every secret in plain data, to scrub out of free text."""
    found: set[str] = set()
    if isinstance(data, SecretStr):
        found.add(data.get_secret_value())
    elif isinstance(data, Mapping):
        for k, v in data.items():
            found |= secret_values(v, "" if name in _NAME_MAPS else str(k))
    elif isinstance(data, (list, tuple)):
        for v in data:
            found |= secret_values(v, name)
    elif is_secret(name, data):
        found.add(str(data))
    elif isinstance(data, str):
        for match in _USERINFO.finditer(data):
            found |= {match["userinfo"], match["userinfo"].partition(":")[2]}
    return found


class Scrubber(logging.Filter):
    """Replaces known secret values, and URL credentials, in free text.

    Also a :class:`logging.Filter`: put it on a handler and no record that handler
    writes carries a secret, whichever library logged it.

    >>> scrub = Scrubber({"hunter2"})
    >>> scrub("login with hunter2 at kafka://u:hunter2@broker:9093")
    'login with *** at kafka://***@broker:9093'
    """

    def __init__(self, values: Iterable[str]) -> None:
        super().__init__()
        # Longest first: a secret that contains another is masked whole.
        kept = sorted({v for v in values if len(v) >= MIN_SCRUB_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, kept))) if kept else None

    def __call__(self, text: str) -> str:
        text = mask_url_userinfo(text)
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_text is None and record.exc_info[0] is not None:
            record.exc_text = self(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self(record.exc_text)
        return True
