"""Erasure everywhere: what of an investor is personal, and how each copy of it is made unreadable.

An ``investor.erasure`` must leave nothing readable about the investor behind, also in
copies written *before* it. Each copy is handled the way its storage allows:

* **Dead letters: crypto-shredding.** ``leads.dlq`` is a log on a broker we do not
  own; nothing published there can be rewritten. So the value of every dead letter
  about an investor (any input topic keyed by investor: profiles carry name, e-mail
  and phone, review decisions a free-text note, the others behaviour) is encrypted
  with AES-256-GCM under a random key of that investor, and the erasure destroys the
  key: every copy — the broker's, a consumer's, ``dlq.parquet`` — becomes ciphertext
  nobody can open. Keys are random (never derived from a secret: a derived key could
  be derived again, so destroying it would mean nothing) and live in a key store
  (:mod:`connectors.key_vault`), not in operator state: the parse stage that makes
  most dead letters runs before any per-investor state, and bytewax keeps old
  snapshots around, where a destroyed key would live on. After the erasure no key is
  ever made again for that investor: a later dead letter about them keeps no value.
  A dead letter whose investor cannot be told (no key, no decodable body) on an
  investor topic keeps no value either: it cannot be shredded later.
* **Audit trail: rewrite.** The audit files are ours and auditors read them as plain
  Parquet: at the snapshot that writes an erasure row, the rows about that investor
  are removed from the tenant's audit files (rewritten and renamed into place); the
  erasure row itself stays, as the record that the erasure was done.
* **Outputs** (leads, review, handoff) are tombstoned and deleted from replay files,
  as before; **snapshots** hold no contact data in the first place (profiles keep a
  salted hash, see :func:`operators.investor_state.contact_ref`).

Encryption is deterministic per key (the nonce is an HMAC of the record's identity
and value, as in SIV): a dead letter re-emitted after a resume is byte-identical, so
consumers' upserts by idempotency key still hold; equal values under one key show as
equal, which reveals nothing a dead letter's identity does not. One exception: a letter
from before an erasure, re-emitted after a resume that has processed the erasure, is
sealed under a fresh throwaway key (its own is gone): other bytes, the same idempotency
key, just as unreadable.

>>> key = bytes(range(32))
>>> blob = seal(key, b'{"contact": {"name": "Jane Doe"}}', b"acme|inv-1|dlq:x")
>>> b"Jane" in blob, open_sealed(key, blob, b"acme|inv-1|dlq:x")
(False, b'{"contact": {"name": "Jane Doe"}}')
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from esg_leads.schemas.common import ENTITY_ID_PATTERN
from esg_leads.schemas.keys import KEYED_BY_INVESTOR, parse_output_key
from esg_leads.schemas.records import Position

#: Topics keyed by investor: every message on them is about one person (the inputs, and
#: ``crm.handoff``, whose records the CRM may refuse into ``crm_rejected`` dead letters).
INVESTOR_TOPICS = frozenset(("investor.profiles", "investor.engagements", "crm.outcomes",
                             "investor.erasure", "lead.review-decisions", "crm.handoff"))
#: Key bytes per investor (AES-256).
KEY_BYTES = 32
#: The audit agent whose row records an erasure; it survives the rewrite.
ERASURE_AGENT = "erasure"
_NONCE = 12
#: What an investor id can be (schemas.common.EntityId).
_INVESTOR_ID = re.compile(ENTITY_ID_PATTERN)
_VERSION = b"\x01"


class KeyStore(Protocol):
    """Random keys per (tenant, investor); see :mod:`connectors.key_vault`."""

    def key_for(self, tenant: str, investor_id: str) -> bytes | None:
        """The investor's key, made on first use; ``None`` once they are erased."""

    def destroy(self, tenant: str, investor_id: str, at: Position | None = None) -> None:
        """Forget the investor's key for good; no key is made for them again. ``at``:
        the erasure's input position."""

    def erased_at(self, tenant: str, investor_id: str) -> Position | None:
        """The earliest position the investor was erased at (``()``: unknown, before
        everything); ``None`` if they were not."""

    def existing_key(self, tenant: str, investor_id: str) -> bytes | None:
        """The key if there is one; never makes one."""


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    """``plaintext`` encrypted under ``key``, bound to ``context`` (associated data).

    The nonce is derived from key, context and plaintext (a synthetic IV): two
    different plaintexts never share a nonce under one key, and the same one gives
    the same bytes, so a re-emitted record is identical.
    """
    mac_key = hmac.digest(key, b"esg-leads nonce", hashlib.sha256)
    nonce = hmac.digest(mac_key, context + b"\x00" + plaintext, hashlib.sha256)[:_NONCE]
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_sealed(key: bytes, blob: bytes, context: bytes) -> bytes:
    """The plaintext of :func:`seal`; raises ``cryptography.exceptions.InvalidTag`` (or
    ``ValueError`` for a malformed blob) when the key or context is not the one used."""
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
        raise ValueError("not a sealed value")
    return AESGCM(key).decrypt(blob[1:1 + _NONCE], blob[1 + _NONCE:], context)


# ------------------------------------------------------------------ dead letters


def key_subject(topic: str, key: bytes | None) -> tuple[str | None, str] | None:
    """``(tenant, investor_id)`` a message key of an investor topic names: an input's
    key is the investor id alone (tenant ``None``: the event says it), an output's
    (``crm.handoff``) ``<tenant>/<investor_id>``; ``None`` when it names none (no key,
    not UTF-8, an output key that does not parse).

    >>> key_subject("crm.handoff", b"acme/inv-1"), key_subject("crm.outcomes", b"inv-1")
    (('acme', 'inv-1'), (None, 'inv-1'))
    >>> key_subject("crm.handoff", b"inv-1") is None  # the old output key: no tenant
    True
    """
    if not key:
        return None
    if topic in KEYED_BY_INVESTOR:
        try:
            return parse_output_key(key)
        except ValueError:
            return None
    try:
        return None, key.decode()
    except UnicodeDecodeError:
        return None


def subject_of(record: dict, tenants: frozenset[str] | set[str]) -> tuple[str, str] | None:
    """``(tenant, investor_id)`` a dead letter is about, or ``None`` if not about one.

    The investor is the event's (when it decoded) or the message key's (see
    :func:`key_subject`). A tenant this deployment does not serve — or none, for bytes that
    did not decode — counts as ``""``: the erasure of ``(t, id)`` destroys ``("", id)``
    too, since such a letter may well be about the same person.

    >>> letter = {"topic": "investor.profiles", "tenant": None, "key_b64": "aW52LTE="}
    >>> subject_of(letter, {"acme"})
    ('', 'inv-1')
    >>> subject_of({"topic": "esg.property-signals", "tenant": "acme"}, {"acme"}) is None
    True
    >>> subject_of({**letter, "key_b64": "ISE="}, {"acme"})  # b"!!": no investor id
    ('', '')
    """
    if record.get("topic") not in INVESTOR_TOPICS:
        return None
    tenant = record.get("tenant")
    tenant = tenant if tenant in tenants else ""
    investor_id = record.get("investor_id")
    if investor_id is None and record.get("key_b64"):
        try:
            named = key_subject(record["topic"], base64.b64decode(record["key_b64"]))
        except ValueError:
            named = None
        # An output key names its tenant: one that is not the letter's names another
        # lead, which no erasure of the letter's investor would shred.
        # (A letter of no known tenant is sealed under ``""``: any tenant's erasure of
        # the id shreds it.)
        investor_id = named[1] if named is not None and (
            named[0] is None or record.get("tenant") in (None, named[0])) else None
    if not investor_id or not _INVESTOR_ID.fullmatch(investor_id):
        # Not attributable: ``("", "")`` keeps the letter on the withholding path. A key
        # no investor id can spell would seal under a key no erasure can ever destroy.
        return (tenant, "")
    return (tenant, investor_id)


def _context(record: dict, subject: tuple[str, str]) -> bytes:
    return f"{subject[0]}|{subject[1]}|{record['idempotency_key']}".encode()


def seal_dead_letter(record: dict, keys: KeyStore, tenants: frozenset[str] | set[str],
                     at: Position | None = None) -> dict:
    """``record`` with its value encrypted under its investor's key, or withheld.

    The value is withheld (``value_b64`` and ``value_sha256`` ``null``, the length
    kept) when the investor is erased or cannot be told. ``value_sha256`` of a sealed
    value is dropped too: a hash of a short, guessable message would confirm a guess
    after the key is gone. Letters not about an investor pass unchanged.

    ``at`` is the input position the letter derives from. Which it is, sealed or
    withheld, depends on it, not on when the letter reaches the key store: a letter
    from before the erasure is sealed even if the erasure's key shredding got there
    first (the flow's reader runs ahead of its ordered steps, by a distance that
    depends on batch size and process count) — under a key made for it and thrown
    away, which leaves it exactly as unreadable as the key the erasure destroyed would.
    """
    text = record.get("value_b64")
    subject = subject_of(record, tenants)
    if subject is None or text is None:
        return record
    key = keys.key_for(*subject) if subject[1] else None
    if key is None and subject[1] and at is not None:
        erased = keys.erased_at(*subject)
        if erased is not None and at < erased:
            key = os.urandom(KEY_BYTES)  # kept nowhere: shredded as it is made
    if key is None:
        why = "investor erased" if subject[1] else "investor unknown"
        return {**record, "value_b64": None, "value_sha256": None,
                "detail": f"{record['detail']} (value withheld: {why})"[:1024]}
    blob = seal(key, base64.b64decode(text), _context(record, subject))
    return {**record, "value_b64": base64.b64encode(blob).decode("ascii"),
            "value_sha256": None, "sealed": True}


def open_dead_letter(record: dict, keys: KeyStore,
                     tenants: frozenset[str] | set[str]) -> bytes | None:
    """The original value (or kept prefix) of a dead letter; ``None`` without one.

    Raises ``LookupError`` when the investor's key is gone (erased), and what
    :func:`open_sealed` raises when the record was altered.
    """
    text = record.get("value_b64")
    if text is None:
        return None
    raw = base64.b64decode(text)
    if not record.get("sealed"):
        return raw
    subject = subject_of(record, tenants)
    key = keys.existing_key(*subject) if subject and subject[1] else None
    if key is None:
        raise LookupError("the investor's key is gone (erased): the value cannot be opened")
    return open_sealed(key, raw, _context(record, subject))  # type: ignore[arg-type]


def erasure_subjects(tenant: str, investor_id: str) -> tuple[tuple[str, str], ...]:
    """Keys an erasure of ``(tenant, investor_id)`` destroys (see :func:`subject_of`)."""
    return ((tenant, investor_id), ("", investor_id))


# -------------------------------------------------------------------- audit trail


def erased_in(rows: Iterable[dict]) -> set[tuple[str, str]]:
    """``(tenant, investor_id)`` of the erasure rows among audit ``rows``."""
    return {(r["tenant"], r["investor_id"]) for r in rows if r.get("agent") == ERASURE_AGENT}


def keeps(row: dict, erased: set[str] | frozenset[str]) -> bool:
    """Whether an audit row survives the erasure of the ``erased`` investors (of its
    tenant): rows of other investors do, and the erasure rows themselves."""
    return row["investor_id"] not in erased or row.get("agent") == ERASURE_AGENT

