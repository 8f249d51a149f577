"""Drift of a distribution in event time: PSI between a reference and a recent window.

ADWIN (:mod:`online_models.drift`) counts observations; a tenant that scores fifty
leads a day gives it too little to see a change within a day or two, and the feature
streams are not stationary anyway (the week has weekends, the model learns, investors
age). So for input features and the score distribution a :class:`WindowDrift`
compares *windows of event time*: every ``cadence_hours`` (ticks at multiples of it
since the epoch, so the same events give the same ticks whatever the batching), the
values of the last ``recent_hours`` are binned at the deciles of the ``reference_hours``
before them (a rolling reference: slow trends move it along, a week of it covers the
weekly rhythm) and the Population Stability Index between the two histograms is the
evidence.

PSI on a small recent window is biased upwards by sampling noise alone: with ``k``
occupied bins and ``n = 1 / (1/n_ref + 1/n_recent)`` it is about ``(k - 1) / n`` on a
stationary stream and ``n * PSI`` is roughly chi-squared with ``k - 1`` degrees of
freedom. A detection therefore needs both a *material* shift (PSI minus that bias at
least ``min_psi``) and a *certain* one (``n * PSI`` at least ``z`` standard deviations
above its stationary mean). One sustained change is one detection: after it the
subject stays quiet until the reference window lies wholly after the change.

>>> import random
>>> rng = random.Random(3)
>>> monitor = WindowDrift(("feature:x",), min_subjects=1)
>>> hits = []
>>> for i in range(20 * 24 * 4):  # twenty days, four values an hour, a shift at 240 h
...     t = 1_700_000_000 + i * 900.0
...     hits += monitor.update(t, {"feature:x": rng.gauss(0 if i < 10 * 24 * 4 else 1, 1)})
>>> [(h.subject, (h.at_s - 1_700_000_000) / 3600, h.evidence["feature:x"]["psi"]) for h in hits]
[('feature:x', 247.77777777777777, 0.4373)]
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class WindowDetection:
    detector: str  #: ``"PSI"``
    subject: str  #: the shifted subjects (``feature:<name>``, ``score``), largest PSI first
    index: int  #: detections of this monitor so far, this one included (a stable id)
    at_s: float  #: the tick (event time, seconds since the epoch) that fired
    evidence: dict = field(default_factory=dict)  #: per subject: PSI, bins, shares, n, means


def psi(reference: np.ndarray, recent: np.ndarray, edges: np.ndarray) -> tuple[float, list, list]:
    """PSI of ``recent`` against ``reference`` over the bins cut at ``edges``, and both
    histograms as shares (empty bins get half an observation, so the log stays finite).

    >>> e = np.array([0.5])
    >>> round(psi(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 1.0]), e)[0], 6)
    0.0
    >>> round(psi(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0]), e)[0], 3)
    0.275
    """
    k = len(edges) + 1
    a = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=k).astype(float)
    b = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=k).astype(float)
    a = np.maximum(a, 0.5) / max(len(reference), 1)
    b = np.maximum(b, 0.5) / max(len(recent), 1)
    value = float(np.add.reduce((b - a) * np.log(b / a)))
    return value, a.round(4).tolist(), b.round(4).tolist()


def _interval(event_s: float, cadence_s: float) -> int:
    """``i`` with ``i * cadence_s <= event_s < (i + 1) * cadence_s``, exactly as the
    windows compare (a float quotient can round across the boundary)."""
    i = math.floor(event_s / cadence_s)
    if event_s < i * cadence_s:
        return i - 1
    return i + 1 if event_s >= (i + 1) * cadence_s else i


class _Bucket:
    """One cadence interval of a subject's values (``[i, i + 1) * cadence``), in arrival
    order, with its arrays kept between ticks: a tick compares ~8 days of values, and
    turning them into arrays anew at every tick was most of the detector's cost.

    Times and values are arrays of doubles, not lists of float objects: ~8 days of
    every subject's values per scored investor were ~1.5 KB of an investor's memory
    (issue 16), a third of it here. NumPy reads them as they are (same doubles).
    Snapshots of earlier versions hold lists, which append and convert alike.

    The arrays a tick reads are views of those doubles, not copies: a copy of every
    value was half of the detector's memory (issue 16). A view locks its array's size,
    so :meth:`append` drops the views before it grows the arrays (a late value, or the
    current interval after a tick read it); nothing else keeps one (:meth:`_Subject.between`
    returns new arrays). Snapshots keep the doubles, never the views."""

    __slots__ = ("times", "values", "_arrays")

    def __init__(self) -> None:
        self.times: array[float] = array("d")
        self.values: array[float] = array("d")
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def append(self, event_s: float, value: float) -> None:
        self._arrays = None
        self.times.append(event_s)
        self.values.append(value)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None or len(self._arrays[0]) != len(self.times):
            self._arrays = (_view(self.times), _view(self.values))
        return self._arrays

    def __getstate__(self) -> tuple:
        return (None, {"times": self.times, "values": self.values})

    def __setstate__(self, state: tuple) -> None:
        # Snapshots of earlier versions kept the arrays (copies) too: they are dropped.
        self._arrays = None
        for name, value in state[1].items():
            if name != "_arrays":
                setattr(self, name, value)


def _view(values: array | list) -> np.ndarray:
    """The doubles as an ndarray without a copy (a list, of an old snapshot: a copy)."""
    view = np.frombuffer(values, dtype=np.float64) if isinstance(values, array) and values \
        else np.array(values, dtype=np.float64)
    view.flags.writeable = False  # the kept values: a tick reads them, nothing writes
    return view


class _Subject:
    """One watched stream: its values by event time, and when it may fire again."""

    __slots__ = ("name", "buckets", "seen", "quiet_until", "first_s", "legacy")

    def __init__(self, name: str) -> None:
        self.name = name
        self.first_s: float | None = None  # the first value's event time
        self.buckets: dict[int, _Bucket] = {}  # by cadence interval; values may be late
        self.seen = 0
        self.quiet_until = -math.inf
        self.legacy: tuple | None = None

    def __setstate__(self, state: tuple) -> None:
        # A snapshot from before the buckets kept (times, values) deques: held here until
        # the monitor, which knows the cadence, files them (WindowDrift.__setstate__).
        slots = dict(state[1])
        if "times" in slots:
            slots["legacy"] = (slots.pop("times"), slots.pop("values"))
            slots["buckets"] = {}
        slots.setdefault("legacy", None)
        for name, value in slots.items():
            setattr(self, name, value)

    def add(self, bucket: int, event_s: float, value: float) -> None:
        found = self.buckets.get(bucket)
        if found is None:
            found = self.buckets[bucket] = _Bucket()
        found.append(event_s, value)

    def between(self, lo: float, hi: float, cadence_s: float) -> np.ndarray:
        """The values with event time in ``[lo, hi)``, bucket by bucket."""
        parts = []
        for index in range(math.floor(lo / cadence_s) - 1, math.ceil(hi / cadence_s) + 1):
            bucket = self.buckets.get(index)
            if bucket is None:
                continue
            times, values = bucket.arrays()
            if lo <= index * cadence_s and (index + 1) * cadence_s <= hi:
                parts.append(values)  # wholly inside: no mask
            else:
                parts.append(values[(times >= lo) & (times < hi)])
        return np.concatenate(parts) if parts else np.empty(0)


class WindowDrift:
    """PSI detectors on named values (features, the score) per event-time tick.

    Parameters
    ----------
    subjects
        Names of the values to watch (keys of the dicts given to :meth:`update`).
    recent_hours, reference_hours
        The recent window and the rolling reference before it.
    cadence_hours
        How often (in event time) the windows are compared.
    bins
        Bins of the histograms (cut at the reference's quantiles; ties merge bins).
    min_psi
        Smallest bias-corrected PSI worth an alert (0.1 is the usual "moderate shift").
    z
        How far above its stationary mean ``n * PSI`` must be (in standard deviations).
    min_recent, min_reference
        Values a window needs before it is compared.
    min_subjects
        Subjects that must shift at the same tick for a detection: one feature alone
        shifts on a campaign day or a burst of one investor's sessions; a change of the
        market moves several at once.
    """

    def __init__(self, subjects: tuple[str, ...], recent_hours: float = 24.0,
                 reference_hours: float = 168.0, cadence_hours: float = 6.0, bins: int = 10,
                 min_psi: float = 0.25, z: float = 5.0, min_recent: int = 30,
                 min_reference: int = 150, min_subjects: int = 3) -> None:
        if not 0 < cadence_hours <= recent_hours:
            raise ValueError("the cadence must be positive and at most the recent window")
        self.recent_s = recent_hours * HOUR_S
        self.reference_s = reference_hours * HOUR_S
        self.cadence_s = cadence_hours * HOUR_S
        self.bins = bins
        self.min_psi = min_psi
        self.z = z
        self.min_recent = min_recent
        self.min_reference = min_reference
        self.min_subjects = min_subjects
        self.alerts = 0
        self.subjects = {name: _Subject(name) for name in subjects}
        self.next_tick: float | None = None

    def update(self, event_s: float, values: dict[str, float]) -> list[WindowDetection]:
        """Record ``values`` at ``event_s``; compare windows at every tick it passes."""
        detections: list[WindowDetection] = []
        if self.next_tick is None:
            self.next_tick = (math.floor(event_s / self.cadence_s) + 1) * self.cadence_s
        horizon = self.recent_s + self.reference_s + self.recent_s
        if event_s - self.next_tick > horizon:  # a long silence (or a far-off clock):
            # the ticks in it would compare empty windows; start at the last that matters
            self.next_tick += math.floor((event_s - self.next_tick - horizon) / self.cadence_s) \
                * self.cadence_s
        while event_s >= self.next_tick:  # ticks before this value: it is not in them
            detections += self._tick(self.next_tick)
            self.next_tick += self.cadence_s
        bucket = _interval(event_s, self.cadence_s)
        for name, subject in self.subjects.items():
            value = values.get(name)
            if value is not None and math.isfinite(value):
                if subject.first_s is None:
                    subject.first_s = event_s
                subject.add(bucket, event_s, float(value))
                subject.seen += 1
        return detections

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for subject in self.subjects.values():
            if subject.legacy is not None:
                for event_s, value in zip(*subject.legacy, strict=True):
                    subject.add(_interval(event_s, self.cadence_s), event_s, value)
                subject.legacy = None

    def _tick(self, now: float) -> list[WindowDetection]:
        start = now - self.recent_s - self.reference_s
        shifted: dict[str, dict] = {}
        # Values from a day before the reference window on are kept (slack for late
        # values); older intervals are dropped.
        oldest = math.floor((start - self.recent_s) / self.cadence_s)
        for subject in self.subjects.values():
            for index in [i for i in subject.buckets if i < oldest]:
                del subject.buckets[index]
            if now < subject.quiet_until or subject.first_s is None or subject.first_s > start:
                continue  # quiet after an alert, or the reference window is not full yet
            evidence = self._compare(subject, now)
            if evidence is not None:
                shifted[subject.name] = evidence
        if len(shifted) < self.min_subjects:
            return []
        # One change, one alert: the subjects it names stay quiet until their reference
        # window lies wholly after it.
        ranked = sorted(shifted, key=lambda name: (-shifted[name]["psi"], name))
        for name in ranked:
            self.subjects[name].quiet_until = now + self.reference_s + self.recent_s
        self.alerts += 1
        return [WindowDetection("PSI", ",".join(ranked), self.alerts, now,
                                {name: shifted[name] for name in ranked})]

    def _compare(self, subject: _Subject, now: float) -> dict | None:
        split = now - self.recent_s
        recent = subject.between(split, now, self.cadence_s)
        if len(recent) < self.min_recent:
            return None
        reference = subject.between(split - self.reference_s, split, self.cadence_s)
        if len(recent) < self.min_recent or len(reference) < self.min_reference:
            return None
        quantiles = np.quantile(reference, np.arange(1, self.bins) / self.bins)
        edges = np.unique(quantiles)
        value, ref_shares, recent_shares = psi(reference, recent, edges)
        k = len(edges) + 1
        n = 1.0 / (1.0 / len(reference) + 1.0 / len(recent))
        bias = (k - 1) / n
        if k < 2 or value - bias < self.min_psi:
            return None
        if n * value < (k - 1) + self.z * math.sqrt(2 * (k - 1)):
            return None
        return {
            "psi": round(value, 4),
            "psi_noise": round(bias, 4),
            "edges": [round(float(e), 4) for e in edges],
            "reference_shares": ref_shares,
            "recent_shares": recent_shares,
            "reference_n": int(len(reference)),
            "recent_n": int(len(recent)),
            # Exact sums: the mean does not depend on the order values were kept in.
            "reference_mean": round(math.fsum(reference.tolist()) / len(reference), 4),
            "recent_mean": round(math.fsum(recent.tolist()) / len(recent), 4),
        }


__all__ = ["WindowDetection", "WindowDrift", "psi"]
