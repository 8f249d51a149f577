"""Who may erase an investor: signed erasure requests, per tenant.

An ``investor.erasure`` destroys the investor's key at once (crypto-shredding,
:mod:`operators.erasure`): irreversible, and a forged one would silently wipe a
firm's lead. A tenant with an ``erasure_signing_key`` accepts only requests signed with
it; everything else is dead-lettered as ``unauthorized`` before any key is touched. A
tenant without one accepts unsigned requests, as before (``esg-leads run`` warns at
start-up: set a key once the privacy desk can sign).

The signature is HMAC-SHA256 over the compact JSON object (keys sorted, no spaces,
UTF-8) of ``v`` (1), ``kind`` (``"erasure"``: a review decision's signature can never
pass as an erasure's), ``tenant``, ``event_id``, ``event_time`` (UTC,
``YYYY-MM-DDTHH:MM:SS.ffffffZ``) and ``investor_id``, carried as ``sha256=<64 hex>`` in
the request's ``signature`` field, as review decisions are (:mod:`operators.review_auth`).

>>> from datetime import datetime, timezone
>>> fields = dict(tenant="acme", event_id="e-1", investor_id="inv-1",
...               event_time=datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
>>> canonical_bytes(**fields).decode()
'{"event_id":"e-1","event_time":"2026-03-02T10:00:00.000000Z","investor_id":"inv-1","kind":"erasure","tenant":"acme","v":1}'
>>> signature = sign(b"k" * 32, **fields)
>>> verify(b"k" * 32, signature, **fields), verify(b"k" * 32, signature, **{**fields, "investor_id": "inv-2"})
(True, False)
"""

from __future__ import annotations

from datetime import datetime

import orjson

from esg_leads.operators.review_auth import mac, mac_matches, utc_text
from esg_leads.schemas.settings import TenantSettings

FORM_VERSION = 1


def canonical_bytes(*, tenant: str, event_id: str, event_time: datetime,
                    investor_id: str) -> bytes:
    """The bytes an erasure request's signature covers."""
    return orjson.dumps({"v": FORM_VERSION, "kind": "erasure", "tenant": str(tenant),
                         "event_id": str(event_id), "event_time": utc_text(event_time),
                         "investor_id": str(investor_id)}, option=orjson.OPT_SORT_KEYS)


def sign(key: str | bytes, **fields) -> str:
    return mac(key, canonical_bytes(**fields))


def verify(key: str | bytes, signature: str | None, **fields) -> bool:
    """Whether ``signature`` signs this request under ``key`` (constant-time compare)."""
    return mac_matches(key, signature, canonical_bytes(**fields))


def request_fields(request: object) -> dict:
    return {name: getattr(request, name)
            for name in ("tenant", "event_id", "event_time", "investor_id")}


def refusal(request: object, tenant: TenantSettings | None) -> str | None:
    """Why an erasure request must not be acted on, or ``None`` when it may. The reason
    never names the expected signature or the key."""
    if tenant is None or tenant.erasure_signing_key is None:
        return None  # unknown tenants are dead-lettered elsewhere; no key: unsigned accepted
    signature = getattr(request, "signature", None)
    if signature is None:
        return f"tenant {request.tenant!r} accepts only signed erasure requests"  # type: ignore[attr-defined]
    if not verify(tenant.erasure_signing_key.get_secret_value(), signature,
                  **request_fields(request)):
        return "erasure request signature does not verify"
    return None
