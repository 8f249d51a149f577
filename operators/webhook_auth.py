"""Who sent an inbound webhook: the signature over timestamp and raw body.

Canonical form
--------------
The sender names its tenant in ``X-Tenant``, the time of sending in ``X-Timestamp``
(Unix seconds, an integer) and signs with HMAC-SHA256, keyed with the UTF-8 bytes of
the tenant's ``webhook_secret``, the bytes ``<X-Timestamp> "." <raw body>`` (Stripe's
form). ``X-Signature`` is ``sha256=`` and the 64 lower-case hex digits of the MAC.
Signing the timestamp makes a captured request useless once it is older than
``webhooks.tolerance`` (5 minutes); within it, a replay carries the same ``event_id``,
which the flow's dedup drops. The body's ``tenant`` must be the header's: one tenant's
secret never vouches for another's events.

>>> sig = sign(b"k" * 32, 1767225600, b'{"a":1}')
>>> verify(b"k" * 32, sig, "1767225600", b'{"a":1}', now=1767225700, tolerance=300)
'ok'
>>> verify(b"k" * 32, sig, "1767225600", b'{"a":2}', now=1767225700, tolerance=300)
'bad signature'
>>> verify(b"k" * 32, sig, "1767225600", b'{"a":1}', now=1767226000, tolerance=300)
'stale timestamp'
"""

from __future__ import annotations

import hashlib
import hmac


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(key: bytes, signature: str | None, timestamp: str | None, body: bytes, *,
           now: float, tolerance: float) -> str:
    """``'ok'`` or why not (a short reason, safe to return to the sender)."""
    if not signature or not timestamp:
        return "missing signature or timestamp"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "bad timestamp"
    if abs(now - int(timestamp)) > tolerance:
        return "stale timestamp"
    if not hmac.compare_digest(sign(key, int(timestamp), body), signature.strip()):
        return "bad signature"
    return "ok"
