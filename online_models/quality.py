"""Prequential model quality over a sliding window of labels: log loss and ROC AUC.

Each label is scored *before* the model learns from it (test-then-train), so these
are honest out-of-sample figures, cheap enough to export as metrics.

The bookkeeping is River's: ``utils.Rolling(metrics.LogLoss)`` and
``metrics.RollingROCAUC`` (exact over its window, unlike ``metrics.ROCAUC``, which
approximates with ``n_thresholds`` cut points). River's rolling AUC credits a tied
(positive, negative) pair with 0, where the Mann-Whitney AUC (and scikit-learn's)
credits ½: a constant predictor would score 0 instead of 0.5. A second instance on the
negated scores counts the pairs ranked the wrong way, and the ties are what neither
counts: ``AUC = (1 + right − wrong) / 2``.

>>> q = RollingQuality(window=4)
>>> for p, y in [(0.9, True), (0.2, False), (0.7, True), (0.4, False)]:
...     q.add(p, y)
>>> q.auc(), round(q.log_loss(), 3)
(1.0, 0.299)
>>> ties = RollingQuality(window=4)
>>> for p, y in [(0.5, True), (0.5, False)]:
...     ties.add(p, y)
>>> ties.auc()
0.5
"""

from __future__ import annotations

from collections import deque

from river import metrics, utils

#: Probabilities are clamped to [EPS, 1 − EPS] before the log: a certain mistake costs
#: −log(1e-12) ≈ 27.6, not infinity (River's own clamp, 1e-15, never binds after ours).
EPS = 1e-12


def expected_calibration_error(scores: list[float], labels: list[bool], bins: int = 10) -> float | None:
    """Expected calibration error over ``bins`` equal-width bins of the probability.

    The mean, weighted by each bin's share of the pairs, of |mean probability - observed
    rate| in the bin; a probability of exactly 1 falls in the last bin. ``None`` when
    there are no pairs.

    >>> expected_calibration_error([0.1, 0.1, 0.9, 0.9], [False, True, True, True])
    0.25
    """
    if not scores:
        return None
    sums = [0.0] * bins
    hits = [0] * bins
    counts = [0] * bins
    for p, y in zip(scores, labels, strict=True):
        b = min(bins - 1, int(p * bins))
        sums[b] += p
        hits[b] += y
        counts[b] += 1
    return sum(abs(sums[b] - hits[b]) for b in range(bins) if counts[b]) / len(scores)


class RollingQuality:
    """Log loss and AUC of the last ``window`` (probability, label) pairs."""

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self._loss = utils.Rolling(metrics.LogLoss, window_size=window)
        self._right = metrics.RollingROCAUC(window_size=window)  # pairs ranked right
        self._wrong = metrics.RollingROCAUC(window_size=window)  # on −p: ranked wrong

    def __setstate__(self, state: dict) -> None:
        if "pairs" in state:  # a snapshot of the deque-based version (before 5 Dec)
            self.__init__(state["window"])
            for p, y in state["pairs"]:
                self.add(p, y)
            return
        self.__dict__.update(state)

    def add(self, p: float, y: bool) -> None:
        y = bool(y)
        self._loss.update(y, min(1 - EPS, max(EPS, p)))
        self._right.update(y, p)
        self._wrong.update(y, -p)

    def log_loss(self) -> float | None:
        return self._loss.get() if self._loss.window else None

    def auc(self) -> float | None:
        """Mann-Whitney AUC (ties count ½); ``None`` without both classes in the window."""
        positives = sum(1 for (y, _), _ in self._loss.window if y)
        if not 0 < positives < len(self._loss.window):
            return None
        return (1.0 + self._right.get() - self._wrong.get()) / 2

    def __len__(self) -> int:
        return len(self._loss.window)


def roc_auc(scores: list[float], labels: list[bool]) -> float | None:
    """Mann-Whitney ROC AUC with ties counted half; ``None`` without both classes."""
    quality = RollingQuality(max(1, len(scores)))
    for p, y in zip(scores, labels, strict=True):
        quality.add(p, y)
    return quality.auc()


class RollingCalibration:
    """Expected calibration error of the last ``window`` (probability, label) pairs,
    over ``bins`` equal-width bins, kept as running sums (O(1) per pair).

    >>> c = RollingCalibration(window=3, bins=10)
    >>> for p, y in [(0.9, False), (0.1, False), (0.1, True), (0.9, True)]:
    ...     c.add(p, y)
    >>> len(c), round(c.ece(), 4)  # (0.9, False) has left the window
    (3, 0.3)
    """

    def __init__(self, window: int = 5000, bins: int = 10) -> None:
        self.window = window
        self.bins = bins
        self.pairs: deque[tuple[float, bool]] = deque()
        self._sums = [0.0] * bins
        self._hits = [0] * bins

    def _bin(self, p: float) -> int:
        return min(self.bins - 1, max(0, int(p * self.bins)))

    def add(self, p: float, y: bool) -> None:
        if len(self.pairs) == self.window:
            old_p, old_y = self.pairs.popleft()
            b = self._bin(old_p)
            self._sums[b] -= old_p
            self._hits[b] -= old_y
        self.pairs.append((p, y))
        b = self._bin(p)
        self._sums[b] += p
        self._hits[b] += y

    def ece(self) -> float | None:
        if not self.pairs:
            return None
        return sum(abs(s - h) for s, h in zip(self._sums, self._hits, strict=True)) / len(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)
