"""Investor features, the ESG alignment score, intent and engagement readiness.

Every feature is a plain float with a declared meaning, window, range and data
source (:mod:`operators.feature_definitions`; the source drives the "weight of
each data source" in explanations). Shares computed
from few observations are shrunk towards their neutral value, so that one viewed
property cannot make an investor look like an ESG champion.
"""

from __future__ import annotations

import math
import operator
from datetime import datetime

# The feature set is declared in operators.feature_definitions (names, sources, windows,
# transformations, ranges, descriptions; the version derives from them) and re-exported
# here, where the features are computed.
from esg_leads.operators.feature_definitions import FEATURE_NAMES as FEATURE_NAMES
from esg_leads.operators.feature_definitions import FEATURE_RANGES as FEATURE_RANGES
from esg_leads.operators.feature_definitions import FEATURE_SET_VERSION as FEATURE_SET_VERSION
from esg_leads.operators.feature_definitions import FEATURE_SOURCES as FEATURE_SOURCES
from esg_leads.operators.feature_definitions import SOURCES as SOURCES
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.top_properties import UNCHECKED
from esg_leads.schemas.records import FeatureVector, FeedStatus, InvestorContext, PropertyFacts


def clamp_features(features: dict[str, float]) -> list[str]:
    """Force every feature into :data:`FEATURE_RANGES` in place; the names it had to fix.

    A value outside its range (or NaN) means a defect, not bad input: the caller counts
    it (``features_clamped``) rather than let one investor stop the flow, and the
    fuzz tests assert the list stays empty.

    >>> features = {"recency_days": 75.0, "stated_esg": float("nan"), "replies": 2.0}
    >>> clamp_features(features), features
    (['recency_days', 'stated_esg'], {'recency_days': 60.0, 'stated_esg': 0.0, 'replies': 2.0})
    """
    fixed = []
    for name, value in features.items():
        low, high = FEATURE_RANGES[name]
        if not low <= value <= high:  # also true for NaN
            features[name] = low if value != value or value < low else high
            fixed.append(name)
    return fixed
_RANKS = tuple(range(8))
#: Pseudo-observations that shrink shares towards neutral.
_PRIOR_VIEWS = 3.0
#: The dwell a page view is assumed to have before any is seen: a minute (log1p seconds).
TYPICAL_LOG_DWELL = math.log1p(60.0)
#: The highest physical climate-risk score (0-100) a stated risk tolerance accepts when
#: the profile states no ``max_climate_risk`` of its own: thirds of the scale. A stated
#: cap always wins: it is the investor's own word.
RISK_TOLERANCE_LIMIT: dict[str, int] = {"low": 33, "medium": 66, "high": 100}


def _shrunk(num: float, den: float, neutral: float) -> float:
    return (num + _PRIOR_VIEWS * neutral) / (den + _PRIOR_VIEWS)


def _table_features(table: dict[str, float], keys: tuple[str, ...]) -> tuple[float, float]:
    """(shrunk share of the table's weight on ``keys``, Herfindahl concentration)."""
    if not table:
        return 0.0, 0.0
    total = 0.0
    squares = 0.0
    for v in table.values():
        total += v
        squares += v * v
    if total <= 0:
        return 0.0, 0.0
    on_keys = 0.0
    for k in keys:
        on_keys += table.get(k, 0.0)
    share = (on_keys + _PRIOR_VIEWS * 0.5) / (total + _PRIOR_VIEWS) if keys else 0.0
    return share, squares / (total * total)


def thesis_fit(state: InvestorProfileState) -> float:
    """How well the properties the investor engages with most fit the stated thesis, 0-1.

    Each of the most engaged properties (``top_properties``, up to 8, by decayed
    engagement) scores the mean of the checks the profile makes possible: its asset class
    is a target (and not excluded), its country is a target, its value is close to the
    ticket (``exp(-|log(value / ticket_max)| / 2)``). Weighted by engagement and shrunk
    towards 0.5 with 3 pseudo-views, so one click does not make a thesis match; 0.5 with
    no thesis or nothing engaged.

    >>> from esg_leads.operators.investor_profile import InvestorProfileState
    >>> from esg_leads.schemas.records import PropertyFacts
    >>> from datetime import datetime, timezone
    >>> def facts(country, asset, value):
    ...     return PropertyFacts("p", "t", datetime(2026, 1, 1, tzinfo=timezone.utc), country,
    ...                          asset, value, None, None, None, False, False, None, None,
    ...                          None, None, False, 0, False, False)
    >>> s = InvestorProfileState((1.0, 7.0, 30.0))
    >>> s.target_countries, s.target_assets = ("DE",), ("office",)
    >>> from esg_leads.operators.top_properties import TopProperties
    >>> s.top_properties = TopProperties.of({"a": [3.0, facts("DE", "office", 1e6)],
    ...                                      "b": [1.0, facts("FR", "office", 1e6)]})
    >>> round(thesis_fit(s), 4)  # (3 * 1 + 1 * 0.5 + 3 * 0.5) / (4 + 3)
    0.7143
    """
    targets_c, targets_a, excluded = state.target_countries, state.target_assets, state.excluded_assets
    ticket = state.ticket_max
    by_asset = bool(targets_a or excluded)
    if not (by_asset or targets_c or ticket):
        return 0.5  # no check is possible: (0 + 3 * 0.5) / (0 + 3), as below
    total = weight = 0.0
    top = state.top_properties
    n = len(top.facts)
    numbers = top.numbers
    if n and UNCHECKED in numbers[2 * n:]:
        # What the profile and a property's facts give, kept (TopProperties: the sum and
        # number of checks after the weights) until either changes
        # (InvestorProfileState.apply_profile, TopProperties.merge): decay moves only
        # the weight.
        for i, facts in enumerate(top.facts):
            if numbers[2 * n + i] == UNCHECKED:
                numbers[n + i], numbers[2 * n + i] = _thesis_checks(
                    facts, by_asset, targets_a, excluded, targets_c, ticket)
    for i in range(n):
        checked = numbers[2 * n + i]
        if checked:
            w = numbers[i]
            total += w * numbers[n + i] / checked
            weight += w
    return (total + _PRIOR_VIEWS * 0.5) / (weight + _PRIOR_VIEWS)


def _thesis_checks(facts: PropertyFacts, by_asset: bool, targets_a: tuple[str, ...],
                   excluded: tuple[str, ...], targets_c: tuple[str, ...],
                   ticket: float | None) -> tuple[float, int]:
    """(sum, number) of the thesis checks one property passes, added up in the order
    ``sum`` adds a list of them (from 0), so the doubles are that sum's."""
    checked = 0
    fit = 0
    if by_asset:
        fit += float(facts.asset_class not in excluded
                     and (not targets_a or facts.asset_class in targets_a))
        checked = 1
    if targets_c:
        fit += float(facts.country in targets_c)
        checked += 1
    if ticket and facts.value_eur:
        fit += math.exp(-abs(math.log(facts.value_eur / ticket)) / 2)
        checked += 1
    return fit, checked


def risk_limit(state: InvestorProfileState) -> int | None:
    """The highest climate-risk score the investor accepts: the stated cap, else the
    stated tolerance's (:data:`RISK_TOLERANCE_LIMIT`), else ``None``.

    >>> from esg_leads.operators.investor_profile import InvestorProfileState
    >>> s = InvestorProfileState((1.0,))
    >>> s.risk_tolerance = "low"
    >>> risk_limit(s)
    33
    >>> s.max_climate_risk = 50
    >>> risk_limit(s)
    50
    """
    if state.max_climate_risk is not None:
        return state.max_climate_risk
    return RISK_TOLERANCE_LIMIT.get(state.risk_tolerance) if state.risk_tolerance else None


def risk_fit(state: InvestorProfileState) -> float:
    """Share of the most engaged properties whose physical climate risk is within the
    investor's limit (:func:`risk_limit`), 0-1: weighted by engagement, properties without
    climate data left out, shrunk towards 0.5 with 3 pseudo-views; 0.5 with no limit."""
    limit = risk_limit(state)
    if limit is None:
        return 0.5
    within = weight = 0.0
    for w, facts in state.top_properties.values():
        if facts.max_climate_risk is not None:
            within += w * (facts.max_climate_risk <= limit)
            weight += w
    return (within + _PRIOR_VIEWS * 0.5) / (weight + _PRIOR_VIEWS)


def compute_features(state: InvestorProfileState, as_of: datetime) -> dict[str, float]:
    """The feature dict of ``state`` at ``as_of`` (state must already be decayed there)."""
    (counts, depth, views_30d, reports_30d, windows_30d, value_n, value_sum, _, c,
     ranks) = state.counters()
    n = c[0]
    if n:
        inv = 1.0 / n
        expected_high, expected_certified, expected_low_risk = c[5] * inv, c[6] * inv, c[7] * inv
        mean_age = c[8] * inv
    else:
        expected_high = expected_certified = expected_low_risk = 0.0
        mean_age = 365.0
    den = n + _PRIOR_VIEWS
    high = (c[1] + _PRIOR_VIEWS * expected_high) / den
    certified = (c[2] + _PRIOR_VIEWS * expected_certified) / den
    low_risk = (c[3] + _PRIOR_VIEWS * expected_low_risk) / den
    high_lift = high - expected_high
    cert_lift = certified - expected_certified
    risk_lift = low_risk - expected_low_risk
    rank_n = sum(ranks)
    if rank_n:
        mean_rank = sum(map(operator.mul, _RANKS, ranks)) / rank_n
        pref_epc = (_shrunk(sum(ranks[: state.min_epc_rank + 1]), rank_n, 0.5)
                    if state.min_epc_rank is not None else 0.0)
    else:
        mean_rank, pref_epc = 3.5, 0.0
    profile = state.profile_features()
    stated = profile["stated_esg"]
    behaviour = (high + certified + low_risk) / 3 if n else 0.0
    ticket_max = state.ticket_max
    if ticket_max and value_n:
        mean_log_value = value_sum / value_n
        ticket_fit = math.exp(-abs(mean_log_value - math.log(ticket_max)) / 2)
    else:
        ticket_fit = 0.0
    if ticket_max and state.catalog_log_value is not None:
        # How well the investor's ticket fits the fund's typical lot size.
        catalog_fit = math.exp(-abs(math.log(ticket_max) - state.catalog_log_value) / 2)
    else:
        catalog_fit = 0.0
    # Days since the activity before this score: the previous window for a score on
    # activity, the last window for a re-score after a silence.
    previous = state.previous_active if state.last_active == as_of else state.last_active
    recency = min(60.0, (as_of - previous).total_seconds() / 86_400) if previous else 60.0
    tenure = min(90.0, (as_of - state.first_seen).total_seconds() / 86_400) if state.first_seen else 0.0
    log1p = math.log1p
    (windows, events, views, depth_total, reports, green_s, green_n, other_s, other_n,
     seek_sum, seek_n) = state.totals
    per_window = 1.0 / windows if windows else 0.0
    viewed = green_n + other_n
    dwell_per_view = log1p((green_s + other_s) / viewed) if viewed else 0.0
    # Lingering on ESG-strong properties more than on others: log ratio of mean dwell.
    green_ratio = (math.log((green_s / green_n + 10) / (other_s / other_n + 10))
                   if green_n and other_n else 0.0)
    # Intent shows as a rate: counts mean little without how long the investor has been
    # known (the first profile or engagement; first_seen in older snapshots).
    first_known = state.first_known or state.first_seen
    known = (min(90.0, max(0.0, (as_of - first_known).total_seconds() / 86_400))
             if first_known else 0.0)
    geo_match, geo_concentration = _table_features(state.countries, state.target_countries)
    asset_match, asset_concentration = _table_features(state.assets, state.target_assets)
    return {
        "eng_1d": log1p(counts[0]),
        "eng_7d": log1p(counts[1]),
        "eng_30d": log1p(counts[2]),
        "depth_7d": log1p(depth[1]),
        "depth_30d": log1p(depth[2]),
        "views_30d": log1p(views_30d),
        "esg_reports_30d": log1p(reports_30d),
        "meetings": float(min(state.meetings, 5)),
        "replies": float(min(state.replies, 10)),
        "active_windows_30d": log1p(windows_30d),
        "recency_days": recency,
        "tenure_days": tenure,
        # Rates separate how engaged an investor is from how long we have known them.
        "windows_per_day": windows / max(1.0, tenure),
        "events_per_window": log1p(events * per_window),
        "views_per_window": log1p(views * per_window),
        "depth_per_window": log1p(depth_total * per_window),
        "esg_report_rate": reports * per_window,
        "dwell_per_view": dwell_per_view,
        "green_dwell_ratio": green_ratio,
        "high_epc_lift": high_lift,
        "epc_quality": 1.0 - mean_rank / 7.0,
        "certified_lift": cert_lift,
        "low_risk_lift": risk_lift,
        "esg_content_lift": (high_lift + cert_lift + risk_lift) / 3,
        "verified_share": _shrunk(c[4], n, 0.5),
        "data_freshness": math.exp(-mean_age / 365.0),
        "pref_match_epc": pref_epc,
        "pref_match_geo": geo_match,
        "pref_match_asset": asset_match,
        "stated_esg": stated,
        "stated_gap": stated - behaviour if stated else 0.0,
        "geo_concentration": geo_concentration,
        "asset_concentration": asset_concentration,
        "ticket_fit": ticket_fit,
        "ticket_catalog_fit": catalog_fit,
        "ticket_known": profile["ticket_known"],
        "profile_completeness": profile["profile_completeness"],
        "contactable": profile["contactable"],
        "institutional": profile["institutional"],
        "seek_dwell": (seek_sum + _PRIOR_VIEWS * TYPICAL_LOG_DWELL) / (seek_n + _PRIOR_VIEWS),
        "known_days": known,
        "thesis_fit": thesis_fit(state),
        "risk_fit": risk_fit(state),
    }


#: Weight of each named component in the ESG alignment (they sum to 1).
ALIGNMENT_WEIGHTS: dict[str, float] = {
    "energy_efficiency": 0.25, "certification": 0.15, "climate_resilience": 0.1,
    "esg_research": 0.2, "stated_commitment": 0.15, "preference_fit": 0.15,
}
_W_EFFICIENCY, _W_CERTIFICATION, _W_CLIMATE, _W_RESEARCH, _W_STATED, _W_FIT = (
    ALIGNMENT_WEIGHTS[k] for k in ("energy_efficiency", "certification", "climate_resilience",
                                   "esg_research", "stated_commitment", "preference_fit"))


def esg_alignment(features: dict[str, float], state: InvestorProfileState) -> tuple[float, dict[str, float]]:
    """ESG alignment 0-100 and its named components (each 0-100, 50 = catalog-neutral).

    Behaviour is read *relative to the catalog*: looking at green properties in an
    all-green catalog says little; seeking them out in a brown one says a lot.
    """
    # ``x if x > 0.0 else 0.0`` is ``max(0.0, x)`` and ``x if x < 100.0 else 100.0`` is
    # ``min(100.0, x)`` for every double, NaN and -0.0 included, without two calls each.
    x = 50 + 125 * features["high_epc_lift"]
    x = x if x > 0.0 else 0.0
    efficiency = x if x < 100.0 else 100.0
    x = 50 + 125 * features["certified_lift"]
    x = x if x > 0.0 else 0.0
    certification = x if x < 100.0 else 100.0
    x = 50 + 125 * features["low_risk_lift"]
    x = x if x > 0.0 else 0.0
    climate = x if x < 100.0 else 100.0
    x = 100 * (1 - math.exp(-1.5 * features["esg_reports_30d"]))
    x = x if x > 0.0 else 0.0
    research = x if x < 100.0 else 100.0
    x = 100 * features["stated_esg"]
    x = x if x > 0.0 else 0.0
    stated = x if x < 100.0 else 100.0
    if state.min_epc_rank is not None:
        x = 100 * features["pref_match_epc"]
        x = x if x > 0.0 else 0.0
        fit = x if x < 100.0 else 100.0
    else:
        fit = 50.0
    score = (_W_EFFICIENCY * efficiency + _W_CERTIFICATION * certification
             + _W_CLIMATE * climate + _W_RESEARCH * research
             + _W_STATED * stated + _W_FIT * fit)
    return round(score, 2), {
        "energy_efficiency": round(efficiency, 2),
        "certification": round(certification, 2),
        "climate_resilience": round(climate, 2),
        "esg_research": round(research, 2),
        "stated_commitment": round(stated, 2),
        "preference_fit": round(fit, 2),
    }


def intent_score(features: dict[str, float]) -> float:
    """Purchase intent 0-100 from depth, frequency and concentration of engagement."""
    raw = (
        0.6 * features["depth_7d"]
        + 0.3 * features["depth_30d"]
        + 0.25 * features["eng_7d"]
        + 0.5 * features["meetings"]
        + 0.15 * features["replies"]
        + 0.3 * features["geo_concentration"] * features["views_30d"]
    )
    return round(100 * (1 - math.exp(-raw / 2.5)), 2)


def engagement_readiness(features: dict[str, float], intent: float) -> float:
    """How ready the investor is to be contacted now, 0-100."""
    if not features["contactable"]:
        return 0.0
    freshness = math.exp(-features["recency_days"] / 21)
    return round(100 * (0.35 + 0.65 * intent / 100) * (0.4 + 0.6 * freshness), 2)


def investor_context(state: InvestorProfileState) -> InvestorContext:
    """The slow-moving facts later agents (compliance, outreach, handoff) need
    (built by the state, which keeps it until they change)."""
    return state.context()


#: The features' ranges as two tuples in the feature set's order: a vector in range
#: (every one, unless a defect) is checked by two C-level passes.
_LOWS = tuple(FEATURE_RANGES[name][0] for name in FEATURE_NAMES)
_HIGHS = tuple(FEATURE_RANGES[name][1] for name in FEATURE_NAMES)


def in_ranges(values: tuple[float, ...]) -> bool:
    """Whether :func:`clamp_features` would leave the features with these values (in
    :data:`FEATURE_NAMES` order) as they are: two passes in C instead of one in Python.

    >>> in_ranges(tuple(low for low, _ in FEATURE_RANGES.values()))
    True
    """
    le = operator.le
    return all(map(le, _LOWS, values)) and all(map(le, values, _HIGHS))  # False on a NaN


def build_vector(state: InvestorProfileState, tenant: str, investor_id: str,
                 as_of: datetime, feeds: FeedStatus | None = None) -> FeatureVector:
    features = compute_features(state, as_of)
    values = tuple(features.values())  # in FEATURE_NAMES' order (test_feature_definitions)
    if in_ranges(values):
        clamped: list[str] = []
    else:
        clamped = clamp_features(features)
        values = tuple(features.values())
    alignment, components = esg_alignment(features, state)
    intent = intent_score(features)
    n = state.content[0]
    context = investor_context(state)
    # Positional, in FeatureVector's field order: 17 keywords cost more than the tuple.
    return _make_vector((
        tenant, investor_id, as_of, FEATURE_SET_VERSION, features, values, alignment,
        components, intent, engagement_readiness(features, intent),
        max(0.0, round(state.content[8] / n, 1)) if n else None,  # data_freshness_days
        investor_context(state),
        state.lineage,  # the state's own packed references: shared, not copied
        state.ingest_ms if state.last_active == as_of else None,
        tuple(clamped), state.lineage_omitted, feeds))


_make_vector = FeatureVector._make
