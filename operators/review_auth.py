"""Who may decide a review case: signed review decisions and the per-tenant allow-list.

A ``lead.review-decisions`` message can hand a lead to sales, so the flow accepts one
only when it is *authentic* (signed with the tenant's ``review_signing_key``) and
*authorised* (its ``reviewer`` is on the tenant's ``reviewers`` list). Everything
else is dead-lettered as ``unauthorized`` before the flow looks at any case, so a
sender without the key learns nothing about which cases exist.

Canonical form
--------------
The signature is HMAC-SHA256, keyed with the UTF-8 bytes of the tenant's
``review_signing_key``, over the *canonical bytes* of the decision: the compact JSON
object (no spaces, keys sorted, UTF-8, no trailing newline) of exactly these members:

- ``v``: ``1``, the version of this form (a future form changes it);
- ``tenant``, ``event_id``, ``investor_id``, ``case_id``, ``verdict``, ``reviewer``:
  the event's fields, as strings;
- ``event_time``: the instant in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six
  fraction digits; an event sent with another offset or fewer digits signs the same
  instant; digits below the microsecond are dropped, as the flow drops them);
- ``note``: the note, or ``null`` when there is none.

The event carries the signature in its ``signature`` field as ``sha256=`` followed by
the 64 lower-case hex digits of the MAC (the form of GitHub's and Stripe's webhook
signatures). ``source`` is not signed: it is a label, not part of the decision.

Because ``event_id`` is signed, a captured decision replayed under a new ``event_id``
fails verification, and replayed as is, it is a ``duplicate`` (dedup by ``event_id``).
Because ``tenant`` is signed as well as keyed, a decision signed for one tenant is
refused by every other, even one that (wrongly) shares its key.

>>> from datetime import datetime, timezone
>>> fields = dict(tenant="acme", event_id="d-1",
...               event_time=datetime(2026, 3, 2, 10, tzinfo=timezone.utc),
...               investor_id="inv-1", case_id="case:acme/inv-1:1", verdict="approve",
...               reviewer="rev-7", note=None)
>>> text = canonical_bytes(**fields).decode()
>>> print(text[:91]); print(text[91:])
{"case_id":"case:acme/inv-1:1","event_id":"d-1","event_time":"2026-03-02T10:00:00.000000Z",
"investor_id":"inv-1","note":null,"reviewer":"rev-7","tenant":"acme","v":1,"verdict":"approve"}
>>> signature = sign(b"k" * 32, **fields)
>>> signature
'sha256=4f68f5d750aa44c39262baad4d6f0c1bd1809f7a8538e643737529791157c616'
>>> verify(b"k" * 32, signature, **fields), verify(b"K" * 32, signature, **fields)
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum

import orjson

from esg_leads.schemas.settings import TenantSettings

AGENT_VERSION = "review-auth/1"
FORM_VERSION = 1
PREFIX = "sha256="
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


def utc_text(when: datetime) -> str:
    """An aware instant as the canonical UTC text (microseconds, ``Z``).

    >>> from datetime import timedelta
    >>> utc_text(datetime(2026, 3, 2, 11, 30, tzinfo=timezone(timedelta(hours=1))))
    '2026-03-02T10:30:00.000000Z'
    """
    if when.tzinfo is None:
        raise ValueError("event_time must carry a timezone")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: object) -> str:
    # Enum members (a parsed verdict) sign as their value, never as "ReviewVerdict.X".
    return value.value if isinstance(value, Enum) else str(value)


def canonical_bytes(*, tenant: str, event_id: str, event_time: datetime, investor_id: str,
                    case_id: str, verdict: str, reviewer: str, note: str | None) -> bytes:
    """The bytes a review decision's signature covers (see the module docstring)."""
    return orjson.dumps({
        "v": FORM_VERSION,
        "tenant": _text(tenant),
        "event_id": _text(event_id),
        "event_time": utc_text(event_time),
        "investor_id": _text(investor_id),
        "case_id": _text(case_id),
        "verdict": _text(verdict),
        "reviewer": _text(reviewer),
        "note": None if note is None else _text(note),
    }, option=orjson.OPT_SORT_KEYS)


def _key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def mac(key: str | bytes, payload: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``payload`` under ``key``, in the signature
    form every signed input uses (review decisions, erasures, model commands)."""
    return PREFIX + hmac.new(_key_bytes(key), payload, hashlib.sha256).hexdigest()


def mac_matches(key: str | bytes, signature: str | None, payload: bytes) -> bool:
    """Whether ``signature`` is ``payload``'s :func:`mac` under ``key`` (constant time)."""
    if signature is None or not _SIGNATURE.fullmatch(signature):
        return False
    return hmac.compare_digest(signature.encode(), mac(key, payload).encode())


def sign(key: str | bytes, **fields) -> str:
    """``sha256=<hex>``: the signature of a decision with these fields."""
    return mac(key, canonical_bytes(**fields))


def verify(key: str | bytes, signature: str | None, **fields) -> bool:
    """Whether ``signature`` is this decision's, under ``key`` (constant-time compare)."""
    return mac_matches(key, signature, canonical_bytes(**fields))


def decision_fields(decision: object) -> dict:
    """The signed fields of a parsed :class:`~schemas.inputs.ReviewDecision`."""
    return {name: getattr(decision, name) for name in
            ("tenant", "event_id", "event_time", "investor_id", "case_id", "verdict",
             "reviewer", "note")}


def sign_decision(key: str | bytes, decision: object) -> str:
    """The signature of a parsed decision (for producers and tests)."""
    return sign(key, **decision_fields(decision))


def signature_refusal(message: object, tenant: TenantSettings | None, *, key_name: str,
                      what: str, payload: Callable[[], bytes]) -> str | None:
    """Why a signed ``message`` (a ``what``: "review decision", "model command") fails
    its tenant's ``key_name`` check over the bytes ``payload()`` gives, or ``None`` when
    it passes. Shared by every signed input, so that they refuse alike, in the same words."""
    name = getattr(message, "tenant", "?")
    if tenant is None:
        return f"tenant {name!r} is not configured: no {what} is accepted"
    key = getattr(tenant, key_name)
    if key is None:
        return f"tenant {name!r} has no {key_name}: no {what} is accepted until one is configured"
    signature = getattr(message, "signature", None)
    noun = what.rsplit(" ", 1)[-1]
    if signature is None:
        return f"{noun} is not signed (no signature field)"
    if not _SIGNATURE.fullmatch(signature):
        return "signature is not of the form sha256=<64 lower-case hex digits>"
    if not mac_matches(key.get_secret_value(), signature, payload()):
        return (f"signature does not match the {noun} under tenant {name!r}'s "
                f"{key_name} (wrong key, or a signed field was changed)")
    return None


def refusal(decision: object, tenant: TenantSettings | None) -> str | None:
    """Why ``decision`` must not be acted on, or ``None`` when it may.

    The reason is for the dead letter and the audit trail: it names what is wrong,
    never the key or the signature that was expected.
    """
    refused = signature_refusal(decision, tenant, key_name="review_signing_key",
                                what="review decision",
                                payload=lambda: canonical_bytes(**decision_fields(decision)))
    if refused is not None:
        return refused
    name = getattr(decision, "tenant", "?")
    reviewer = getattr(decision, "reviewer", None)
    if reviewer not in tenant.reviewers:
        return f"reviewer {reviewer!r} is not on the reviewers list of tenant {name!r}"
    return None
