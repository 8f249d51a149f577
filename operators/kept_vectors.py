"""An investor's kept feature vectors (point-in-time learning), packed (issue 16).

``InvestorProfileState.remember`` keeps the last few vectors scored, without context
and lineage, so that an outcome pairs with what the model knew then. At 100k investors
each kept vector's objects were the largest part of an investor's state: a
:class:`KeptVector` (an 8-field tuple, a ``datetime``, an array of ~35 doubles, an
``int``) is ~540 bytes, four per investor. :class:`PackedHistory` holds an investor's
vectors in one ``bytes`` object instead (its header once, not five per vector): per
vector its ``as_of`` as integer microseconds of wall time, its ``ingest_ms`` and its
doubles, little-endian whatever the host (a snapshot moves between hosts); what is not
a number (feature set version, component names, clamped names, time zone) in a tuple
shared by every investor whose vectors have the same. It rebuilds exactly the
:class:`KeptVector` it was given, so exactly the vector (``KeptVector.rebuilt``).

>>> from datetime import datetime, timezone
>>> kept = KeptVector("acme", "inv-1", datetime(2026, 3, 2, tzinfo=timezone.utc), "v",
...                   array("d", [0.5] * (_N + 4)), (), None, ())
>>> history = PackedHistory.of([kept])
>>> list(history) == [kept], history.latest_as_of() == kept.as_of
(True, True)
"""

from __future__ import annotations

import math
import operator
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import pyarrow as pa

from esg_leads.operators.compact import Interned
from esg_leads.operators.feature_definitions import FEATURE_NAMES
from esg_leads.schemas.records import FeatureVector

_N = len(FEATURE_NAMES)
#: A vector's esg_alignment, intent and engagement_readiness.
_SCORES = operator.itemgetter(6, 8, 9)
#: Whether an iterable of types holds only ``float`` (in C, no Python call per item).
_only_floats = frozenset((float,)).issuperset
#: The ESG component names of kept vectors, interned (see ``KeptVector``).
_COMPONENT_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}


class KeptVector(NamedTuple):
    """A feature vector as the investor's history keeps it (see ``remember``): the
    fields ``features_only()`` keeps that are not numbers, and every number in one
    array. Eight fields where a ``FeatureVector`` has seventeen, most of them empty
    here: ~70 bytes less per kept vector (issue 16). :class:`PackedHistory` holds
    them packed; this is what it unpacks to (and what snapshots of a4481ae hold)."""

    tenant: str
    investor_id: str
    as_of: datetime
    feature_set_version: str
    #: Features, alignment, intent, readiness, freshness (NaN: ``None``), components.
    numbers: array
    #: The ESG components' names, in order (shared by every vector with the same).
    component_keys: tuple[str, ...]
    ingest_ms: int | None
    clamped: tuple[str, ...]

    def rebuilt(self) -> FeatureVector:
        """The vector kept, as ``features_only()`` gave it, to the last bit."""
        numbers = self.numbers
        values = tuple(numbers[:_N])
        alignment, intent, readiness, freshness = numbers[_N:_N + 4]
        return FeatureVector(
            self.tenant, self.investor_id, self.as_of, self.feature_set_version,
            dict(zip(FEATURE_NAMES, values, strict=True)), values, alignment,
            dict(zip(self.component_keys, numbers[_N + 4:], strict=True)), intent, readiness,
            None if freshness != freshness else freshness, None, (),  # type: ignore[arg-type]
            self.ingest_ms, self.clamped)


def kept(vector: FeatureVector) -> KeptVector | FeatureVector:
    """``vector`` as history keeps it: a :class:`KeptVector` (every number in one array
    of doubles, exactly as long as it needs: the features in the feature set's order,
    then ESG alignment, intent, engagement readiness, data freshness (NaN for ``None``)
    and the ESG components), or, when it does not fit that pattern (keys of an older
    feature set, from a snapshot; a number that is not a float), ``features_only()``."""
    features, components = vector.features, vector.esg_components
    scores = _SCORES(vector)
    freshness = vector.data_freshness_days
    if (features is not None and tuple(features) == FEATURE_NAMES
            and type(components) is dict and _only_floats(map(type, components.values()))
            and _only_floats(map(type, scores))
            and (freshness is None or (type(freshness) is float and freshness == freshness))):
        # One allocation of the exact length (extending an array leaves spare room).
        numbers = array("d", (*vector.values, *scores,
                              math.nan if freshness is None else freshness,
                              *components.values()))
        keys = tuple(components)
        # Component names, once per name set: every kept vector shares the tuple.
        keys = _COMPONENT_KEYS.setdefault(keys, keys)
        return KeptVector(*vector[:4], numbers, keys, *vector[-4:-2])  # type: ignore[arg-type]
    return vector.features_only()


def unpacked(vector: FeatureVector) -> FeatureVector:
    """A vector an earlier version of ``remember`` packed into a ``FeatureVector`` (a
    snapshot's), as it was given."""
    keys = vector.esg_components
    if type(keys) is not tuple:
        # Packed by an earlier version (a snapshot): the feature values only.
        values = tuple(vector.values)
        return vector._replace(features=dict(zip(FEATURE_NAMES, values, strict=True)),
                               values=values)
    numbers = vector.values
    values = tuple(numbers[:_N])
    alignment, intent, readiness, freshness = numbers[_N:_N + 4]
    return vector._replace(
        features=dict(zip(FEATURE_NAMES, values, strict=True)), values=values,
        esg_alignment=alignment, intent=intent, engagement_readiness=readiness,
        data_freshness_days=None if freshness != freshness else freshness,
        esg_components=dict(zip(keys, numbers[_N + 4:], strict=True)))


# ------------------------------------------------------------------- packed

#: Each vector's head: wall-time microseconds since 0001-01-01, ingest_ms (0: ``None``),
#: the length of its body.
_HEAD = struct.Struct("<qqI")
_LITTLE = sys.byteorder == "little"
_ORIGIN = datetime(1, 1, 1)
_INT64 = range(-(1 << 63), 1 << 63)
#: What is not a number, per distinct value: ``(feature_set_version, component_keys,
#: clamped, tzinfo, fold, ingest_ms is None, type(tzinfo), tzname)``, and the tuples of
#: them per history.
_shared = Interned(65_536)
#: Raw LZ4 blocks (no frame: ~20 bytes less per vector), from the Arrow C++ library
#: the sinks already load. On the 37.6k-event world an investor's doubles shrink from
#: ~1.52 KB to ~1.14 KB (zeros, repeated values) for ~1 us per vector; zlib shrinks
#: them a little more for 20 times the CPU.
_LZ4 = pa.Codec("lz4_raw")


def _doubles(numbers: array) -> bytes:
    if _LITTLE:
        return numbers.tobytes()
    swapped = array("d", numbers)
    swapped.byteswap()
    return swapped.tobytes()


def _from_doubles(data: bytes) -> array:
    numbers = array("d", data)
    if not _LITTLE:
        numbers.byteswap()
    return numbers


def _body(doubles: bytes) -> bytes:
    """One vector's doubles as kept: LZ4-compressed when that is shorter, else as they
    are (told apart by length: a vector's uncompressed length is known)."""
    packed = _LZ4.compress(doubles, asbytes=True)
    return packed if len(packed) < len(doubles) else doubles


def _record(vector: KeptVector) -> tuple[tuple, bytes, bytes] | None:
    """One kept vector's shared part, head and body; ``None`` when it cannot be packed
    exactly (then history keeps the vectors as they are)."""
    if type(vector) is not KeptVector:
        return None  # a vector kept as it was (see ``kept``)
    as_of, numbers, keys = vector.as_of, vector.numbers, vector.component_keys
    ingest, clamped, version = vector.ingest_ms, vector.clamped, vector.feature_set_version
    if not (type(as_of) is datetime and type(numbers) is array
            and numbers.typecode == "d" and type(keys) is tuple
            and len(numbers) == _N + 4 + len(keys) and type(version) is str
            and type(clamped) is tuple
            and (ingest is None or (type(ingest) is int and ingest in _INT64))):
        return None
    tz = as_of.tzinfo
    # The time zone's type and name too: equal time zones (pydantic's UTC and
    # ``timezone.utc``; a UTC named "Z") must not share one entry.
    meta = (version, keys, clamped, tz, as_of.fold, ingest is None, type(tz), as_of.tzname())
    try:
        meta = _shared(meta)
    except TypeError:
        return None  # an unhashable time zone or name: kept as it is
    us = (((as_of.toordinal() - 1) * 86_400 + as_of.hour * 3_600 + as_of.minute * 60
           + as_of.second) * 1_000_000 + as_of.microsecond)
    body = _body(_doubles(numbers))
    return meta, _HEAD.pack(us, ingest or 0, len(body)), body


def _vector_record(vector: FeatureVector, last: tuple | None = None
                   ) -> tuple[tuple, bytes, bytes] | None:
    """:func:`_record` of ``kept(vector)``, straight from the vector: its doubles packed
    little-endian by one ``struct`` call, no array and no :class:`KeptVector` between
    (``remember`` runs once per vector built). ``None`` when ``kept`` would not give a
    KeptVector, or it could not be packed."""
    features, components = vector.features, vector.esg_components
    scores = _SCORES(vector)
    freshness = vector.data_freshness_days
    as_of, ingest = vector.as_of, vector.ingest_ms
    values, version, clamped = vector.values, vector.feature_set_version, vector.clamped
    if not (features is not None and tuple(features) == FEATURE_NAMES and len(values) == _N
            and type(components) is dict and _only_floats(map(type, components.values()))
            and _only_floats(map(type, scores))
            and (freshness is None or (type(freshness) is float and freshness == freshness))
            and type(as_of) is datetime and type(version) is str and type(clamped) is tuple
            and (ingest is None or (type(ingest) is int and ingest in _INT64))):
        return None
    keys = tuple(components)
    keys = _COMPONENT_KEYS.setdefault(keys, keys)
    tz = as_of.tzinfo
    tzname, fold, no_ingest = as_of.tzname(), as_of.fold, ingest is None
    if (last is not None and last[1] is keys and last[3] is tz and last[0] == version
            and last[2] == clamped and last[4] == fold and last[5] is no_ingest
            and last[7] == tzname):
        meta = last  # the previous vector's shared part (the rule): found without hashing
    else:
        try:
            meta = _shared((version, keys, clamped, tz, fold, no_ingest, type(tz), tzname))
        except TypeError:
            return None
    row = _ROWS.get(len(keys))
    if row is None:
        row = _ROWS[len(keys)] = struct.Struct(f"<{_N + 4 + len(keys)}d")
    # What ``array("d", ...)`` holds (an int among the values as its double, as there).
    body = _body(row.pack(*values, *scores, math.nan if freshness is None else freshness,
                          *components.values()))
    us = (((as_of.toordinal() - 1) * 86_400 + as_of.hour * 3_600 + as_of.minute * 60
           + as_of.second) * 1_000_000 + as_of.microsecond)
    return meta, _HEAD.pack(us, ingest or 0, len(body)), body


#: Little-endian rows of doubles, by number of ESG components.
_ROWS: dict[int, struct.Struct] = {}


class PackedHistory:
    """An investor's kept vectors, oldest first, in one ``bytes`` (see the module doc):
    every vector's head (``_HEAD``: as_of, ingest_ms, length of its body), then every
    vector's body: its doubles, little-endian, as one LZ4 block when that is shorter.
    Each vector compressed alone: a new one is appended and the oldest cut off as
    slices, nothing decompressed (compressing the four together would save ~120 bytes
    more per investor for a decompression and a recompression of all per vector).
    Never changed once built: :meth:`plus` builds the next one."""

    __slots__ = ("tenant", "investor_id", "metas", "data")

    def __init__(self, tenant: str, investor_id: str, metas: tuple, data: bytes) -> None:
        self.tenant = tenant
        self.investor_id = investor_id
        self.metas = metas  # one shared tuple per vector, in a shared tuple
        self.data = data

    @classmethod
    def of(cls, vectors: Sequence) -> PackedHistory | None:
        """``vectors`` (kept vectors, or vectors to keep) packed; ``None`` when one
        cannot be packed."""
        if not vectors:
            return None
        first = vectors[0]
        tenant, investor_id = first.tenant, first.investor_id
        if type(tenant) is not str or type(investor_id) is not str:
            return None
        metas, heads, bodies = [], [], []
        for vector in vectors:
            record = _record(vector) if type(vector) is KeptVector else _vector_record(vector)
            if record is None or vector.tenant != tenant or vector.investor_id != investor_id:
                return None
            metas.append(record[0])
            heads.append(record[1])
            bodies.append(record[2])
        return cls(tenant, investor_id, _shared(tuple(metas)), b"".join(heads + bodies))

    def plus(self, vector: KeptVector | FeatureVector, limit: int) -> PackedHistory | None:
        """These vectors and ``vector`` (as ``kept`` keeps it), the oldest beyond
        ``limit`` dropped; ``None`` when ``vector`` cannot be packed with them."""
        record = (_record(vector) if type(vector) is KeptVector  # type: ignore[arg-type]
                  else _vector_record(vector, self.metas[-1]))  # type: ignore[arg-type]
        if record is None or vector.tenant != self.tenant or vector.investor_id != self.investor_id:
            return None
        meta, head, body = record
        metas, data = self.metas, self.data
        n = len(metas)
        cut = max(0, n + 1 - limit)
        end = n * _HEAD.size
        dropped = 0
        for i in range(cut):
            dropped += _HEAD.unpack_from(data, i * _HEAD.size)[2]
        kept = metas[cut:]
        runs = _runs(meta)
        # Every vector with the same shared part (the rule): its run, without hashing
        # (tuples compare their items by identity first).
        k = len(kept)
        metas = runs[k + 1] if k + 1 < _RUN_LENGTHS and kept == runs[k] else _shared((*kept, meta))
        return PackedHistory(self.tenant, self.investor_id, metas,
                             b"".join((data[cut * _HEAD.size:end], head, data[end + dropped:], body)))

    def __len__(self) -> int:
        return len(self.metas)

    def _bodies(self) -> list[int]:
        """Where each vector's body starts in ``data``."""
        data, n = self.data, len(self.metas)
        at, starts = n * _HEAD.size, []
        for i in range(n):
            starts.append(at)
            at += _HEAD.unpack_from(data, i * _HEAD.size)[2]
        return starts

    def __iter__(self) -> Iterator[KeptVector]:
        for i, at in enumerate(self._bodies()):
            yield self._vector(i, at)

    def _vector(self, i: int, at: int) -> KeptVector:
        meta = self.metas[i]
        version, keys, clamped, tz, fold, no_ingest = meta[:6]
        us, ingest, size = _HEAD.unpack_from(self.data, i * _HEAD.size)
        width = _width(meta)
        body = self.data[at:at + size]
        if size < width:
            body = _LZ4.decompress(body, decompressed_size=width, asbytes=True)
        return KeptVector(self.tenant, self.investor_id, _as_of(us, tz, fold), version,
                          _from_doubles(body), keys, None if no_ingest else ingest, clamped)

    def _as_of_at(self, i: int) -> datetime:
        meta = self.metas[i]
        return _as_of(_HEAD.unpack_from(self.data, i * _HEAD.size)[0], meta[3], meta[4])

    def latest_as_of(self) -> datetime:
        return self._as_of_at(len(self.metas) - 1)

    def last_at_or_before(self, when: datetime) -> KeptVector | None:
        """The newest kept vector with ``as_of <= when``."""
        for i in range(len(self.metas) - 1, -1, -1):
            if self._as_of_at(i) <= when:
                return self._vector(i, self._bodies()[i])
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedHistory):  # bit for bit (NaN equals the same NaN)
            return ((self.tenant, self.investor_id, self.metas, self.data)
                    == (other.tenant, other.investor_id, other.metas, other.data))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackedHistory({list(self)!r})"

    def __reduce__(self) -> tuple:
        # ``data`` is little-endian on every host: a snapshot reads the same anywhere.
        return (_history, (self.tenant, self.investor_id, self.metas, self.data))


#: id of a shared part -> ((), (it,), (it, it), ...): the ``metas`` of histories whose
#: vectors all share it, found by identity (a tuple's hash is not cached: hashing four
#: parts of eight fields per vector cost more than the rest of ``plus``). An entry holds
#: its part, so the id is not reused while it lives. Bounded.
_RUNS: dict[int, tuple] = {}
_RUN_LENGTHS = 9


def _runs(meta: tuple) -> tuple:
    runs = _RUNS.get(id(meta))
    if runs is None or runs[1][0] is not meta:
        runs = tuple(_shared((meta,) * k) for k in range(_RUN_LENGTHS))
        if len(_RUNS) < 4096:
            _RUNS[id(meta)] = runs
    return runs


def _width(meta: tuple) -> int:
    """Bytes of one vector's doubles."""
    return 8 * (_N + 4 + len(meta[1]))


def _as_of(us: int, tz: object, fold: int) -> datetime:
    wall = _ORIGIN + timedelta(microseconds=us)
    return wall.replace(tzinfo=tz, fold=fold)  # type: ignore[arg-type]


def _history(tenant: str, investor_id: str, metas: tuple, data: bytes) -> PackedHistory:
    # Shared again: one tuple per distinct value, however many snapshots restored.
    return PackedHistory(tenant, investor_id, _shared(tuple(map(_shared, metas))), data)


__all__ = ["KeptVector", "PackedHistory", "kept", "unpacked"]
