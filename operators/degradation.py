"""Degradation when a signal source is stale, and the intervals of ESG alignment and readiness.

Everything here is a function of the lead's event time ``t`` (its ``as_of``) and of
the feed status its vector carries (:class:`~schemas.records.SourceFeed`, from the
catalog's :class:`~operators.feed_health.FeedWatch`): never of a wall clock, so a
replay decides as the live run did.

**Silence and trust.** A watched source ``k`` with limit ``L`` (its
``sources.<name>.max_staleness``) has been silent at ``t`` for ``a = t - (its latest
signal at or before t)`` (found in its last signal or its recorded outages). The status
reaches the investor shards when a source goes stale or recovers (with the ``feed_stale``
and ``feed_recovered`` alerts, before anything the same event closes), so a lead names a
source stale exactly while its alert is open. Its trust is

    trust_k(t) = 1                          if a <= L
               = 2 ** (-(a - L) / L)        otherwise

so what the source stated counts half for each further ``max_staleness`` of silence.

**Stale share.** ``q(t) = sum_k c_k * (1 - trust_k(t))`` where ``c_k`` is the share of the
catalog's properties whose current facts source ``k`` stated (0 <= q <= 1).

**Features.** Every feature whose data source is property data (``property_epc``,
``certifications``, ``climate_risk`` in :mod:`operators.feature_definitions`) is blended
towards its reference value ``r_f``, the value it takes without property evidence
(:data:`REFERENCE`): ``x'_f = (1 - q) x_f + q r_f``. The ESG components read from the
same data (energy efficiency, certification, climate resilience) move towards 50, the
catalog-neutral value: ``c' = (1 - q) c + q 50``; the alignment moves by
``sum_c w_c (c' - c)`` with the alignment's weights.

**Weight to the prior.** ``s = q * m`` is the share of the lead's evidence that is stale,
``m`` the property share of its source weights (``explanation.source_weights``, from the
fresh features). Each bagged member becomes ``(1 - s) member(x') + s prior(x')``: the
rule-based prior's weight ``w`` becomes ``w + (1 - w) s``.

**Score interval.** On the logit scale, ``variance' = variance + STALE_VARIANCE * s``,
``variance`` being the interval's variance from the fresh inputs; it is centred on the
degraded probability. Its half-width ``z sqrt(variance')`` grows with ``s``, so with
staleness, and the interval always contains the point estimate.

**ESG alignment interval** (points, same level as the score's). Each component read from
viewed properties has variance ``S^2 (1 / (1 + n) + (1 - f)^2 + q)`` with ``S = 50``
(neutral to either end), ``n`` the decayed count of property views (``expm1(views_30d)``),
``f`` the data freshness: few views, old facts and stale feeds each widen it. The
preference fit (only when the investor stated a minimum EPC) has ``S^2 / (1 + n)``;
research (a count of reports read) and stated commitment (a statement) are read as they
are. ``sd = sqrt(sum_c w_c^2 var_c)``; the interval is ``alignment +- z sd`` cut to 0-100.

**Readiness interval** (points). Readiness is ``100 (0.35 + 0.65 I/100)(0.4 + 0.6 g)``
with intent ``I`` and ``g = exp(-recency_days / 21)``; intent read from ``e`` decayed
engagement events (``expm1(eng_30d)``) is uncertain by ``25 / sqrt(1 + e)`` points, so
``sd = 0.65 (0.4 + 0.6 g) 25 / sqrt(1 + e)``; an investor with no lawful contact route is
not ready (0, no interval to speak of: 0-0). Readiness reads no property data, so a stale
property feed leaves it as it is: only the sources it reads could widen it, and the
feeds watched today are property-signal providers.

>>> feed = SourceFeed("epc-register", 86_400.0, 0.0, 0.5)
>>> silence(feed, 3 * 86_400.0), trust(silence(feed, 3 * 86_400.0), 86_400.0)
(259200.0, 0.25)
>>> stale_share(FeedStatus("acme", 3 * 86_400.0, (feed,)), 3 * 86_400.0)
0.375
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from esg_leads.operators.feature_definitions import FEATURE_NAMES, FEATURE_SOURCES, SOURCES
from esg_leads.operators.features import ALIGNMENT_WEIGHTS
from esg_leads.schemas.records import FeatureVector, FeedStatus, SourceFeed

#: The feature sources a property-signal provider feeds.
PROPERTY_SOURCES = ("property_epc", "certifications", "climate_risk")
#: Each property-derived feature's value without property evidence (what
#: :func:`operators.features.compute_features` gives an investor who viewed nothing):
#: lifts 0 (the catalog's mix), EPC quality of the middle rank 3.5, verified share at its
#: neutral 0.5, freshness of a year-old mean age, risk fit at its neutral 0.5.
REFERENCE: dict[str, float] = {
    "green_dwell_ratio": 0.0,
    "high_epc_lift": 0.0,
    "epc_quality": 0.5,
    "certified_lift": 0.0,
    "low_risk_lift": 0.0,
    "esg_content_lift": 0.0,
    "verified_share": 0.5,
    "data_freshness": math.exp(-1.0),
    "risk_fit": 0.5,
}
#: ESG components read from property data, and their neutral value.
PROPERTY_COMPONENTS = ("energy_efficiency", "certification", "climate_resilience")
NEUTRAL = 50.0
#: Logit variance added per unit of stale evidence share (see the module docstring).
STALE_VARIANCE = 1.0
#: Spread of a component read from viewed properties, neutral to either end (points).
COMPONENT_SPREAD = 50.0
#: Spread of intent read from no engagement at all (points).
INTENT_SPREAD = 25.0

_COLUMNS = np.array([FEATURE_NAMES.index(f) for f in REFERENCE])
_REFERENCE = np.array(list(REFERENCE.values()))
if sorted(REFERENCE) != sorted(f for f, s in FEATURE_SOURCES.items() if s in PROPERTY_SOURCES):
    raise ValueError("REFERENCE must name every property-derived feature, and only those")
_VIEWS = FEATURE_NAMES.index("views_30d")
_FRESHNESS = FEATURE_NAMES.index("data_freshness")


def silence(feed: SourceFeed, t: float, read_at: float = math.inf) -> float:
    """Seconds ``feed`` had been silent at event time ``t``, as known at ``read_at``.

    0 when it was not silent for longer than its limit (shorter silences do not matter).
    After ``read_at`` a source stale then is taken to be silent still, any other to be
    well: each change is sent on at once (a source going stale or recovering sends a
    new status), so no news is news of no change.
    """
    if t > read_at:
        silent = silence(feed, read_at)
        return t - read_at + silent if silent > feed.max_staleness_s else 0.0
    if t >= feed.last_signal_s:
        return t - feed.last_signal_s
    for start, end in feed.gaps:
        if start <= t < end:
            return t - start
    return 0.0


def trust(silent_s: float, limit_s: float) -> float:
    """How much of what a source silent for ``silent_s`` stated still counts (0-1]."""
    if silent_s <= limit_s:
        return 1.0
    return 2.0 ** (-(silent_s - limit_s) / limit_s)


def stale_share(feeds: FeedStatus | None, t: float) -> float:
    """``q``: the share of the catalog's property facts that is stale at ``t``."""
    if feeds is None:
        return 0.0
    q = 0.0
    for feed in feeds.sources:
        q += feed.catalog_share * (1.0 - trust(silence(feed, t, feeds.read_at_s),
                                               feed.max_staleness_s))
    return min(1.0, q)


def stale_sources(feeds: FeedStatus | None, t: float) -> list[dict]:
    """The explanation's list of the sources stale at ``t``: since when, how much they
    are still trusted, how much of the catalog they stated."""
    out = []
    for feed in feeds.sources if feeds is not None else ():
        silent = silence(feed, t, feeds.read_at_s)
        if silent > feed.max_staleness_s:
            since = t - silent
            out.append({
                "source": feed.source,
                "last_signal": datetime.fromtimestamp(since, timezone.utc),
                "stale_since": datetime.fromtimestamp(since + feed.max_staleness_s, timezone.utc),
                "trust": round(trust(silent, feed.max_staleness_s), 4),
                "catalog_share": round(feed.catalog_share, 4),
            })
    return out


def degrade_components(components: dict[str, float], alignment: float,
                       q: float) -> tuple[float, dict[str, float]]:
    """The ESG alignment and components with a stale share ``q`` of property data.

    >>> degrade_components({"energy_efficiency": 90.0, "certification": 50.0}, 70.0, 0.5)
    (65.0, {'energy_efficiency': 70.0, 'certification': 50.0})
    """
    if q <= 0.0:
        return alignment, components
    out = dict(components)
    shift = 0.0
    for name in PROPERTY_COMPONENTS:
        if name in out:
            value = round((1.0 - q) * out[name] + q * NEUTRAL, 2)
            shift += ALIGNMENT_WEIGHTS[name] * (value - out[name])
            out[name] = value
    return round(min(100.0, max(0.0, alignment + shift)), 2), out


def degrade_features(X: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Feature rows ``X`` with the property-derived columns blended towards
    :data:`REFERENCE` by each row's stale share ``q``."""
    out = X.copy()
    qc = q[:, None]
    out[:, _COLUMNS] = (1.0 - qc) * X[:, _COLUMNS] + qc * _REFERENCE
    return out


class Degradation(NamedTuple):
    """What stale feeds change in one batch of leads (see the module docstring)."""

    q: np.ndarray  #: stale share of property facts, per lead
    s: np.ndarray  #: stale share of each lead's evidence (q times its property share)
    X: np.ndarray  #: the degraded feature rows
    alignment: np.ndarray  #: the degraded ESG alignment
    components: list[dict[str, float]]
    explanations: list[list[dict]]  #: stale sources per lead (empty: none)

    @property
    def variance(self) -> np.ndarray:
        """Logit variance the score's interval gains."""
        return STALE_VARIANCE * self.s

    def to_prior(self, members: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """Bagged members with the stale share of the evidence moved to the prior."""
        s = self.s[:, None]
        return (1.0 - s) * members + s * prior[:, None]


def assess(vectors: Sequence[FeatureVector], X: np.ndarray, source_shares: np.ndarray,
           ) -> Degradation | None:
    """The degradation of a batch; ``None`` when no lead's feeds are stale at its time.

    ``source_shares`` has one row per lead, columns in
    :data:`operators.feature_definitions.SOURCES` order (unnormalised is fine).
    """
    if all(v.feeds is None for v in vectors):  # no source watched: the common case
        return None
    q = np.array([stale_share(v.feeds, v.as_of.timestamp()) for v in vectors])
    if not q.any():
        return None
    columns = [SOURCES.index(s) for s in PROPERTY_SOURCES]
    totals = np.add.reduce(source_shares, axis=1)
    m = np.divide(np.add.reduce(source_shares[:, columns], axis=1), totals,
                  out=np.zeros_like(totals), where=totals > 0)
    alignment, components, explanations = [], [], []
    for vector, qi in zip(vectors, q.tolist(), strict=True):
        a, c = degrade_components(vector.esg_components, vector.esg_alignment, qi)
        alignment.append(a)
        components.append(c)
        explanations.append(stale_sources(vector.feeds, vector.as_of.timestamp()) if qi else [])
    return Degradation(q, q * m, degrade_features(X, q), np.array(alignment), components,
                       explanations)


@functools.lru_cache(maxsize=8)
def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _interval(centre: float, sd: float, level: float) -> dict:
    half = _z(level) * sd
    return {"low": round(max(0.0, centre - half), 2), "high": round(min(100.0, centre + half), 2),
            "level": level}


def alignment_sd(features: dict[str, float], min_epc_stated: bool, q: float) -> float:
    """Standard deviation (points) of the ESG alignment; see the module docstring.

    >>> round(alignment_sd({"views_30d": 0.0, "data_freshness": 1.0}, False, 0.0), 4)
    15.411
    """
    n = math.expm1(features["views_30d"])
    stale_data = 1.0 - features["data_freshness"]
    read = COMPONENT_SPREAD ** 2 * (1.0 / (1.0 + n) + stale_data * stale_data + q)
    w = ALIGNMENT_WEIGHTS
    variance = sum(w[c] ** 2 for c in PROPERTY_COMPONENTS) * read
    if min_epc_stated:
        variance += w["preference_fit"] ** 2 * COMPONENT_SPREAD ** 2 / (1.0 + n)
    return math.sqrt(variance)


def alignment_interval(alignment: float, features: dict[str, float], min_epc_stated: bool,
                       q: float, level: float) -> dict:
    """The ESG alignment's interval at ``level`` (points, within 0-100).

    ``features`` are the lead's fresh features (the sampling and data-age terms read
    what was seen; the stale share ``q`` adds the outage's term).
    """
    return _interval(alignment, alignment_sd(features, min_epc_stated, q), level)


def readiness_sd(features: dict[str, float]) -> float:
    """Standard deviation (points) of engagement readiness; see the module docstring.

    >>> readiness_sd({"contactable": 1.0, "recency_days": 0.0, "eng_30d": 0.0})
    16.25
    """
    if not features["contactable"]:
        return 0.0
    g = math.exp(-features["recency_days"] / 21)
    events = math.expm1(features["eng_30d"])
    return 0.65 * (0.4 + 0.6 * g) * INTENT_SPREAD / math.sqrt(1.0 + events)


def readiness_interval(readiness: float, features: dict[str, float], level: float) -> dict:
    """Engagement readiness's interval at ``level`` (points, within 0-100)."""
    return _interval(readiness, readiness_sd(features), level)


__all__ = ["Degradation", "REFERENCE", "STALE_VARIANCE", "alignment_interval", "assess",
           "degrade_components", "degrade_features", "readiness_interval", "silence",
           "stale_share", "stale_sources", "trust"]
