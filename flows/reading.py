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

>>> rows = TenantRows({"acme": 0, "borealis": 1}, reader=1)
>>> import pyarrow as pa
>>> values = pa.array([b'{"tenant":"acme","x":1}', b'{"tenant":"borealis"}',
...                    b'{"tenant": "borealis"}', b'{"tenant":"acme","y":{"tenant":"b"}}', None])
>>> keep, ask = rows.classify_values(values)
>>> keep.to_pylist(), ask.to_pylist()
([False, True, False, False, False], [False, False, True, True, True])
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from esg_leads.connectors.recording import RecordedMessage
from esg_leads.flows.ordering import SOURCE_LANE
from esg_leads.schemas.codec import DecodeFailure, decode_event

#: The worker that reads the messages of no served tenant (their dead letters).
FALLBACK = 0
#: The column of a recording's value (connectors/recording/format.py's SCHEMA).
_VALUE = 5


class TenantRows:
    """The rows of a recording that reader ``reader`` hands on: those of the tenants
    ``home`` places on it (module docstring). A :class:`~connectors.recording.reader.RowFilter`.
    """

    def __init__(self, home: Mapping[str, int], reader: int) -> None:
        self.home = dict(home)
        self.reader = reader
        self._needles = {t: '"tenant":' + json.dumps(t, ensure_ascii=False) for t in sorted(home)}

    def owner(self, message: RecordedMessage) -> int:
        """The reader a message belongs to, by the tenant the parser would read from it."""
        try:
            tenant = getattr(decode_event(message.topic, message.value), "tenant", None)
        except DecodeFailure:
            tenant = None
        return self.home.get(tenant, FALLBACK)

    def classify_values(self, values: pa.Array) -> tuple[pa.BooleanArray, pa.BooleanArray]:
        """``(keep, ask)`` over ``values``: this reader's rows by their bytes, and the rows
        every reader decodes."""
        plain = pc.and_(pc.equal(pc.count_substring(values, '"tenant"'), 1),
                        pc.invert(pc.match_substring(values, "\\"))).fill_null(False)
        sure = mine = None
        for tenant, needle in self._needles.items():
            hit = pc.match_substring(values, needle).fill_null(False)
            sure = hit if sure is None else pc.or_(sure, hit)
            if self.home[tenant] == self.reader:
                mine = hit if mine is None else pc.or_(mine, hit)
        if sure is None:  # no tenant served: every row is asked (and dead-lettered)
            return pa.repeat(False, len(values)), pa.repeat(True, len(values))
        keep = pc.and_(plain, mine) if mine is not None else pa.repeat(False, len(values))
        return keep, pc.invert(pc.and_(plain, sure))

    def classify(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, pa.BooleanArray]:
        return self.classify_values(batch.column(_VALUE))

    def decide(self, message: RecordedMessage) -> bool:
        return self.owner(message) == self.reader


def reader_rows(home: Mapping[str, int], workers: int) -> list[TenantRows]:
    """One row filter per worker: worker *n* reads the messages of the tenants on *n*."""
    return [TenantRows(home, n) for n in range(workers)]


def reader_lane(reader: int | None) -> str:
    """The source lane of a reader (``None``: the one reader of every message)."""
    return SOURCE_LANE if reader is None else f"{SOURCE_LANE}:{reader:04d}"


def part_lane(part: str) -> str:
    """The source lane of a recording source's partition (``recording-0003``: reader 3)."""
    number = part.rsplit("-", 1)[-1]
    return reader_lane(int(number)) if part.startswith("recording-") and number.isdigit() \
        else SOURCE_LANE


__all__ = ["FALLBACK", "TenantRows", "part_lane", "reader_lane", "reader_rows"]
