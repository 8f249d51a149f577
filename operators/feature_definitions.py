"""The feature set, declared: one definition per feature, and the version derived from them.

Each :class:`FeatureDefinition` says what a feature is — its data source (which
drives the "weight of each data source" in explanations), the window it looks
at, the transformation that makes it a number, its documented range and what it
means. Everything else about features derives from :data:`DEFINITIONS`: the
model's column order (:data:`FEATURE_NAMES`), the sources, the ranges that
:func:`operators.features.clamp_features` enforces, and :data:`FEATURE_SET_VERSION`.

The version is a human name plus a short SHA-256 of a canonical encoding of the
definitions, so any change to a definition (a new feature, another window or
range, a reworded transformation) changes the version, and a model trained on
one feature set is never mistaken for one of another. The hash is of sorted-key
JSON, never Python's ``hash()``: it is the same in every process and on every
machine.

>>> FEATURE_SET_VERSION.startswith(FEATURE_SET_NAME + "+") and len(FEATURE_SET_VERSION) == 13
True
>>> feature_set_version(DEFINITIONS) == FEATURE_SET_VERSION
True
>>> changed = (DEFINITIONS[0]._replace(window="decayed, half-life 2 days"), *DEFINITIONS[1:])
>>> feature_set_version(changed) == FEATURE_SET_VERSION
False
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import NamedTuple

#: The data sources explanations weigh; every feature belongs to exactly one.
SOURCES: tuple[str, ...] = ("property_epc", "certifications", "climate_risk", "engagement", "profile")
#: The human part of the version: bump it when the meaning of the set changes on purpose.
FEATURE_SET_NAME = "fs-3"


class FeatureDefinition(NamedTuple):
    """What one feature is; see the module docstring."""

    name: str
    source: str  #: one of :data:`SOURCES`
    window: str  #: the stretch of history it summarises
    transformation: str  #: how the inputs become the number
    range: tuple[float, float]  #: documented bounds; a value outside them is a defect
    description: str


_LOG_COUNT = (0.0, 50.0)  # log1p of a count: e**50 events is beyond any input
_SHARE = (0.0, 1.0)
_LIFT = (-1.0, 1.0)  # a share minus its expectation
_SHORT, _MEDIUM, _LONG = (f"decayed, half-life features.half_lives[{i}] (default {d})"
                          for i, d in enumerate(("1 day", "7 days", "30 days")))
_CONTENT = "decayed, 30-day half-life (viewed content)"
_SINCE = "since first seen (not decayed)"
_PROFILE = "the investor's current stated profile"
_NOW = "at scoring time"
_SHRUNK = "shrunk towards neutral with 3 pseudo-views"


def _d(name: str, source: str, window: str, transformation: str, bounds: tuple[float, float],
       description: str) -> FeatureDefinition:
    return FeatureDefinition(name, source, window, transformation, bounds, description)


#: The feature set, in the model's column order.
DEFINITIONS: tuple[FeatureDefinition, ...] = (
    _d("eng_1d", "engagement", _SHORT, "log1p(count)", _LOG_COUNT, "engagement events"),
    _d("eng_7d", "engagement", _MEDIUM, "log1p(count)", _LOG_COUNT, "engagement events"),
    _d("eng_30d", "engagement", _LONG, "log1p(count)", _LOG_COUNT, "engagement events"),
    _d("depth_7d", "engagement", _MEDIUM, "log1p(sum of DEPTH_WEIGHTS per action)", _LOG_COUNT,
       "depth of interest: downloads, webinars, replies, meetings, calls"),
    _d("depth_30d", "engagement", _LONG, "log1p(sum of DEPTH_WEIGHTS per action)", _LOG_COUNT,
       "depth of interest: downloads, webinars, replies, meetings, calls"),
    _d("views_30d", "engagement", _CONTENT, "log1p(count)", _LOG_COUNT, "property page views"),
    _d("esg_reports_30d", "engagement", _CONTENT, "log1p(count)", _LOG_COUNT,
       "ESG report downloads"),
    _d("meetings", "engagement", _SINCE, "min(count, 5)", (0.0, 5.0), "meetings booked"),
    _d("replies", "engagement", _SINCE, "min(count, 10)", (0.0, 10.0), "replies to outreach"),
    _d("active_windows_30d", "engagement", _CONTENT, "log1p(count)", _LOG_COUNT,
       "windows in which the investor was active"),
    _d("recency_days", "engagement", _NOW, "min(60, days since the activity before this score)",
       (0.0, 60.0), "how long the investor had been quiet; 60 when never active before"),
    _d("tenure_days", "engagement", _SINCE, "min(90, days since first seen)", (0.0, 90.0),
       "how long we have known the investor"),
    _d("windows_per_day", "engagement", _SINCE, "active windows / max(1, tenure_days)",
       (0.0, 1e6), "how often the investor is active, apart from how long we have known them"),
    _d("events_per_window", "engagement", _SINCE, "log1p(events / active windows)", _LOG_COUNT,
       "engagement events per active window"),
    _d("views_per_window", "engagement", _SINCE, "log1p(property views / active windows)",
       _LOG_COUNT, "property views per active window"),
    _d("depth_per_window", "engagement", _SINCE, "log1p(depth / active windows)", _LOG_COUNT,
       "depth of interest per active window"),
    _d("esg_report_rate", "engagement", _SINCE, "ESG report downloads / active windows",
       (0.0, 1e6), "ESG reports read per active window"),
    _d("dwell_per_view", "engagement", _SINCE, "log1p(mean seconds per property view)",
       _LOG_COUNT, "time spent on a property page"),
    # Dwell is at most a day (86,400 s), so the log ratio stays within +-10.
    _d("green_dwell_ratio", "property_epc", _SINCE,
       "log((mean dwell on ESG-strong + 10) / (mean dwell on others + 10)), 0 without both",
       (-10.0, 10.0), "lingering on energy-efficient or certified properties more than others"),
    _d("high_epc_lift", "property_epc", _CONTENT,
       f"share of viewed properties with EPC A+ to B ({_SHRUNK}) - the catalog's share",
       _LIFT, "seeking out energy-efficient properties, relative to the catalog"),
    _d("epc_quality", "property_epc", _CONTENT, "1 - mean EPC rank / 7 (3.5 without EPCs)",
       _SHARE, "energy class of what the investor looks at"),
    _d("certified_lift", "certifications", _CONTENT,
       f"share of viewed properties certified ({_SHRUNK}) - the catalog's share",
       _LIFT, "seeking out certified (BREEAM, LEED, NABERS...) properties"),
    _d("low_risk_lift", "climate_risk", _CONTENT,
       f"share of viewed properties of low climate risk ({_SHRUNK}) - the catalog's share",
       _LIFT, "seeking out properties of low physical climate risk"),
    _d("esg_content_lift", "property_epc", _CONTENT,
       "mean of high_epc_lift, certified_lift, low_risk_lift", _LIFT,
       "ESG content of behaviour, relative to the catalog"),
    _d("verified_share", "certifications", _CONTENT,
       f"share of viewed facts third-party verified ({_SHRUNK})", _SHARE,
       "how much of the ESG evidence seen is verified"),
    _d("data_freshness", "property_epc", _CONTENT,
       "exp(-mean age in days of the viewed ESG data / 365)", _SHARE,
       "how current the ESG data behind the behaviour is"),
    _d("pref_match_epc", "profile", _CONTENT,
       f"share of viewed EPC ranks at or above the stated minimum ({_SHRUNK}); 0 without one",
       _SHARE, "behaviour matching the stated EPC preference"),
    _d("pref_match_geo", "profile", _CONTENT,
       f"share of views in target countries ({_SHRUNK})", _SHARE,
       "behaviour matching the stated target countries"),
    _d("pref_match_asset", "profile", _CONTENT,
       f"share of views in target asset classes ({_SHRUNK})", _SHARE,
       "behaviour matching the stated target asset classes"),
    _d("stated_esg", "profile", _PROFILE,
       "points for min EPC band, certifications, SFDR target, UK SDR label, climate risk cap",
       _SHARE, "how strongly the investor says ESG matters"),
    _d("stated_gap", "profile", _CONTENT,
       "stated_esg - mean ESG share of behaviour (0 without a statement)", _LIFT,
       "saying more about ESG than behaviour shows"),
    _d("geo_concentration", "engagement", _CONTENT, "Herfindahl index of views by country",
       _SHARE, "focus on few countries"),
    _d("asset_concentration", "engagement", _CONTENT,
       "Herfindahl index of views by asset class", _SHARE, "focus on few asset classes"),
    _d("ticket_fit", "profile", _CONTENT,
       "exp(-|mean log value viewed - log ticket_max| / 2); 0 without both", _SHARE,
       "viewed property values fit the stated ticket"),
    _d("ticket_catalog_fit", "profile", _PROFILE,
       "exp(-|log ticket_max - catalog mean log value| / 2); 0 without both", _SHARE,
       "the stated ticket fits the fund's typical lot size"),
    _d("ticket_known", "profile", _PROFILE, "1 if ticket_max is stated, else 0", _SHARE,
       "the ticket size is known"),
    _d("profile_completeness", "profile", _PROFILE, "share of 8 profile fields present",
       _SHARE, "how complete the stated profile is"),
    _d("contactable", "profile", _PROFILE,
       "1 if e-mail (opt-in or soft opt-in, not unsubscribed) or phone (opt-in) is lawful",
       _SHARE, "a lawful contact route exists"),
    _d("institutional", "profile", _PROFILE,
       "1 for asset managers, pension funds, insurers, REITs, sovereign wealth funds", _SHARE,
       "the investor is an institution"),
    # fs-3 (issue 18): what the AUC gap measured by bench/feature_ceiling.py was missing,
    # and the thesis and risk tolerance read against the properties engaged with.
    _d("seek_dwell", "engagement", _SINCE,
       "(sum of log1p(seconds) over property views no campaign led to + 3 log1p(60)) / "
       "(those views + 3)", (0.0, 12.0),
       "how long the investor stays on the pages they seek out: intent shows in dwell"),
    _d("known_days", "engagement", _SINCE,
       "min(90, days since the first profile or engagement)", (0.0, 90.0),
       "how long the investor has been known: turns the counts into rates"),
    _d("thesis_fit", "profile", "the most engaged properties (up to 8, decayed weights)",
       "weighted mean over them of the mean of: asset class targeted and not excluded, "
       f"country targeted, exp(-|log(value / ticket_max)| / 2) ({_SHRUNK}; 0.5 without)",
       _SHARE, "the properties engaged with fit the stated thesis (asset types, regions, ticket)"),
    _d("risk_fit", "climate_risk", "the most engaged properties (up to 8, decayed weights)",
       "weighted share with max climate risk <= the stated cap, else the risk tolerance's "
       f"(low 33, medium 66, high 100) ({_SHRUNK}; 0.5 without a limit)", _SHARE,
       "the properties engaged with are within the investor's climate-risk tolerance"),
)


def canonical_encoding(definitions: Iterable[FeatureDefinition]) -> bytes:
    """The definitions as sorted-key JSON: the same bytes in every process."""
    return json.dumps([d._asdict() for d in definitions], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def feature_set_version(definitions: Iterable[FeatureDefinition],
                        name: str = FEATURE_SET_NAME) -> str:
    """``name + "+" +`` the first 8 hex digits of the definitions' SHA-256."""
    return f"{name}+{hashlib.sha256(canonical_encoding(definitions)).hexdigest()[:8]}"


def check_definitions(definitions: tuple[FeatureDefinition, ...]) -> None:
    """Raise ``ValueError`` unless the definitions form a usable feature set."""
    names = [d.name for d in definitions]
    if len(set(names)) != len(names):
        raise ValueError(f"feature names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    for d in definitions:
        low, high = d.range
        if d.source not in SOURCES:
            raise ValueError(f"{d.name}: unknown source {d.source!r}")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"{d.name}: range {d.range} is not a finite interval")
        if not (d.window and d.transformation and d.description):
            raise ValueError(f"{d.name}: window, transformation and description are required")


def check_vector(features: dict[str, float]) -> list[str]:
    """What is wrong with a computed feature dict against the definitions (empty: nothing).

    >>> check_vector({"eng_1d": 0.0})[0]
    'features differ from the definitions: missing eng_7d, eng_30d, depth_7d, ...'
    """
    problems = []
    if tuple(features) != FEATURE_NAMES:
        missing = [n for n in FEATURE_NAMES if n not in features]
        extra = [n for n in features if n not in FEATURE_RANGES]
        detail = "; ".join(part for part in (
            "missing " + ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "") if missing else "",
            "unknown " + ", ".join(extra[:3]) if extra else "",
            "" if missing or extra else "order differs") if part)
        problems.append(f"features differ from the definitions: {detail}")
    for name, value in features.items():
        bounds = FEATURE_RANGES.get(name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            problems.append(f"{name}={value!r} outside {bounds}")
    return problems


check_definitions(DEFINITIONS)
FEATURE_NAMES: tuple[str, ...] = tuple(d.name for d in DEFINITIONS)
FEATURE_SOURCES: dict[str, str] = {d.name: d.source for d in DEFINITIONS}
FEATURE_RANGES: dict[str, tuple[float, float]] = {d.name: d.range for d in DEFINITIONS}
FEATURE_SET_VERSION: str = feature_set_version(DEFINITIONS)
