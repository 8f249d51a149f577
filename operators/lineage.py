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
aggregates, and an investor's list packed (:class:`PackedRefs`, shared by the feature
vectors built from it; :func:`extend_refs`); records get the dicts (:func:`as_dicts`).
A dict per reference, ~10 references per investor held, cost ~300 bytes each; packed,
a reference costs ~30 (issue 16).

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
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence

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


#: Between the event ids of :class:`PackedRefs` (an id holding it is not packed).
_SEP = "\x1f"
#: Whether an iterable of types holds only ``int`` / ``str`` (in C, no call per item).
_only_ints = frozenset((int,)).issuperset
_only_strs = frozenset((str,)).issuperset


class PackedRefs:
    """An investor's references in three flat parts instead of a tuple per reference:
    the event ids joined by U+001F in one string, each reference's topic as one byte
    (its index in the process's table of topics, :data:`_TOPICS`), and (partition,
    offset) pairs as 32-bit integers when they all fit, else 64-bit. Iterating yields
    the tuples it was made of, in order; never changed once built.

    A tuple per reference with its id string and offset integer cost ~160 bytes;
    packed, ~30 (issue 16); a tuple of topics and 64-bit pairs ~16 bytes more per
    reference than the bytes and the 32-bit pairs (stop 31). :func:`pack` returns the
    tuples themselves when they do not fit (an id holding U+001F, an integer beyond
    64 bits, a 257th topic): same values.

    >>> refs = (("e1", "investor.engagements", 0, 7), ("s9", "esg.property-signals", 2, 3))
    >>> packed = pack(refs)
    >>> type(packed).__name__, len(packed), tuple(packed) == refs, packed == refs
    ('PackedRefs', 2, True, True)
    >>> packed.coords.typecode, pack((("e1", "t", 0, 2**40),)).coords.typecode
    ('i', 'q')
    >>> odd = ((f"e{chr(0x1f)}1", "t", 0, 1),)  # an id holding the separator
    >>> pack(odd) is odd  # cannot be packed: kept as it was
    True
    """

    __slots__ = ("ids", "kinds", "coords")

    def __init__(self, ids: str, kinds: bytes, coords: array) -> None:
        self.ids = ids
        self.kinds = kinds  # per reference, its topic's index in _TOPICS
        self.coords = coords

    def __len__(self) -> int:
        return len(self.kinds)

    @property
    def topics(self) -> tuple[str, ...]:
        """Each reference's topic (the process's one string per topic)."""
        return tuple(map(_TOPICS.__getitem__, self.kinds))

    def __iter__(self) -> Iterator[Ref]:
        coords = iter(self.coords)
        return zip(self.ids.split(_SEP), map(_TOPICS.__getitem__, self.kinds), coords, coords)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedRefs):  # (32- and 64-bit pairs of the same values: equal)
            return (self.ids, self.kinds, self.coords) == (other.ids, other.kinds, other.coords)
        return isinstance(other, tuple) and tuple(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackedRefs({tuple(self)!r})"

    def __reduce__(self) -> tuple:
        # The shape a4481ae pickled (topic names, 64-bit pairs), whatever is held, so a
        # snapshot reads the same in any version and equal lists pickle alike; the
        # pairs little-endian on every host, so that a snapshot reads the same on any
        # (a4481ae's were native: little-endian on the hosts this runs on).
        coords = array("q", self.coords)
        if not _LITTLE:
            coords.byteswap()
        return (_unpickle, (self.ids, self.topics, coords.tobytes()))


_LITTLE = sys.byteorder == "little"
#: The topics references name, one string each (interned), in the order first seen;
#: a reference holds its topic's index, one byte. Bounded by that byte: a list naming
#: a 257th topic is kept unpacked (same values).
_TOPICS: list[str] = []
_TOPIC_INDEX: dict[str, int] = {}
#: New topics are added under a lock: bytewax runs a process's workers as threads, and
#: two threads adding two topics at once could give both one index (a reviewer saw one
#: topic read back as another in 78 of 300 forced runs). Known topics need no lock.
_TOPICS_LOCK = threading.Lock()


def _kinds(topics: Sequence[str]) -> bytes | None:
    """Each topic's index in :data:`_TOPICS` (added when new); ``None`` past 256."""
    index = _TOPIC_INDEX
    try:
        return bytes(map(index.__getitem__, topics))
    except KeyError:
        pass
    out = []
    with _TOPICS_LOCK:
        for topic in topics:
            at = index.get(topic)
            if at is None:
                if len(_TOPICS) >= 256:
                    return None
                _TOPICS.append(sys.intern(topic))
                # Published last: a lock-free reader never finds an index not yet listed.
                at = index[topic] = len(_TOPICS) - 1
            out.append(at)
    return bytes(out)


def _pairs(values: array) -> array:
    """``values`` (64-bit) as 32-bit integers when they all fit: half the bytes."""
    try:
        return array("i", values)
    except OverflowError:
        return values


def _unpickle(ids: str, topics: tuple[str, ...], coords: bytes) -> PackedRefs | tuple[Ref, ...]:
    numbers = array("q", coords)
    if not _LITTLE:
        numbers.byteswap()
    kinds = _kinds(topics)
    if kinds is None:  # a 257th topic in this process: the tuples, unpacked
        pairs = iter(numbers)
        return tuple(zip(ids.split(_SEP), map(sys.intern, topics), pairs, pairs))
    return PackedRefs(ids, kinds, _pairs(numbers))


def pack(refs: Sequence[Ref]) -> PackedRefs | tuple[Ref, ...]:
    """``refs`` (tuples) as :class:`PackedRefs`; ``()`` when empty, and the tuples
    themselves when they cannot be packed exactly."""
    if not refs:
        return ()
    # Transposed in C: ids, topics, partitions, offsets (a reference of another
    # length does not transpose to four parts and is kept as it was).
    parts = list(zip(*refs, strict=False))
    if len(parts) != 4 or max(map(len, refs)) != 4:
        return tuple(refs)
    ids, topics, partitions, offsets = parts
    if not (_only_strs(map(type, ids)) and _only_strs(map(type, topics))
            and _only_ints(map(type, partitions)) and _only_ints(map(type, offsets))):
        return tuple(refs)  # (a bool is an int an array would keep as 1)
    joined = _SEP.join(ids)
    if joined.count(_SEP) != len(ids) - 1:
        return tuple(refs)  # an id holds the separator
    coords = array("q", bytes(16 * len(ids)))
    try:
        coords[0::2] = array("q", partitions)
        coords[1::2] = array("q", offsets)
    except OverflowError:
        return tuple(refs)  # beyond 64 bits
    kinds = _kinds(topics)
    if kinds is None:
        return tuple(refs)
    return PackedRefs(joined, kinds, _pairs(coords))


def as_dicts(refs: Iterable[Ref] | Sequence[dict]) -> list[dict]:
    """References kept compactly (tuples, or :class:`PackedRefs`), as records list
    them (new dicts, in order). A list of dicts (a vector snapshotted by an earlier
    version) is copied as it is.

    >>> as_dicts([("e1", "investor.engagements", 0, 7)])
    [{'event_id': 'e1', 'topic': 'investor.engagements', 'partition': 0, 'offset': 7}]
    """
    if type(refs) is not PackedRefs and refs and type(refs[0]) is dict:  # type: ignore[index]
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


def extend_refs(listed: PackedRefs | tuple[Ref, ...], omitted: dict | None,
                new: Sequence[Ref], limit: int = MAX_LISTED
                ) -> tuple[PackedRefs | tuple[Ref, ...], dict | None]:
    """:func:`append_refs` for state, which keeps references compact and its list
    packed (:func:`pack`), shared uncopied by the vectors built from it: ``listed``
    itself when nothing is new.

    >>> refs = [ref(f"e{i}", "investor.engagements", 0, i) for i in range(5)]
    >>> listed, omitted = extend_refs((), None, list(map(compact, refs)), limit=3)
    >>> (as_dicts(listed), omitted) == append_refs([], None, refs, limit=3)
    True
    >>> extend_refs(listed, omitted, [compact(refs[4])], limit=3)[0] is listed
    True
    """
    if not new:
        return listed, omitted
    packed = type(listed) is PackedRefs
    if packed:
        coords = iter(listed.coords)  # type: ignore[union-attr]
        seen = set(zip(map(_TOPICS.__getitem__, listed.kinds), coords, coords))  # type: ignore[union-attr]
    else:
        seen = set(map(_TUPLE_KEY, listed))
    added = []
    for r in new:
        k = _TUPLE_KEY(r)
        if k not in seen:
            seen.add(k)
            added.append(r)
    if not added:
        return listed, omitted
    if packed:
        grown = _extend_packed(listed, added, limit)  # type: ignore[arg-type]
        if grown is not None:
            kept, dropped = grown
            if not dropped:
                return kept, omitted
            extra = omitted_summary(len(dropped), sum(ref_digest(r) for r in dropped))
            return kept, combine(omitted, extra)
    merged = tuple(listed) + tuple(added)
    if len(merged) <= limit:
        return pack(merged), omitted
    dropped = merged[:-limit]
    extra = omitted_summary(len(dropped), sum(ref_digest(r) for r in dropped))
    return pack(merged[-limit:]), combine(omitted, extra)


def _extend_packed(listed: PackedRefs, added: list[Ref], limit: int
                   ) -> tuple[PackedRefs, list[Ref]] | None:
    """``listed`` followed by ``added`` (none of which it holds), its oldest beyond
    ``limit`` cut off, and what was cut: done on the packed parts (string, tuple and
    array slices), without unpacking the references that stay. ``None`` when
    ``added`` cannot be packed (then the caller does it reference by reference)."""
    fresh = pack(added)
    if type(fresh) is not PackedRefs:
        return None
    n = len(listed)
    cut = max(0, n + len(added) - limit)  # references to drop, oldest first
    dropped: list[Ref] = []
    ids, kinds, coords = listed.ids, listed.kinds, listed.coords
    if cut >= n:
        dropped = [*listed, *added[:cut - n]]
        if cut > n:
            fresh = pack(added[cut - n:])
        return fresh, dropped  # type: ignore[return-value]
    if cut:
        at = -1
        for _ in range(cut):
            at = ids.index(_SEP, at + 1)
        pairs = iter(coords[:2 * cut])
        dropped = list(zip(ids[:at].split(_SEP), map(_TOPICS.__getitem__, kinds[:cut]),
                           pairs, pairs))
        ids, kinds, coords = ids[at + 1:], kinds[cut:], coords[2 * cut:]
    # New parts, exactly as long as they need (``+``, not ``extend``: an array grown in
    # place keeps spare room), and listed's, which vectors built before share, untouched.
    more = fresh.coords  # type: ignore[union-attr]
    if coords.typecode != more.typecode:  # 32- and 64-bit pairs: 64-bit (or 32 if all fit)
        coords, more = array("q", coords), array("q", more)
        joined = _pairs(coords + more)
    else:
        joined = coords + more
    return PackedRefs(ids + _SEP + fresh.ids, kinds + fresh.kinds,  # type: ignore[union-attr]
                      joined), dropped


def audit_pointer(tenant: str, investor_id: str) -> str:
    """Where the omitted references were listed: the ``audit_id`` prefix of the
    investor's audit rows, each of which keeps the lineage of one published decision."""
    return f"audit:{tenant}:{investor_id}:"
