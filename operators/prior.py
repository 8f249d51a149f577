"""The cold-start prior: a transparent rule-based probability from intent and ESG fit.

Used while a tenant has few labels of its own (blended out as labels arrive, see
:mod:`operators.scoring`). The rule is deliberately simple enough to read aloud:
intent drives most of it, ESG alignment above the catalog's mix adds to it, a
complete profile and a lawful contact route add a little.

>>> p, reasons = prior_probability({"contactable": 1.0, "profile_completeness": 1.0},
...                                intent=80.0, esg_alignment=70.0)
>>> round(p, 3), reasons[0]
(0.515, 'intent 80/100 (engagement depth and frequency)')
>>> round(prior_probability({}, intent=5.0, esg_alignment=50.0)[0], 3)
0.031
"""

from __future__ import annotations

import math

import numpy as np

#: Logit weights of the rule (see module docstring).
BASE = -3.6
INTENT = 3.2
ALIGNMENT = 1.0
PROFILE = 0.4
CONTACTABLE = 0.3


def prior_probability(features: dict[str, float], intent: float,
                      esg_alignment: float) -> tuple[float, list[str]]:
    """Prior probability of qualification and the reasons behind it, strongest first."""
    terms = {
        f"intent {intent:.0f}/100 (engagement depth and frequency)": INTENT * intent / 100,
        f"ESG alignment {esg_alignment:.0f}/100 vs catalog mix": ALIGNMENT * (esg_alignment - 50) / 50,
        "profile completeness": PROFILE * features.get("profile_completeness", 0.0),
        "lawful contact route": CONTACTABLE * features.get("contactable", 0.0),
    }
    logit = BASE + sum(terms.values())
    reasons = [name for name, value in sorted(terms.items(), key=lambda kv: -abs(kv[1])) if value]
    return 1.0 / (1.0 + math.exp(-logit)), reasons


def prior_many(completeness: np.ndarray, contactable: np.ndarray, intent: np.ndarray,
               esg_alignment: np.ndarray) -> np.ndarray:
    """:func:`prior_probability` for many leads at once (the same rule, vectorised)."""
    logit = (BASE + INTENT * intent / 100 + ALIGNMENT * (esg_alignment - 50) / 50
             + PROFILE * completeness + CONTACTABLE * contactable)
    return 1.0 / (1.0 + np.exp(-logit))
