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

from river import metrics, utils

#: Probabilities are clamped to [EPS, 1 − EPS] before the log: a certain mistake costs
#: −log(1e-12) ≈ 27.6, not infinity (River's own clamp, 1e-15, never binds after ours).
EPS = 1e-12


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
