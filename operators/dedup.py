"""Recognise redelivered events by ``event_id``, in bounded memory.

Kafka producers retry and consumers resume from snapshots, so the same event can
arrive twice. An id is remembered for ``horizon`` of *event time* after the newest
event seen; that bounds memory by the event rate, not by the stream's length.

>>> from datetime import datetime, timedelta, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> seen = EventIdDedup(horizon=timedelta(days=1))
>>> seen.first_time("e1", t), seen.first_time("e1", t), seen.first_time("e2", t)
(True, False, True)
>>> _ = seen.first_time("e3", t + timedelta(days=2))  # e1 and e2 are now forgotten
>>> len(seen)
1
"""

from __future__ import annotations

import sys
from array import array
from datetime import datetime, timedelta
from hashlib import blake2b

from esg_leads.schemas.common import epoch_seconds

#: Expired entries are cut from the front of the arrays once they are this many and
#: half of them (amortised O(1) per id, no per-expiry copy).
_COMPACT_AT = 1024


def id_key(event_id: str) -> int:
    """The 64-bit digest an id is remembered by (BLAKE2b: the same in every process).

    A string, its (time, id) tuple and its float were ~190 bytes per remembered id, and
    an intake remembers every event of the last three days (issue 16); a digest in a set
    and two arrays is ~80. Two ids share a digest with probability 2^-64 per pair (about
    1e-9 over a horizon of 200k ids). The digest is not keyed: a producer could search
    for an id colliding with one of N predictable future ids (~2^64 / N hashes) to have
    that event dead-lettered as a duplicate (its bytes kept in the dead letter). Only a
    producer of the tenant's input topic could send it, and that producer can already
    publish any event of the tenant; a digest keyed with a deployment secret would close
    even that, at the cost of the key in every snapshot.

    >>> id_key("investor.engagements/e-1") == id_key("investor.engagements/e-1")
    True
    """
    return int.from_bytes(blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little", signed=True)


class EventIdDedup:
    """A set of recently seen event ids that forgets ids older than ``horizon``.

    The ids are kept as digests (:func:`id_key`) in a set, and in arrival order as two
    arrays (event time, digest) read from ``_head``: what expires is at the front."""

    __slots__ = ("_horizon_s", "_ids", "_times", "_keys", "_head", "_newest")

    def __init__(self, horizon: timedelta) -> None:
        self._horizon_s = horizon.total_seconds()
        self._ids: set[int] = set()
        self._times = array("d")
        self._keys = array("q")
        self._head = 0
        self._newest = float("-inf")

    def first_time(self, event_id: str, event_time: datetime) -> bool:
        """Record ``event_id``; ``True`` unless it was already seen within the horizon."""
        key = id_key(event_id)
        ids = self._ids
        if key in ids:
            return False
        ts = epoch_seconds(event_time)
        ids.add(key)
        self._times.append(ts)
        self._keys.append(key)
        if ts > self._newest:
            self._newest = ts
            self._expire(ts - self._horizon_s)
        return True

    def _expire(self, cutoff: float) -> None:
        # Ids arrive roughly in time order; expire from the front while stale.
        times, keys, ids, head = self._times, self._keys, self._ids, self._head
        end = len(times)
        while head < end and times[head] < cutoff:
            ids.discard(keys[head])
            head += 1
        if head >= _COMPACT_AT and 2 * head >= end:
            del times[:head], keys[:head]
            head = 0
        self._head = head

    def __len__(self) -> int:
        return len(self._ids)

    def __getstate__(self) -> tuple:
        # Little-endian whatever the host, so a snapshot reads the same on any other.
        times, keys = self._times[self._head:], self._keys[self._head:]
        if sys.byteorder == "big":
            times.byteswap()
            keys.byteswap()
        return (2, self._horizon_s, times.tobytes(), keys.tobytes(), self._newest)

    def __setstate__(self, state: tuple) -> None:
        if len(state) == 3:  # a snapshot from before digests: (horizon, [(time, id)], newest)
            self._horizon_s, order, self._newest = state
            self._times = array("d", (t for t, _ in order))
            self._keys = array("q", (id_key(event_id) for _, event_id in order))
        else:
            _, self._horizon_s, times, keys, self._newest = state
            self._times, self._keys = array("d"), array("q")
            self._times.frombytes(times)
            self._keys.frombytes(keys)
            if sys.byteorder == "big":
                self._times.byteswap()
                self._keys.byteswap()
        self._head = 0
        self._ids = set(self._keys)
