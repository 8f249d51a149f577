"""The statistics of champion and challenger: a stable canary split and a paired test.

**Canary.** :func:`in_canary` puts an investor in a tenant's canary share by a hash of
``tenant`` and investor id: BLAKE2b (8-byte digest, keyed with a fixed personalisation
so the split is not the same as any other use of the same ids), read as an integer
below 2^64 and compared with ``share * 2^64``. The same investor is in or out in
every process, run and replay (Python's ``hash()`` is salted per process), and an
investor in the canary at share s stays in it at any larger share. Over many
investors the share in the canary is the setting within sampling noise: a uniform
hash makes it a binomial proportion (sd 0.5 % at 10,000 investors).

**Paired test.** Champion and challenger predict the same labels, so the evidence
is the per-label difference of their log losses. :class:`PairedLosses` keeps the
latest ``window`` differences; :meth:`PairedLosses.lower_bound` is the one-sided
lower confidence bound of their mean, ``mean - z * sd / sqrt(n)`` (a paired z-test:
with at least tens of labels the t and normal quantiles agree to a few percent,
and the differences of two calibrated models are bounded). Pairing removes what
both models find hard in a label, so the test needs far fewer labels than comparing
two mean losses.

>>> in_canary("acme", "inv-1", 0.0), in_canary("acme", "inv-1", 1.0)
(False, True)
>>> paired = PairedLosses(window=100)
>>> for i in range(60):
...     paired.add(0.70 + 0.01 * (i % 3), 0.60 + 0.01 * (i % 5))
>>> round(paired.mean(), 4), paired.lower_bound(0.95) > 0
(0.09, True)
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from statistics import NormalDist

_SPAN = 1 << 64


def split_point(person: bytes, tenant: str, investor_id: str) -> float:
    """Where ``investor_id`` falls in ``[0, 1)`` for one of ``tenant``'s splits.

    A keyed BLAKE2b of tenant and id: the same in every process and replay, and
    ``person`` (one per split: canary, held-out labels) makes the splits independent.
    """
    digest = hashlib.blake2b(f"{tenant}\x00{investor_id}".encode(), digest_size=8,
                             person=person).digest()
    return int.from_bytes(digest, "big") / _SPAN


def canary_point(tenant: str, investor_id: str) -> float:
    """Where ``investor_id`` falls in ``[0, 1)`` for ``tenant``'s canary split."""
    return split_point(b"esg-canary", tenant, investor_id)


def in_canary(tenant: str, investor_id: str, share: float) -> bool:
    """Whether the challenger decides ``investor_id``'s leads at canary ``share``."""
    return share > 0 and canary_point(tenant, investor_id) < share


def log_loss(p: float, y: bool) -> float:
    p = min(1 - 1e-12, max(1e-12, p))
    return -math.log(p if y else 1 - p)


class PairedLosses:
    """The latest ``window`` per-label log-loss differences ``a - b`` of two models."""

    def __init__(self, window: int) -> None:
        self.diffs: deque[float] = deque(maxlen=window)
        self.total = 0  #: every pair ever added (not only the window)

    def add(self, loss_a: float, loss_b: float) -> None:
        self.diffs.append(loss_a - loss_b)
        self.total += 1

    def __len__(self) -> int:
        return len(self.diffs)

    def mean(self) -> float:
        return math.fsum(self.diffs) / len(self.diffs) if self.diffs else 0.0

    def lower_bound(self, confidence: float) -> float:
        """One-sided lower confidence bound of the mean difference (``-inf`` below 2)."""
        n = len(self.diffs)
        if n < 2:
            return -math.inf
        mean = self.mean()
        variance = math.fsum((d - mean) ** 2 for d in self.diffs) / (n - 1)
        return mean - NormalDist().inv_cdf(confidence) * math.sqrt(variance / n)


__all__ = ["PairedLosses", "canary_point", "in_canary", "log_loss"]
