"""A tenant's most recent labelled examples, kept to fit a retraining challenger at once.

Labels come days to weeks after the behaviour they judge, so when a drift detector
fires, the labels of the changed world are few and already learned by the champion.
A challenger that waited for new ones would be judged weeks later; instead it is
fitted at the detection on the recent labels kept here, and judged at once on the
recent labels of a *held-out* share of investors that it was not fitted on.

* **Bounded.** At most ``capacity`` examples (oldest out first), each only what a fit
  needs: the feature dict, intent, ESG alignment, label and outcome time. No contact
  data, no lineage, and no investor id: an investor is held as a keyed BLAKE2b digest
  (``salt``: the deployment's hashing secret), enough to find its examples again.
* **Erasure-aware.** :meth:`RecentLabels.forget` drops every example of an investor
  (the scorer calls it on the investor's erasure), so no erased investor's features are
  fitted on, judged with or written into a snapshot afterwards.
* **Deterministic.** Examples are kept in the order the scorer learned them (the input's
  replay order), and the held-out split is a BLAKE2b hash of tenant and investor id
  (:func:`holdout_point`, its own personalisation: independent of the canary split),
  the same in every process and replay; an investor is held out or fitted on as a whole.

>>> buffer = RecentLabels(capacity=3, salt=b"s")
>>> for i, y in enumerate([True, False, True, False]):
...     buffer.add("acme", f"inv-{i}", {"a": float(i)}, 0.5, 50.0, y, outcome_s=i * 3600.0, share=0.5)
>>> len(buffer), [e.features["a"] for e in buffer.since(3600.0)]  # the oldest fell out
(3, [1.0, 2.0, 3.0])
>>> buffer.forget("inv-2"), [e.features["a"] for e in buffer.since(0.0)]
(1, [1.0, 3.0])
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import NamedTuple

from esg_leads.online_models.champion import split_point


def holdout_point(tenant: str, investor_id: str) -> float:
    """Where ``investor_id`` falls in ``[0, 1)`` for ``tenant``'s held-out split
    (independent of the canary split: another ``person``)."""
    return split_point(b"esg-holdout", tenant, investor_id)


class Recalled(NamedTuple):
    """One kept example: what a fit and a judgement read (the scorer's
    ``_raw_probability_one`` reads ``features``, ``intent`` and ``esg_alignment``)."""

    subject: bytes  #: keyed digest of the investor id
    outcome_s: float  #: when the label became known (event time, seconds since the epoch)
    features: dict[str, float]
    intent: float
    esg_alignment: float
    label: bool
    held_out: bool  #: judged on, never fitted on, by a challenger started while it is kept


class RecentLabels:
    """The latest ``capacity`` labelled examples of one tenant."""

    def __init__(self, capacity: int, salt: bytes) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.examples: deque[Recalled] = deque(maxlen=capacity)
        self._salt = salt

    def _subject(self, investor_id: str) -> bytes:
        return hashlib.blake2b(investor_id.encode(), digest_size=16, key=self._salt[:64]).digest()

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, tenant: str, investor_id: str, features: dict[str, float], intent: float,
            esg_alignment: float, label: bool, outcome_s: float, share: float) -> None:
        """Keep one example; ``share`` of investors (by :func:`holdout_point`) is held out."""
        self.examples.append(Recalled(
            self._subject(investor_id), outcome_s, dict(features), intent, esg_alignment,
            label, holdout_point(tenant, investor_id) < share))

    def forget(self, investor_id: str) -> int:
        """Drop every example of ``investor_id``; how many were dropped."""
        subject = self._subject(investor_id)
        kept = [e for e in self.examples if e.subject != subject]
        dropped = len(self.examples) - len(kept)
        if dropped:
            self.examples = deque(kept, maxlen=self.examples.maxlen)
        return dropped

    def since(self, start_s: float) -> list[Recalled]:
        """The examples whose label became known at or after ``start_s``, oldest first."""
        return [e for e in self.examples if e.outcome_s >= start_s]

    def resize(self, capacity: int) -> None:
        """Keep at most ``capacity`` (the newest) from now on (settings changed on resume)."""
        if capacity != self.examples.maxlen:
            self.examples = deque(self.examples, maxlen=max(1, capacity))


__all__ = ["Recalled", "RecentLabels", "holdout_point"]
