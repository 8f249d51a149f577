"""Point-in-time labels for a horizon probability: each score meets its outcome.

The published probability is P(conversion within ``horizon`` of the score's event
time). Its calibrator must learn from the same thing: every score, paired with
whether *that score's* investor converted within the horizon after it. A
:class:`HorizonLabeller` keeps the scores still waiting for their outcome and pairs
them up point in time, never earlier than the outcome is known:

* an outcome (the CRM's qualified / disqualified) labels every waiting score of the
  investor taken before it: positive if qualified within the horizon of the score,
  otherwise negative (a disqualification closes the lead);
* a score whose horizon passes on the event clock without an outcome becomes a
  negative then — the negative label arrives by event time, not before.

Each pair comes back as ``(payload, published, label)``: what the caller kept to
re-score the score with (the scorer keeps the feature row, so that the calibrator
learns the raw probability of the model it will calibrate, not of an older one) and
the probability that was published, whose calibration error is thus measured out of
sample.

Scores of an investor within a horizon after its outcome are not kept: the lead is
decided, and nothing it does is evidence about open leads. Investors are held by a
keyed digest, not by id, and nothing is held longer than the horizon (plus a day).

>>> h = HorizonLabeller(horizon_s=90 * 86_400, salt=b"s")
>>> h.record(["a", "b"], [0.0, 0.0], [0.2, 0.4], [0.25, 0.45])
[]
>>> h.resolve("a", 86_400.0, True)
[(0.2, 0.25, True)]
>>> h.resolve("a", 2 * 86_400.0, True)  # its one score is matched already
[]
>>> h.record(["c"], [91 * 86_400.0], [0.1], [0.1])  # b's horizon has passed: a negative
[(0.4, 0.45, False)]
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Any

DAY_S = 86_400.0
#: A packed investor's waiting scores: the payloads' length once, then per score its
#: event time and published probability (little-endian doubles) and its payload.
_LEN = struct.Struct("<I")
_TIMES = struct.Struct("<dd")


def _packed(waiting: Iterable[tuple[Any, Any, Any]]) -> bytes | list:
    """Waiting scores ``(event time, payload, published)`` as one ``bytes`` when every
    payload is ``bytes`` of one length and every time and probability a float (what the
    scorer keeps), else as a list of them (any other payload: the same scores).

    A tuple, two float objects and a list slot per score were ~950 bytes per investor
    (issue 16); packed, a score costs its payload and 16 bytes.

    >>> entries = [(1.5, b"ab", 0.25), (2.0, b"cd", 0.5)]
    >>> packed = _packed(entries)
    >>> type(packed).__name__, len(packed), _entries(packed) == entries
    ('bytes', 40, True)
    >>> _packed([(1.5, 0.2, 0.25)])  # a payload that is not bytes: kept as it is
    [(1.5, 0.2, 0.25)]
    """
    waiting = list(waiting)
    size = len(waiting[0][1]) if waiting and type(waiting[0][1]) is bytes else -1
    parts = [_LEN.pack(size)] if 0 <= size < 1 << 32 else None
    for t, r, p in waiting:
        if parts is None or not (type(t) is float and type(p) is float
                                 and type(r) is bytes and len(r) == size):
            return waiting
        parts.append(_TIMES.pack(t, p))
        parts.append(r)
    return b"".join(parts) if waiting else waiting


def _entries(packed: bytes) -> list[tuple[float, bytes, float]]:
    """The scores :func:`_packed` packed, in order."""
    size = _LEN.unpack_from(packed)[0]
    step = _TIMES.size + size
    out = []
    for at in range(_LEN.size, len(packed), step):
        t, p = _TIMES.unpack_from(packed, at)
        out.append((t, packed[at + _TIMES.size:at + step], p))
    return out


def _first_time(packed: bytes) -> float:
    return _TIMES.unpack_from(packed, _LEN.size)[0]


def _count(packed: bytes) -> int:
    return (len(packed) - _LEN.size) // (_TIMES.size + _LEN.unpack_from(packed)[0])


class HorizonLabeller:
    """Scores waiting for their horizon outcome, per investor, on the event clock.

    Parameters
    ----------
    horizon_s
        The probability's horizon, in seconds of event time.
    max_pending
        Scores kept per investor; an investor scored more often loses its oldest
        waiting scores (unlabelled: they teach nothing, rather than a skewed weight).
    salt
        Key of the digest that stands for an investor id in this state.
    """

    def __init__(self, horizon_s: float, max_pending: int = 64, salt: bytes = b"") -> None:
        if horizon_s <= 0 or max_pending < 1:
            raise ValueError("horizon and max_pending must be positive")
        self.horizon_s = horizon_s
        self.max_pending = max_pending
        self._salt = salt
        #: investor digest -> waiting (event time, payload, published), oldest first:
        #: packed in one ``bytes`` (:func:`_packed`) when the payloads are bytes, else a
        #: list. Snapshots of earlier versions hold lists (a4481ae) or deques, packed
        #: when restored (``__setstate__``).
        self.pending: dict[bytes, bytes | list[tuple[float, Any, float]]] = {}
        #: investor digest -> event time of its latest outcome (scores soon after are not kept)
        self.decided: dict[bytes, float] = {}
        self.clock = float("-inf")
        self._next_sweep = float("-inf")
        self.dropped = 0  # scores pushed out by max_pending

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.pending = {key: waiting if type(waiting) is bytes else _packed(waiting)
                        for key, waiting in self.pending.items()}

    def _key(self, investor_id: str) -> bytes:
        return hashlib.blake2b(investor_id.encode(), key=self._salt[:64], digest_size=16).digest()

    def record(self, investor_ids: list[str], times: list[float], payloads: list[Any],
               published: list[float]) -> list[tuple[Any, float, bool]]:
        """Keep these scores until their outcome; returns pairs whose horizon has passed."""
        pending = self.pending
        for investor_id, t, r, p in zip(investor_ids, times, payloads, published, strict=True):
            key = self._key(investor_id)
            decided = self.decided.get(key)
            if decided is not None and t >= decided:
                if t < decided + self.horizon_s:
                    continue  # a decided lead
                del self.decided[key]
            waiting = pending.get(key)
            if waiting is None:
                pending[key] = _packed([(t, r, p)])
                continue
            if (type(waiting) is bytes and type(t) is float and type(p) is float
                    and type(r) is bytes and len(r) == _LEN.unpack_from(waiting)[0]):
                # The common case, without unpacking: the oldest cut off as a slice.
                if _count(waiting) >= self.max_pending:
                    waiting = waiting[:_LEN.size] + waiting[_LEN.size + _TIMES.size + len(r):]
                    self.dropped += 1
                pending[key] = waiting + _TIMES.pack(t, p) + r
                continue
            waiting = _entries(waiting) if type(waiting) is bytes else waiting
            if len(waiting) >= self.max_pending:
                del waiting[0]
                self.dropped += 1
            waiting.append((t, r, p))
            pending[key] = _packed(waiting)
        return self.advance(max(times, default=self.clock))

    def resolve(self, investor_id: str, outcome_s: float, converted: bool
                ) -> list[tuple[Any, float, bool]]:
        """The outcome of ``investor_id`` at ``outcome_s``: its waiting scores taken
        before it, labelled; then the pairs whose horizon passed meanwhile."""
        key = self._key(investor_id)
        pairs = []
        waiting = self.pending.get(key)
        if waiting:
            later = []
            for t, r, p in _entries(waiting) if type(waiting) is bytes else waiting:
                if t >= outcome_s:
                    later.append((t, r, p))  # taken after the outcome: not about it
                else:
                    pairs.append((r, p, converted and outcome_s - t <= self.horizon_s))
            if later:
                self.pending[key] = _packed(later)
            else:
                del self.pending[key]
        self.decided[key] = max(outcome_s, self.decided.get(key, outcome_s))
        return pairs + self.advance(outcome_s)

    def advance(self, now_s: float) -> list[tuple[Any, float, bool]]:
        """Move the event clock to ``now_s``; once a day of it, the scores whose
        horizon has passed without an outcome come back as negatives."""
        self.clock = max(self.clock, now_s)
        if self.clock < self._next_sweep:
            return []
        self._next_sweep = self.clock + DAY_S
        due = self.clock - self.horizon_s
        pairs = []
        pending = self.pending
        for key in list(pending):
            waiting = pending[key]
            if type(waiting) is bytes:
                if _first_time(waiting) > due:
                    continue  # the common case: nothing of this investor's is due
                waiting = _entries(waiting)
            while waiting and waiting[0][0] <= due:
                _, r, p = waiting[0]
                del waiting[0]
                pairs.append((r, p, False))
            if waiting:
                pending[key] = _packed(waiting)
            else:
                del pending[key]
        for key in [k for k, t in self.decided.items() if t <= due]:
            del self.decided[key]  # a horizon after its outcome: an open lead again
        return pairs

    def waiting(self) -> int:
        return sum(_count(w) if type(w) is bytes else len(w) for w in self.pending.values())


__all__ = ["HorizonLabeller"]
