"""Who may change a tenant's model: signed ``ops.control`` commands.

A model command (promote, pin, unpin, rollback) changes which model decides every
lead of a tenant, so the flow accepts one only when it is signed with the tenant's
``control_signing_key``; everything else is dead-lettered as ``unauthorized`` at parse
time, before the scoring step sees it, with a reason that never names the key or the
expected signature. A tenant without a key accepts no command at all.

The signature is HMAC-SHA256 (:func:`operators.review_auth.mac`, the same code as review
decisions and erasures) over the compact JSON object (keys sorted, no spaces, UTF-8) of
``v`` (1), ``kind`` (``"model_command"``: a review decision's or an erasure's signature
never passes as a command's), ``tenant``, ``event_id``, ``event_time`` (UTC,
``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ``action``, ``version`` (or ``null``), ``operator`` and
``note`` (or ``null``), carried as ``sha256=<64 hex>`` in the command's ``signature``.
``event_id`` is signed, so a captured command replayed under a new id fails, and
replayed as is, it is a duplicate.

>>> from datetime import datetime, timezone
>>> fields = dict(tenant="acme", event_id="c-1", action="promote", version="m-0123abcd",
...               event_time=datetime(2026, 3, 2, 10, tzinfo=timezone.utc),
...               operator="ops-1", note=None)
>>> canonical_bytes(**fields).decode()[:93]
'{"action":"promote","event_id":"c-1","event_time":"2026-03-02T10:00:00.000000Z","kind":"model'
>>> signature = sign(b"k" * 32, **fields)
>>> verify(b"k" * 32, signature, **fields), verify(b"k" * 32, signature, **{**fields, "version": "m-ffff"})
(True, False)
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import orjson

from esg_leads.operators.review_auth import mac, mac_matches, signature_refusal, utc_text
from esg_leads.schemas.settings import TenantSettings

FORM_VERSION = 1
_FIELDS = ("tenant", "event_id", "event_time", "action", "version", "operator", "note")


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.value if isinstance(value, Enum) else str(value)


def canonical_bytes(*, tenant: str, event_id: str, event_time: datetime, action: str,
                    version: str | None, operator: str, note: str | None) -> bytes:
    """The bytes a model command's signature covers."""
    return orjson.dumps({
        "v": FORM_VERSION, "kind": "model_command", "tenant": _text(tenant),
        "event_id": _text(event_id), "event_time": utc_text(event_time),
        "action": _text(action), "version": _text(version), "operator": _text(operator),
        "note": _text(note)}, option=orjson.OPT_SORT_KEYS)


def sign(key: str | bytes, **fields) -> str:
    return mac(key, canonical_bytes(**fields))


def verify(key: str | bytes, signature: str | None, **fields) -> bool:
    """Whether ``signature`` signs this command under ``key`` (constant-time compare)."""
    return mac_matches(key, signature, canonical_bytes(**fields))


def command_fields(command: object) -> dict:
    """The signed fields of a parsed :class:`~schemas.inputs.ModelCommand`."""
    return {name: getattr(command, name) for name in _FIELDS}


def sign_command(key: str | bytes, command: object) -> str:
    return sign(key, **command_fields(command))


def refusal(command: object, tenant: TenantSettings | None) -> str | None:
    """Why ``command`` must not be obeyed, or ``None`` when it may."""
    return signature_refusal(command, tenant, key_name="control_signing_key",
                             what="model command",
                             payload=lambda: canonical_bytes(**command_fields(command)))


__all__ = ["canonical_bytes", "command_fields", "refusal", "sign", "sign_command", "verify"]
