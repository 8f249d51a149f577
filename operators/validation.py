"""Parse & validate: raw Kafka bytes to events, or dead letters with a reason.

Every message leaves this step as exactly one of :class:`~schemas.records.Ingested`
or a dead-letter record (a dict matching :class:`schemas.outputs.DeadLetter`), so
counts reconcile by construction here and are checked again downstream.

>>> from esg_leads.schemas.records import RawMessage
>>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> parser = Parser(tenants={"acme"})
>>> value = (b'{"tenant": "acme", "event_id": "e1", "event_time": "2026-01-01T00:00:00Z",'
...          b' "source": "crm", "investor_id": "inv-1", "kind": "qualified"}')
>>> ok = parser.parse(RawMessage("crm.outcomes", 0, 7, 1_767_225_600_000, b"inv-1", value), now)
>>> type(ok.event).__name__, ok.offset
('Outcome', 7)
>>> early = parser.parse(RawMessage("crm.outcomes", 0, 9, 1_767_000_000_000, b"inv-1", value), now)
>>> early["reason"]  # stamped 2.6 days after the message was produced
'future_event_time'
>>> bad = parser.parse(RawMessage("crm.outcomes", 0, 8, 1_767_000_000_000, b"inv-1", b"{"), now)
>>> bad["reason"], bad["offset"]
('decode_error', 8)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

import orjson

from esg_leads.operators import control_auth, erasure_auth
from esg_leads.operators.erasure import INVESTOR_TOPICS, key_subject
from esg_leads.schemas.codec import DecodeFailure, b64, decode_event
from esg_leads.schemas.common import epoch_seconds
from esg_leads.schemas.outputs import SCHEMA_VERSION, DlqReason
from esg_leads.schemas.records import Ingested, RawMessage
from esg_leads.schemas.topics import INPUT_TOPICS

AGENT_VERSION = "validation/1"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_MS = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
_MAX_MS = int(datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
#: ``dlq.max_value_bytes``'s default: what a dead letter keeps of the original value.
MAX_VALUE_BYTES = 256 * 1024
#: What a dead letter keeps of the original key (it is also the dead letter's own key).
MAX_KEY_BYTES = 1024


def dead_letter(
    raw: RawMessage | Ingested,
    reason: DlqReason,
    detail: str,
    processed_at: datetime,
    *,
    withhold_value: bool = False,
    event: object = None,
) -> dict:
    """A :class:`~schemas.outputs.DeadLetter` record for a message the flow cannot use.

    The idempotency key names the message's position in its topic, so a re-delivered
    dead letter (after a resume) upserts onto the first one. It carries the value's
    length and SHA-256, so that :func:`bounded` can cut the value to a prefix; a key
    longer than :data:`MAX_KEY_BYTES` is cut here (it is the dead letter's own key).
    """
    event = getattr(raw, "event", None) if event is None else event
    if not withhold_value and _names_another_investor(raw, event):
        # The value is sealed under the key's investor (operators.erasure.subject_of),
        # but it is about the body's: the body's erasure would leave it readable.
        withhold_value = True
        detail = f"{detail} (value withheld: its body names another investor than its key)"
    # Kafka reports -1 when a message has no timestamp; keep only plausible instants.
    ms = raw.timestamp_ms
    timestamp = (_EPOCH.fromtimestamp(ms / 1000, tz=timezone.utc)
                 if ms is not None and _MIN_MS <= ms < _MAX_MS else None)
    key, value = raw.key, raw.value
    truncated = False
    if key is not None and len(key) > MAX_KEY_BYTES:
        key, truncated = key[:MAX_KEY_BYTES], True
    value_length = value_sha256 = None
    if value is not None and not withhold_value:
        value_length = len(value)
        value_sha256 = hashlib.sha256(value).hexdigest()
    return {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": f"dlq:{raw.topic}:{raw.partition}:{raw.offset}:{reason.value}",
        "reason": reason.value,
        "detail": detail[:1024],
        "topic": raw.topic,
        "partition": raw.partition,
        "offset": raw.offset,
        "timestamp": timestamp,
        "key_b64": b64(key),
        "value_b64": None if withhold_value else b64(value),
        "truncated": truncated,
        "value_length": value_length,
        "value_sha256": value_sha256,
        "sealed": False,  # see operators.erasure.seal_dead_letter
        "tenant": (getattr(event, "tenant", None) or None) and str(event.tenant)[:64],  # type: ignore[attr-defined]
        "event_id": getattr(event, "event_id", None),
        "processed_at": processed_at,
    }


_INVESTOR_ID = re.compile(rb'"investor_id"\s*:\s*"([^"\\]*)"')


def _names_another_investor(raw: RawMessage | Ingested, event: object) -> bool:
    """Whether an investor topic's message names, in its body, another investor than its
    key: the decoded event's, or a top-level ``investor_id`` of a body that did not
    decode into one. Only dead letters ask, so the second decode costs nothing in use."""
    if raw.topic not in INVESTOR_TOPICS:
        return False
    subject = key_subject(raw.topic, raw.key)
    if subject is None:
        return False  # a key naming no investor: the letter is withheld anyway (unknown)
    key_tenant, key_investor = subject
    if event is not None:
        named = getattr(event, "investor_id", None)
        # An output's key names the tenant too (crm.handoff): another tenant's is another person.
        return named is not None and (named != key_investor or key_tenant not in (
            None, getattr(event, "tenant", None)))
    if raw.value is None:
        return False
    key = key_investor.encode()
    # A body that did not decode: any plain "investor_id" string in it (a cut-off body,
    # a duplicate key the parser would have overridden), then the top-level one of a
    # body that is JSON (escaped spellings of the name).
    if any(named != key for named in _INVESTOR_ID.findall(raw.value)):
        return True
    try:
        body = orjson.loads(raw.value)
    except orjson.JSONDecodeError:
        return False
    named = body.get("investor_id") if type(body) is dict else None
    return named is not None and (not isinstance(named, str) or named.encode() != key)


def bounded(record: dict, max_value_bytes: int = MAX_VALUE_BYTES) -> dict:
    """``record`` (a dead letter) with at most ``max_value_bytes`` of its value kept.

    Every dead letter of the flow passes here on its way out, so that one setting
    (``dlq.max_value_bytes``) bounds them all and a dead letter always fits the
    producer's message limit, whatever arrived. The cut is made on the base64 text, at
    a multiple of four characters: that is the base64 of a byte prefix, without
    decoding the value again.

    >>> letter = {"value_b64": "QUJDREVGR0g=", "value_length": 8, "truncated": False}
    >>> bounded(letter, 4)["value_b64"], bounded(letter, 4)["truncated"]  # b"ABC"
    ('QUJD', True)
    >>> bounded(letter, 8) is letter
    True
    """
    text = record.get("value_b64")
    if text is None or (record.get("value_length") or 0) <= max_value_bytes:
        return record
    return {**record, "value_b64": text[:max_value_bytes // 3 * 4], "truncated": True}


def processing_error(ingested: Ingested, error: Exception, now: datetime) -> dict:
    """A dead letter for a valid event an operator failed on (the flow goes on)."""
    return dead_letter(ingested, DlqReason.PROCESSING_ERROR,
                       f"{type(error).__name__}: {error}", now)


class Parser:
    """Decodes raw messages for a fixed set of known tenants.

    Parameters
    ----------
    tenants
        Tenants this deployment serves; events naming any other are dead-lettered.
    max_future_skew
        How far an event's ``event_time`` may be ahead of its ingest time (the message
        timestamp). Event time drives every clock of the flow (a tenant's windows
        close when its latest event passes them), so one event stamped 2099 would
        otherwise close every open window of its tenant and make all its later
        events late: it is dead-lettered as ``future_event_time`` here, before it can
        touch a clock.

    ``now`` is the processing time stamped on dead letters; the caller's clock gives
    it, so that tests and replays can pin it. It is also the ingest time of a message
    without a plausible timestamp (Kafka's ``-1``): then, and only then, the check
    depends on when the message is read.
    """

    def __init__(self, tenants: Iterable[str],
                 max_future_skew: timedelta = timedelta(hours=1)) -> None:
        self.tenants = frozenset(tenants)
        # Settings per tenant when given (the flow passes settings.tenants): erasure keys.
        self._tenant_settings = tenants if isinstance(tenants, Mapping) else {}
        self._key_fields = {name: topic.key_field for name, topic in INPUT_TOPICS.items()}
        self._skew_s = max_future_skew.total_seconds()

    def parse(self, raw: RawMessage, now: datetime) -> Ingested | dict:
        try:
            event = decode_event(raw.topic, raw.value)
        except DecodeFailure as failure:
            return dead_letter(raw, failure.reason, failure.detail, now)
        if event.tenant not in self.tenants:  # type: ignore[attr-defined]
            return dead_letter(raw, DlqReason.UNKNOWN_TENANT,
                               f"tenant {event.tenant!r} is not served here", now,  # type: ignore[attr-defined]
                               event=event)
        entity = getattr(event, self._key_fields[raw.topic])
        if raw.key is not None and raw.key != entity.encode():
            return dead_letter(raw, DlqReason.KEY_MISMATCH,
                               f"message key does not match {self._key_fields[raw.topic]}",
                               now, event=event)
        ms = raw.timestamp_ms
        ingest_s = ms / 1000 if ms is not None and _MIN_MS <= ms < _MAX_MS else now.timestamp()
        ahead = epoch_seconds(event.event_time) - ingest_s  # type: ignore[attr-defined]
        if ahead > self._skew_s:
            return dead_letter(raw, DlqReason.FUTURE_EVENT_TIME,
                               f"event_time is {ahead:,.0f} s ahead of the message timestamp "
                               f"(ingest.max_future_skew is {self._skew_s:,.0f} s)",
                               now, event=event)
        if raw.topic == "investor.erasure":
            # Before anything acts on it: the flow destroys the investor's key right
            # after parsing, and a forged request must not (operators/erasure_auth.py).
            refused = erasure_auth.refusal(event, self._tenant_settings.get(event.tenant))  # type: ignore[attr-defined]
            if refused is not None:
                return dead_letter(raw, DlqReason.UNAUTHORIZED, refused, now, event=event)
        elif raw.topic == "ops.control":
            # A model command changes who decides every lead of a tenant: signed, or
            # never seen by the scoring step (operators/control_auth.py).
            refused = control_auth.refusal(event, self._tenant_settings.get(event.tenant))  # type: ignore[attr-defined]
            if refused is not None:
                return dead_letter(raw, DlqReason.UNAUTHORIZED, refused, now, event=event)
        return Ingested(event, raw.topic, raw.partition, raw.offset, raw.timestamp_ms,
                        raw.key, raw.value)

    def parse_batch(self, batch: list[RawMessage], now: datetime) -> list[Ingested | dict]:
        parse = self.parse
        return [parse(raw, now) for raw in batch]
