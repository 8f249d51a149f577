"""Drift detectors per tenant: on the model's error stream and on key features.

Bookkeeping around :mod:`river.drift`: ADWIN on the prequential squared error
(concept drift: the model got worse) and ADWIN on each watched feature (data drift:
the inputs changed). A feature detection is reported only after a warm-up and only
if the change is material — at least ``min_effect`` standard deviations of the
feature — since on a busy stream ADWIN finds statistically certain but tiny
shifts. A cool-down keeps one change from raising a burst of alerts.

>>> import random
>>> rng = random.Random(0)
>>> monitor = DriftMonitor(features=("x",), feature_delta=0.002, warmup=100)
>>> hits = []
>>> for i in range(2000):
...     hits += monitor.update_features({"x": rng.gauss(0 if i < 1000 else 3, 1)})
>>> [(h.subject, h.index) for h in hits]
[('feature:x', 1024)]
"""

from __future__ import annotations

from dataclasses import dataclass

from river import drift


@dataclass(frozen=True, slots=True)
class Detection:
    detector: str
    subject: str
    index: int  #: number of updates the detector had seen when it fired
    mean_after: float  #: the detector's estimate of the new mean
    width: int  #: observations the detector kept after the change
    effect: float = 0.0  #: size of the change in standard deviations (features only)


class _Running:
    """Welford mean and variance: the reference a feature change is measured against."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return (self.m2 / (self.n - 1)) ** 0.5 if self.n > 1 else 0.0


class DriftMonitor:
    """ADWIN detectors on the error stream and on selected features.

    Parameters
    ----------
    features
        Names of the features to watch.
    error_delta, feature_delta
        ADWIN confidence parameters (smaller: fewer false alarms, slower detection).
    min_effect
        Smallest feature change, in standard deviations, worth an alert.
    warmup
        Feature observations before feature alerts may fire.
    cooldown
        Updates to ignore a detector after it fired.
    """

    def __init__(self, features: tuple[str, ...], error_delta: float = 0.002,
                 feature_delta: float = 1e-5, min_effect: float = 0.25, warmup: int = 2000,
                 cooldown: int = 500) -> None:
        self.features = features
        self.min_effect = min_effect
        self.warmup = warmup
        self.cooldown = cooldown
        self.error = drift.ADWIN(delta=error_delta)
        self.error_updates = 0
        self.error_quiet_until = 0
        self.feature_detectors = {name: drift.ADWIN(delta=feature_delta) for name in features}
        self.reference = {name: _Running() for name in features}
        self.feature_quiet_until = {name: warmup for name in features}

    def update_error(self, squared_error: float) -> list[Detection]:
        error = self.error
        error.update(squared_error)
        self.error_updates += 1
        if error.drift_detected and self.error_updates >= self.error_quiet_until:
            self.error_quiet_until = self.error_updates + self.cooldown
            return [Detection("ADWIN", "model_error", self.error_updates, error.estimation,
                              int(error.width))]
        return []

    def update_features(self, features: dict[str, float]) -> list[Detection]:
        detections = []
        for name, detector in self.feature_detectors.items():
            value = features.get(name)
            if value is None:
                continue
            reference = self.reference[name]
            reference.update(value)
            detector.update(value)
            if detector.drift_detected and reference.n >= self.feature_quiet_until[name]:
                after = detector.estimation
                std = reference.std
                effect = abs(after - reference.mean) / std if std > 0 else 0.0
                if effect >= self.min_effect:
                    self.feature_quiet_until[name] = reference.n + self.cooldown
                    detections.append(Detection("ADWIN", f"feature:{name}", reference.n, after,
                                                int(detector.width), round(effect, 3)))
                    self.reference[name] = _Running()  # measure the next change from here
        return detections
