"""Lead tiers: the probability thresholds a sales team works by (``scoring.hot`` ...).

>>> from esg_leads.schemas.settings import ScoringSettings
>>> [tier_of(p, ScoringSettings()) for p in (0.5, 0.3, 0.1, 0.09)]  # 0.5 / 0.25 / 0.1
['hot', 'warm', 'nurture', 'cold']
"""

from __future__ import annotations

from esg_leads.schemas.settings import ScoringSettings


def tier_of(p: float, s: ScoringSettings) -> str:
    """The lead tier of probability ``p`` under the configured thresholds."""
    if p >= s.hot:
        return "hot"
    if p >= s.warm:
        return "warm"
    return "nurture" if p >= s.nurture else "cold"
