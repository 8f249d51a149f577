"""Drift detectors per tenant: on the model's error stream and on key features.

Bookkeeping around :mod:`river.drift` (and :class:`river.stats.Var` for the reference
statistics). ADWIN watches the prequential squared error
(concept drift: the model got *worse*) and each watched feature (data drift: the
inputs changed). ADWIN fires early, when its estimate still mixes old and new
data, and on a busy stream it also finds changes that are certain but tiny; so a
detection is only a *candidate*: the next ``confirm`` observations are compared
with the reference statistics from before it, and the change is reported only if
it is material — at least ``min_effect`` reference standard deviations (for the
error stream: upwards, since a model that improves has not drifted). Warm-up and a
cool-down keep the stream's start and one change's aftermath from raising alerts.

>>> import random
>>> rng = random.Random(0)
>>> monitor = DriftMonitor(features=("x",), feature_delta=0.002, warmup=100, confirm=50)
>>> hits = []
>>> for i in range(2000):
...     hits += monitor.update_features({"x": rng.gauss(0 if i < 1000 else 3, 1)})
>>> [(h.subject, h.index, round(h.effect, 1)) for h in hits]
[('feature:x', 1024, 2.5)]
"""

from __future__ import annotations

from dataclasses import dataclass

from river import drift, stats


@dataclass(frozen=True, slots=True)
class Detection:
    detector: str
    subject: str
    index: int  #: observations the stream had seen when ADWIN fired (never reset)
    mean_after: float  #: mean of the confirmation window
    width: int  #: observations in the confirmation window
    effect: float = 0.0  #: change in reference standard deviations (signed)


def _std(var: stats.Var) -> float:
    """Sample standard deviation (``ddof=1``; 0 below two observations)."""
    return var.get() ** 0.5


class _Running:
    """The hand-written Welford reference of snapshots taken before 5 December; kept only
    so that they unpickle (the class path is in them): :meth:`_Watched.__setstate__` turns
    it into the :class:`river.stats.Var` that replaced it."""

    __slots__ = ("n", "mean", "m2")

    def to_var(self) -> stats.Var:
        variance = self.m2 / (self.n - 1) if self.n > 1 else 0.0
        return stats.Var._from_state(self.n, self.mean, variance)


class _Watched:
    """One stream: its ADWIN, reference statistics and any candidate change."""

    __slots__ = ("name", "adwin", "reference", "seen", "quiet_until", "candidate", "window")

    def __init__(self, name: str, delta: float, warmup: int) -> None:
        self.name = name
        self.adwin = drift.ADWIN(delta=delta)
        self.reference = stats.Var()  # Welford mean and variance: a change's yardstick
        self.seen = 0
        self.quiet_until = warmup
        self.candidate: tuple[int, float, float] | None = None  # (fired at, mean, std)
        self.window = stats.Var()

    def __setstate__(self, state: tuple) -> None:
        _, slots = state
        for name, value in slots.items():
            setattr(self, name, value.to_var() if isinstance(value, _Running) else value)

    def update(self, value: float, confirm: int, min_effect: float, upward_only: bool,
               cooldown: int) -> Detection | None:
        self.seen += 1
        self.adwin.update(value)
        if self.candidate is None:
            self.reference.update(value)
            if self.adwin.drift_detected and self.seen >= self.quiet_until:
                self.candidate = (self.seen, self.reference.mean.get(), _std(self.reference))
                self.window = stats.Var()
            return None
        self.window.update(value)
        if self.window.n < confirm:
            return None
        fired, mean, std = self.candidate
        self.candidate = None
        mean_after = self.window.mean.get()
        effect = (mean_after - mean) / std if std > 0 else 0.0
        material = effect >= min_effect if upward_only else abs(effect) >= min_effect
        if not material:
            return None
        self.quiet_until = self.seen + cooldown
        self.reference = self.window  # the confirmed level is the new reference (a new
        # candidate starts a new window, so the two never share updates)
        return Detection("ADWIN", self.name, fired, mean_after, int(self.window.n), effect)


class DriftMonitor:
    """ADWIN detectors on the error stream and on selected features.

    Parameters
    ----------
    features
        Names of the features to watch.
    error_delta, feature_delta
        ADWIN confidence parameters (smaller: fewer false alarms, slower detection).
    min_effect, error_min_effect
        Smallest change worth an alert, in reference standard deviations.
    warmup
        Observations before a stream may raise anything.
    confirm
        Observations after ADWIN fires that decide whether the change is material.
    cooldown
        Observations to ignore a stream after it raised an alert.
    """

    def __init__(self, features: tuple[str, ...], error_delta: float = 0.002,
                 feature_delta: float = 1e-5, min_effect: float = 0.25,
                 error_min_effect: float = 0.1, warmup: int = 2000, confirm: int = 200,
                 cooldown: int = 500) -> None:
        self.features = features
        self.min_effect = min_effect
        self.error_min_effect = error_min_effect
        self.confirm = confirm
        self.cooldown = cooldown
        self.error = _Watched("model_error", error_delta, min(warmup, 200))
        self.watched = {name: _Watched(f"feature:{name}", feature_delta, warmup) for name in features}

    def update_error(self, squared_error: float) -> list[Detection]:
        found = self.error.update(squared_error, self.confirm, self.error_min_effect, True,
                                  self.cooldown)
        return [found] if found is not None else []

    def update_features(self, features: dict[str, float]) -> list[Detection]:
        detections = []
        for name, watched in self.watched.items():
            value = features.get(name)
            if value is not None:
                found = watched.update(value, self.confirm, self.min_effect, False, self.cooldown)
                if found is not None:
                    detections.append(found)
        return detections
