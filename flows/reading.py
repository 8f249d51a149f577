"""Each worker reads its own tenants' messages: a replay on several processes without
input events crossing between them.

Every input topic is per tenant: each event's envelope names its tenant (property
signals, profiles, engagements, outcomes, erasure requests, review decisions, model
commands alike), and a tenant's keyed steps all run on one worker
(:func:`flows.placement.assign_tenants`). So when worker *n* reads the recording and
keeps only the messages of the tenants placed on it, everything a message leads to
stays on worker *n*: its parse, its dead letter, its erasure's key shredding, its
tenant's intake, shards, scoring, lifecycle and sinks. Only the cross-tenant global
model (opt-in) gathers labels from several workers, as it does with one reader.

Which worker a message belongs to must be a function of the message alone, and every
message must belong to exactly one worker: the tenant the parser reads from it
(:func:`schemas.codec.decode_event`). Parsing every message in every worker would
undo the saving, so :class:`TenantRows` decides most rows on their Arrow bytes, where
that cannot be wrong, and parses only the rest:

* a value with exactly one ``"tenant"`` in it, no backslash, and ``"tenant":"<t>"``
  for a served tenant *t* is *t*'s. If such a value decodes at all, its tenant is
  *t*: a decoded event has a top-level ``tenant`` key, which without escapes is
  spelled ``"tenant"``, so it is that one occurrence, and its string value ends at
  the next quote. (A nested ``tenant`` key, a duplicate key, a ``\\u`` escape or a
  quote in a key would take a second ``"tenant"`` or a backslash.) If it does not
  decode, it is a dead letter, and any one worker may write it: *t*'s does.
* any other value is decoded by every worker (rare: ``"tenant": "x"`` with a space,
  escapes, unknown tenants, malformed input): a served tenant's event is its
  tenant's worker's, anything else worker 0's.

A worker's own messages keep their replay order, so its tenants' intakes see the same
sequence as with one reader (:mod:`flows.ordering`); each reader has its own source
lane, which reaches only its own tenants' intakes.

One thing crosses tenants: an erasure of ``(t, id)`` also destroys the key of ``("",
id)``, under which dead letters of no served tenant about ``id`` are sealed
(:func:`operators.erasure.erasure_subjects`), and those are worker 0's. Whether such a
letter is sealed or withheld depends on whether the erasure comes before it in the
input (:func:`operators.erasure.seal_dead_letter`), which worker 0 can only know at
once if it saw the erasure itself. So every reader decodes every erasure row as it
passes it (~120 per million messages) and hands another reader's to
``on_foreign_erasure``, which destroys the keys there and then: a reader has destroyed
the keys of every erasure before any message after it, whoever owns it.

>>> rows = TenantRows({"acme": 0, "borealis": 1}, reader=1)
>>> rows.classify([b'{"tenant":"acme","x":1}', b'{"tenant":"borealis"}', b'{"tenant": "borealis"}',
...                b'{"tenant":"acme","y":{"tenant":"b"}}', b'{"tenant":"zeta"}', None])
[False, True, None, None, None, None]
>>> seen = TenantRows({"acme": 0, "borealis": 1}, reader=1, on_foreign_erasure=print)
>>> seen.classify([b'{"tenant":"acme"}', b'{"tenant":"acme"}'], ["investor.profiles", ERASURE_TOPIC])
[False, None]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from esg_leads.connectors.recording import RecordedMessage
from esg_leads.flows.ordering import SOURCE_LANE
from esg_leads.schemas.codec import DecodeFailure, decode_event

#: The topic whose rows every reader looks at (module docstring).
ERASURE_TOPIC = "investor.erasure"

#: The worker that reads the messages of no served tenant (their dead letters).
FALLBACK = 0


class TenantRows:
    """The rows of a recording that reader ``reader`` hands on: those of the tenants
    ``home`` places on it (module docstring). A :class:`~connectors.recording.reader.RowFilter`.
    """

    def __init__(self, home: Mapping[str, int], reader: int,
                 on_foreign_erasure: Callable[[RecordedMessage], None] | None = None) -> None:
        self.home = dict(home)
        self.reader = reader
        self.on_foreign_erasure = on_foreign_erasure
        # A served tenant's name as it stands between the quotes of its JSON string
        # (tenant ids have no quote, backslash or control character to escape).
        self._mine = {json.dumps(t, ensure_ascii=False)[1:-1].encode(): n == reader
                      for t, n in self.home.items()}

    def owner(self, message: RecordedMessage) -> int:
        """The reader a message belongs to, by the tenant the parser would read from it."""
        try:
            tenant = getattr(decode_event(message.topic, message.value), "tenant", None)
        except DecodeFailure:
            tenant = None
        return self.home.get(tenant, FALLBACK)

    def classify(self, values: list[bytes | None],
                 topics: list[str] | None = None) -> list[bool | None]:
        """Per value: this reader's (``True``) or another's (``False``) by its bytes, or
        ``None``: decode it to tell (module docstring; every erasure row is decoded).
        ~0.5 µs a value, in C string searches: a reader reads the whole recording."""
        mine = self._mine
        out: list[bool | None] = []
        append = out.append
        erasures = (frozenset(i for i, t in enumerate(topics) if t == ERASURE_TOPIC)
                    if topics is not None and self.on_foreign_erasure is not None else ())
        for i, value in enumerate(values):
            if value is None or value.count(b'"tenant"') != 1 or b"\\" in value \
                    or i in erasures:
                append(None)
                continue
            start = value.find(b'"tenant":"') + 10
            end = value.find(b'"', start)
            append(mine.get(value[start:end]) if start >= 10 and end >= 0 else None)
        return out

    def decide(self, message: RecordedMessage) -> bool:
        if self.owner(message) == self.reader:
            return True
        if message.topic == ERASURE_TOPIC and self.on_foreign_erasure is not None:
            self.on_foreign_erasure(message)
        return False


def reader_rows(home: Mapping[str, int], workers: int,
                on_foreign_erasure: Callable[[RecordedMessage], None] | None = None,
                ) -> list[TenantRows]:
    """One row filter per worker: worker *n* reads the messages of the tenants on *n*
    (and sees every erasure: ``on_foreign_erasure``, module docstring)."""
    return [TenantRows(home, n, on_foreign_erasure) for n in range(workers)]


def reader_lane(reader: int | None) -> str:
    """The source lane of a reader (``None``: the one reader of every message)."""
    return SOURCE_LANE if reader is None else f"{SOURCE_LANE}:{reader:04d}"


def part_lane(part: str) -> str:
    """The source lane of a recording source's partition (``recording-0003``: reader 3)."""
    number = part.rsplit("-", 1)[-1]
    return reader_lane(int(number)) if part.startswith("recording-") and number.isdigit() \
        else SOURCE_LANE


__all__ = ["ERASURE_TOPIC", "FALLBACK", "TenantRows", "part_lane", "reader_lane", "reader_rows"]
