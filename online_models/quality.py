"""Prequential model quality over a sliding window of labels: log loss and ROC AUC.

Each label is scored *before* the model learns from it (test-then-train), so these
are honest out-of-sample figures, cheap enough to export as metrics.

>>> q = RollingQuality(window=4)
>>> for p, y in [(0.9, True), (0.2, False), (0.7, True), (0.4, False)]:
...     q.add(p, y)
>>> q.auc(), round(q.log_loss(), 3)
(1.0, 0.299)
"""

from __future__ import annotations

import math
from collections import deque


def roc_auc(scores: list[float], labels: list[bool]) -> float | None:
    """Mann-Whitney ROC AUC with ties counted half; ``None`` without both classes."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid_rank = (i + j) / 2 + 1
        rank_sum += mid_rank * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


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
        self.pairs: deque[tuple[float, bool]] = deque(maxlen=window)

    def add(self, p: float, y: bool) -> None:
        self.pairs.append((p, y))

    def log_loss(self) -> float | None:
        if not self.pairs:
            return None
        eps = 1e-12
        total = 0.0
        for p, y in self.pairs:
            p = min(1 - eps, max(eps, p))
            total -= math.log(p if y else 1 - p)
        return total / len(self.pairs)

    def auc(self) -> float | None:
        return roc_auc([p for p, _ in self.pairs], [y for _, y in self.pairs])

    def __len__(self) -> int:
        return len(self.pairs)


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
