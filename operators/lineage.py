"""Lineage: which input events a decision rests on, bounded but never silently cut.

A reference names one input event by its Kafka coordinates and id
(``{"event_id", "topic", "partition", "offset"}``): the engagements behind an
investor's features, the property signals whose facts enriched them, and the
notices (profile changes, outcomes, review decisions) that moved the lead. State
and records list at most a bounded number of references, the most recent; the
rest are *omitted*, never dropped: their count and a digest stay with the list.

The digest is order-independent: the sum, modulo 2**256, of the SHA-256 of every
omitted reference (:func:`ref_digest`). So a digest does not depend on the order
in which references fell off the list, two digests combine by addition, and
anyone holding the recording can recompute it from the events the list does not
name. It is a checksum against loss and mix-ups, not a signature. A reference used
again after it fell off the list (a property signal behind a later view) is listed
again: it counts once in the digest and once in the list.

State keeps references compact: the tuple ``(event_id, topic, partition, offset)``
(what ``Ingested.ref()`` and a signal's ``PropertyFacts.ref`` are) in window
aggregates, investor state and feature vectors (:func:`extend_refs`); records get the
dicts (:func:`as_dicts`). A dict per reference cost ~110 bytes more than its tuple,
~10 references per investor held (issue 16); a signal's tuple is its facts' own,
shared by every investor it enriched.

>>> refs = [ref(f"e{i}", "investor.engagements", 0, i) for i in range(5)]
>>> listed, omitted = append_refs([], None, refs, limit=3)
>>> [r["offset"] for r in listed], omitted["count"]
([2, 3, 4], 2)
>>> omitted["digest"] == digest_hex(ref_digest(refs[0]) + ref_digest(refs[1]))
True
>>> append_refs(listed, omitted, [refs[4]], limit=3)[0] == listed  # already listed: once
True
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Sequence

#: References a lead, review case or handoff lists (the output schemas allow 64).
MAX_LISTED = 64
_MOD = 1 << 256


def ref(event_id: str, topic: str, partition: int, offset: int) -> dict:
    """A reference, as output records carry it."""
    return {"event_id": event_id, "topic": topic, "partition": partition, "offset": offset}


#: A reference as state keeps it: ``(event_id, topic, partition, offset)``.
Ref = tuple[str, str, int, int]


def ref_digest(r: dict | Ref) -> int:
    """SHA-256 of one reference's canonical text, as an integer (the same for a
    reference's dict and its tuple)."""
    event_id, topic, partition, offset = (
        r if type(r) is tuple else (r["event_id"], r["topic"], r["partition"], r["offset"]))  # type: ignore[index]
    text = f"{topic}\x1f{partition}\x1f{offset}\x1f{event_id}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def compact(r: dict | Ref) -> Ref:
    """A reference as state keeps it (a dict in snapshots of earlier versions).

    >>> compact(ref("e1", "investor.engagements", 0, 7))
    ('e1', 'investor.engagements', 0, 7)
    """
    if type(r) is tuple:
        return r  # type: ignore[return-value]
    return (r["event_id"], r["topic"], r["partition"], r["offset"])  # type: ignore[index]


def as_dicts(refs: Sequence[Ref] | Sequence[dict]) -> list[dict]:
    """References kept compactly, as records list them (new dicts, in order). A list
    of dicts (a vector snapshotted by an earlier version) is copied as it is.

    >>> as_dicts([("e1", "investor.engagements", 0, 7)])
    [{'event_id': 'e1', 'topic': 'investor.engagements', 'partition': 0, 'offset': 7}]
    """
    if refs and type(refs[0]) is dict:
        return list(refs)  # type: ignore[arg-type]
    return [{"event_id": e, "topic": t, "partition": p, "offset": o} for e, t, p, o in refs]


def digest_hex(value: int) -> str:
    return f"{value % _MOD:064x}"


def omitted_summary(count: int, digest: int) -> dict | None:
    """The ``lineage_omitted`` part of a record: ``None`` when nothing was omitted."""
    return {"count": count, "digest": digest_hex(digest)} if count else None


def combine(a: dict | None, b: dict | None) -> dict | None:
    """Two omitted summaries as one (disjoint sets of references add up)."""
    if a is None or b is None:
        return a or b
    return {**a, "count": a["count"] + b["count"],
            "digest": digest_hex(int(a["digest"], 16) + int(b["digest"], 16))}


#: A reference's identity: (topic, partition, offset), read in C.
_KEY = operator.itemgetter("topic", "partition", "offset")
_TUPLE_KEY = operator.itemgetter(1, 2, 3)


def append_refs(listed: list[dict], omitted: dict | None, new: Iterable[dict],
                limit: int = MAX_LISTED) -> tuple[list[dict], dict | None]:
    """``listed`` followed by the ``new`` references it does not hold yet, at most
    ``limit`` of them (the most recent); the older ones join ``omitted``.

    Neither argument is changed: records share their lineage lists.
    """
    seen = set(map(_KEY, listed))
    merged = list(listed)
    for r in new:
        k = _KEY(r)
        if k not in seen:
            seen.add(k)
            merged.append(r)
    if len(merged) <= limit:
        return merged, omitted
    dropped = merged[:-limit]
    extra = omitted_summary(len(dropped), sum(ref_digest(r) for r in dropped))
    return merged[-limit:], combine(omitted, extra)


def extend_refs(listed: tuple[Ref, ...], omitted: dict | None, new: Iterable[Ref],
                limit: int = MAX_LISTED) -> tuple[tuple[Ref, ...], dict | None]:
    """:func:`append_refs` for state, which keeps references compact (tuples) and its
    list as a tuple that the vectors built from it share uncopied: ``listed`` itself
    when nothing is new.

    >>> refs = [ref(f"e{i}", "investor.engagements", 0, i) for i in range(5)]
    >>> listed, omitted = extend_refs((), None, map(compact, refs), limit=3)
    >>> (as_dicts(listed), omitted) == append_refs([], None, refs, limit=3)
    True
    >>> extend_refs(listed, omitted, [compact(refs[4])], limit=3)[0] is listed
    True
    """
    seen = set(map(_TUPLE_KEY, listed))
    added = []
    for r in new:
        k = _TUPLE_KEY(r)
        if k not in seen:
            seen.add(k)
            added.append(r)
    if not added:
        return listed, omitted
    merged = listed + tuple(added)
    if len(merged) <= limit:
        return merged, omitted
    dropped = merged[:-limit]
    extra = omitted_summary(len(dropped), sum(ref_digest(r) for r in dropped))
    return merged[-limit:], combine(omitted, extra)


def audit_pointer(tenant: str, investor_id: str) -> str:
    """Where the omitted references were listed: the ``audit_id`` prefix of the
    investor's audit rows, each of which keeps the lineage of one published decision."""
    return f"audit:{tenant}:{investor_id}:"
