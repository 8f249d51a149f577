"""Lead tiers: the probability thresholds a sales team works by (``scoring.hot`` ...).

>>> from schemas.settings import ScoringSettings
>>> [tier_of(p, ScoringSettings()) for p in (0.85, 0.7, 0.4, 0.2)]
['hot', 'warm', 'nurture', 'cold']
"""

from __future__ import annotations

from schemas.settings import ScoringSettings


def tier_of(p: float, s: ScoringSettings) -> str:
    """The lead tier of probability ``p`` under the configured thresholds."""
    if p >= s.hot:
        return "hot"
    if p >= s.warm:
        return "warm"
    return "nurture" if p >= s.nurture else "cold"
