"""Online probability calibration: binned, isotonic, forgetting.

Maps a raw probability to the observed frequency of positives among labelled
examples with a similar raw probability. Each bin starts with pseudo-counts at its
own centre (so an untrained calibrator is the identity), counts decay so the map
follows a drifting model, and the map is made monotone by pooling adjacent
violators whenever it is rebuilt (after learning, never while scoring).

>>> cal = OnlineCalibrator(bins=10, prior_weight=2.0)
>>> round(cal.transform(0.33), 3)  # untrained: the identity (between bin centres)
0.33
>>> for _ in range(400):
...     cal.learn_one(0.8, False)  # a model that says 0.8 but is always wrong
>>> cal.transform(0.8) < 0.2
True
"""

from __future__ import annotations

import numpy as np


class OnlineCalibrator:
    """Isotonic binning calibrator learned one ``(raw_probability, label)`` at a time.

    Parameters
    ----------
    bins
        Number of equal-width bins over [0, 1].
    prior_weight
        Pseudo-observations per bin placed at the bin centre.
    decay
        Multiplier applied to all counts at each update (``1.0`` = never forget).
    """

    def __init__(self, bins: int = 20, prior_weight: float = 5.0, decay: float = 0.9995) -> None:
        self.bins = bins
        self.prior_weight = prior_weight
        self.decay = decay
        self.centres = (np.arange(bins) + 0.5) / bins
        self.positives = self.centres * prior_weight
        self.totals = np.full(bins, prior_weight, dtype=float)
        self.n_learned = 0
        self._map = self.centres.copy()
        self._stale = 0  # labels learned since the map was last rebuilt

    def _bin(self, p: float) -> int:
        return min(self.bins - 1, max(0, int(p * self.bins)))

    def learn_one(self, p: float, y: bool) -> None:
        self.positives *= self.decay
        self.totals *= self.decay
        # Keep at least the prior's mass so no bin ever becomes undefined.
        floor = self.prior_weight * 0.5
        low = self.totals < floor
        if low.any():
            scale = floor / self.totals[low]
            self.totals[low] = floor
            self.positives[low] *= scale
        i = self._bin(p)
        self.positives[i] += y
        self.totals[i] += 1.0
        self.n_learned += 1
        self._stale += 1  # the map is rebuilt lazily, not after every label

    def _current_map(self, max_stale: int = 0) -> np.ndarray:
        if self._stale > max_stale:
            # A tiny ramp makes the map strictly increasing: pooled (flat) stretches of
            # the isotonic fit would otherwise tie leads the model had ranked apart.
            self._map = (1 - 1e-4) * _isotonic(self.positives / self.totals, self.totals) \
                + 1e-4 * self.centres  # a convex mix: stays within [0, 1]
            self._stale = 0
        return self._map

    def transform(self, p: float) -> float:
        """Calibrated probability for raw ``p`` (linear between bin centres, and to 0).

        One-at-a-time callers (prequential checks on labels) may see a map up to ten
        labels old; :meth:`transform_many`, which scores leads, always sees it fresh.
        """
        return float(self._interpolate(np.array([p]), self._current_map(max_stale=10))[0])

    def transform_many(self, ps: np.ndarray) -> np.ndarray:
        return self._interpolate(ps, self._current_map())

    def _interpolate(self, ps: np.ndarray, curve: np.ndarray) -> np.ndarray:
        """Linear between bin centres, and from the outer centres to (0, 0) and (1, 1)."""
        xs = np.concatenate(([0.0], self.centres, [1.0]))
        ys = np.concatenate(([0.0], curve, [1.0]))
        return np.interp(ps, xs, ys)


def _isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted pool-adjacent-violators: the closest non-decreasing sequence."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2]
    return np.array([b[0] for b in blocks for _ in range(b[2])], dtype=float)
