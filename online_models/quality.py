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
