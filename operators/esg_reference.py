"""Published scales and thresholds of the ESG schemes the lead qualifier reads.

Tables are plain data, each with a comment naming where its numbers were checked.
Lookups are pure and raise :class:`ValueError` (naming the scheme, the value and the
valid range) for bools, non-numbers, NaN, infinities and out-of-range values rather than
guess, because a wrong band silently qualifies or drops a lead. Only the headline rule
of each scheme is modelled; real awards also need prerequisites or minimum standards
(BREEAM minimum standards, LEED prerequisites, DGNB minimum index per topic), so a
level derived here is the most a score can support, not proof of an award.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = [
    "BREEAM_LEVELS", "DGNB_LEVELS", "EPC_BANDS", "ENERGY_STAR_CERTIFICATION_MIN",
    "GRESB_STAR_QUINTILES", "LEED_LEVELS", "NABERS_STAR_MEANINGS", "SAP_BANDS",
    "breeam_level", "dgnb_level", "energy_star_certifiable", "epc_band_at_least",
    "epc_band_from_sap", "gresb_stars", "leed_level", "nabers_label", "nabers_meaning",
]

# --- Tables ------------------------------------------------------------------------
# Each table lists (lowest value of the band, label), best band first; a value belongs
# to the first band whose threshold it reaches, so lower bounds are inclusive.

# UK domestic EPC band from the SAP rating (SAP 2012 / SAP 10.2): A 92-100, B 81-91,
# C 69-80, D 55-68, E 39-54, F 21-38, G 1-20. Secondary sources only: Flint Bishop,
# https://flintbishop.co.uk/insights/energy-performance-certificates-epc/ and
# http://www.energykey.co.uk/epc.html. The primary BRE SAP 10.2 specification
# (https://files.bregroup.com/SAP/SAP%2010.2%20-%2011-04-2023.pdf) was not
# retrievable, so this table is NOT verified against BRE's own text.
SAP_BANDS = ((92, "A"), (81, "B"), (69, "C"), (55, "D"), (39, "E"), (21, "F"), (1, "G"))
EPC_BANDS = ("A", "B", "C", "D", "E", "F", "G")
# Non-domestic EPCs add "A+" above A ("rating bands ranging from A+ to G, or A to G in
# the case of a building that is a dwelling"; Data Mill North, "Domestic Energy
# Performance Certificates by energy efficiency rating"):
# https://datamillnorth.org/dataset/domestic-energy-performance-certificates-by-energy-efficiency-rating
_EPC_ORDER = ("A+",) + EPC_BANDS

# BREEAM rating benchmarks, % score. BRE Global, BREEAM International New Construction
# 2016, Table 4 "BREEAM rating benchmarks"; identical in BREEAM UK Refurbishment and
# Fit-out 2014, Table 4:
# https://www.breeam.com/BREEAMIntNDR2016SchemeDocument/content/03_scoringrating_newcon/breeam_rating_benchmarks.htm
# https://www.breeam.com/ndrefurb2014manual/content/03_scoringrating_refurb/scoring_rfrb.htm
BREEAM_LEVELS = (
    (85, "outstanding"), (70, "excellent"), (55, "very_good"),
    (45, "good"), (30, "pass"), (0, "unclassified"),
)

# LEED v4 / v4.1 levels, points out of 110 (100 base + 10 bonus). No USGBC page was
# retrievable; checked against BRE's knowledge base, which maps Certified 40-49,
# Silver 50-59, Gold 60-79, Platinum 80+, and leedcertificationhelp.com for the 110 max:
# https://kb.breeam.com/knowledgebase/using-leed-as-the-accredited-third-party-assessment-scheme/
# http://www.leedcertificationhelp.com/leed-rating-system.html
LEED_LEVELS = (
    (80, "platinum"), (60, "gold"), (50, "silver"), (40, "certified"), (0, "not_certified"),
)
_LEED_MAX_POINTS = 110

# DGNB award by total performance index (award logic valid since 1 July 2015, used by
# the current system versions incl. New Construction 2023): silver >= 50 %, gold
# >= 65 %, platinum >= 80 %; bronze >= 35 % is awarded to *existing buildings only*
# ("The bronze certificate is no longer used for awarding new buildings").
# DGNB, "Evaluation and awards", https://www.dgnb-system.de/en/system/evaluation_and_awards/
# and (German) https://www.dgnb-system.de/de/zertifizierung/bewertung/
DGNB_LEVELS = ((80, "platinum"), (65, "gold"), (50, "silver"), (35, "bronze"), (0, "not_certified"))

# NABERS star wording, 0-6 stars, from NABERSNZ (NZ Government), "How the rating works",
# https://www.nabersnz.govt.nz/about-nabersnz/how-the-rating-works/ . It differs from
# the often quoted "6 = market leading, 3 = average": 5 is market leading, 6 aspirational.
# No per-star wording was found on the Australian nabers.gov.au. Half-star steps rest on
# secondary sources only ("5.5 or 6 star level",
# https://thesmartenergyreview.blogspot.com/2011/08/nabers-goes-six-star.html).
NABERS_STAR_MEANINGS = (
    (6, "aspirational performance"), (5, "market leading performance"),
    (4, "excellent performance"), (3, "good performance"),
    (2, "below average performance"), (1, "poor performance"), (0, "very poor performance"),
)
_NABERS_MAX_STARS = 6

# ENERGY STAR 1-100 score: "a score of 75 or higher means it's a top performer and may
# be eligible for ENERGY STAR certification". US EPA, "What your 1-100 ENERGY STAR score
# means":
# http://www.energystar.gov/buildings/facility-owners-and-managers/existing-buildings/use-portfolio-manager/interpret-your-results/what
ENERGY_STAR_CERTIFICATION_MIN = 75

# GRESB Rating: "based on the GRESB Score and its quintile position relative to all
# participants ... top quintile ... 5 Star ... bottom quintile ... 1 Star", "each year,
# 20% of entities receive a GRESB 5 Star rating". GRESB, "What is the GRESB Rating?",
# https://gresb.com/nl-en/faq/what-is-the-gresb-rating/
# GRESB also calibrates the model yearly, so real cut-offs may sit slightly off exact
# quintiles; this is the published quintile rule.
GRESB_STAR_QUINTILES = ((80, 5), (60, 4), (40, 3), (20, 2), (0, 1))


# --- Helpers -----------------------------------------------------------------------

def _check_number(value: object, scheme: str, low: float, high: float) -> float:
    """Return ``value`` as a float or raise ValueError naming scheme, value and range."""
    bounds = f"{low:g} to {high:g}" if math.isfinite(high) else f"{low:g} or more"
    valid = f"valid range is {bounds}"
    # bool is an int subclass; True would silently read as score 1.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{scheme}: expected a number, got {value!r} ({valid})")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{scheme}: {value!r} is out of range; {valid}")
    return number


def _lookup(number: float, table: tuple[tuple[int, object], ...]):
    """First label whose threshold ``number`` reaches; tables end at their scale floor."""
    for threshold, label in table:
        if number >= threshold:
            return label
    raise AssertionError("table floor must cover the validated range")  # pragma: no cover


def _epc_rank(band: object, role: str) -> int:
    """Position of an EPC band in best-first order; 0 is "A+"."""
    if not isinstance(band, str) or band.strip().upper() not in _EPC_ORDER:
        valid = ", ".join(_EPC_ORDER)
        raise ValueError(f"EPC: {role} {band!r} is not a band; valid bands are {valid}")
    return _EPC_ORDER.index(band.strip().upper())


# --- Public lookups ----------------------------------------------------------------

def epc_band_from_sap(score: int | float) -> str:
    """UK domestic EPC band (A to G) for a SAP energy efficiency rating.

    EPCs state SAP ratings as whole numbers and the band table is defined on integers,
    so a fractional (e.g. modelled) score is first rounded half up: 91.5 -> 92 -> "A",
    91.49 -> 91 -> "B". The range check runs on
    the unrounded value: anything below 1 raises, even 0.5. There is no upper limit,
    because dwellings that export energy score above 100 and are still band A.

    Parameters
    ----------
    score : int or float
        SAP rating, 1 or more.

    Returns
    -------
    str
        One of ``EPC_BANDS``.

    Raises
    ------
    ValueError
        If ``score`` is not a finite real number of at least 1.

    Examples
    --------
    >>> epc_band_from_sap(92), epc_band_from_sap(91), epc_band_from_sap(1)
    ('A', 'B', 'G')
    >>> epc_band_from_sap(105)
    'A'
    >>> epc_band_from_sap(68.5)
    'C'
    >>> epc_band_from_sap(0)
    Traceback (most recent call last):
    ...
    ValueError: SAP/EPC: 0 is out of range; valid range is 1 or more
    """
    number = _check_number(score, "SAP/EPC", 1, math.inf)
    return _lookup(math.floor(number + 0.5), SAP_BANDS)


def epc_band_at_least(band: str, minimum: str) -> bool:
    """Whether EPC ``band`` is as good as or better than ``minimum``.

    Bands are compared in the order A+, A, B, ..., G (A+ exists only on non-domestic
    EPCs). Case and surrounding whitespace are ignored.

    Parameters
    ----------
    band, minimum : str
        EPC bands, "A+" or one of ``EPC_BANDS``.

    Raises
    ------
    ValueError
        If either argument is not a known band.

    Examples
    --------
    >>> epc_band_at_least("B", "C"), epc_band_at_least("C", "C"), epc_band_at_least("D", "C")
    (True, True, False)
    >>> epc_band_at_least("A+", "A"), epc_band_at_least("a", "A+")
    (True, False)
    """
    return _epc_rank(band, "band") <= _epc_rank(minimum, "minimum")


def breeam_level(percent: float) -> str:
    """BREEAM rating for an overall percentage score (0 to 100).

    Parameters
    ----------
    percent : float
        BREEAM % score, 0 to 100.

    Returns
    -------
    str
        "unclassified", "pass", "good", "very_good", "excellent" or "outstanding".

    Examples
    --------
    >>> breeam_level(70), breeam_level(69.9), breeam_level(29.9)
    ('excellent', 'very_good', 'unclassified')
    """
    return _lookup(_check_number(percent, "BREEAM", 0, 100), BREEAM_LEVELS)


def leed_level(points: int | float) -> str:
    """LEED v4 / v4.1 certification level for a point total (0 to 110).

    Points are compared as given, without rounding: LEED awards whole points, so a
    fractional total only arises from averaging and must not be rounded up a level.

    Parameters
    ----------
    points : int or float
        LEED points earned, 0 to 110.

    Returns
    -------
    str
        "not_certified", "certified", "silver", "gold" or "platinum".

    Examples
    --------
    >>> leed_level(39), leed_level(40), leed_level(79), leed_level(80)
    ('not_certified', 'certified', 'gold', 'platinum')
    """
    return _lookup(_check_number(points, "LEED", 0, _LEED_MAX_POINTS), LEED_LEVELS)


def dgnb_level(percent: float, *, allow_bronze: bool = False) -> str:
    """DGNB award level for a total performance index (0 to 100 %).

    DGNB awards bronze (35 % or more) only to existing buildings; every other scheme
    starts at silver. The default follows that general rule, so bronze is never
    claimed for a building whose scheme is unknown. Pass ``allow_bronze=True`` for an
    existing-building certification.

    Parameters
    ----------
    percent : float
        Total performance index in percent, 0 to 100.
    allow_bronze : bool, keyword-only
        Award bronze from 35 % (existing buildings). Default False.

    Returns
    -------
    str
        "not_certified", "bronze", "silver", "gold" or "platinum".

    Examples
    --------
    >>> dgnb_level(80), dgnb_level(64.9), dgnb_level(40)
    ('platinum', 'silver', 'not_certified')
    >>> dgnb_level(40, allow_bronze=True)
    'bronze'
    """
    level = _lookup(_check_number(percent, "DGNB", 0, 100), DGNB_LEVELS)
    return "not_certified" if level == "bronze" and not allow_bronze else level


def _check_nabers(stars: float) -> float:
    """Validate a NABERS rating: 0 to 6 stars, whole or half stars only."""
    number = _check_number(stars, "NABERS", 0, _NABERS_MAX_STARS)
    if number * 2 != int(number * 2):
        raise ValueError(
            f"NABERS: {stars!r} is not a half-star step; valid ratings are 0, 0.5, ..., 6"
        )
    return number


def nabers_label(stars: float) -> str:
    """Human label for a NABERS star rating (0 to 6 in half-star steps).

    Parameters
    ----------
    stars : float
        NABERS rating.

    Returns
    -------
    str
        For example "5.5 stars", "1 star" or "0 stars".

    Raises
    ------
    ValueError
        If ``stars`` is not a finite half-star step from 0 to 6.

    Examples
    --------
    >>> nabers_label(5.5), nabers_label(1), nabers_label(6.0)
    ('5.5 stars', '1 star', '6 stars')
    """
    number = _check_nabers(stars)
    return f"{number:g} star" + ("" if number == 1 else "s")


def nabers_meaning(stars: float) -> str:
    """Published wording of a NABERS rating; a half star reads as its whole star.

    Parameters
    ----------
    stars : float
        NABERS rating; validated exactly as in :func:`nabers_label`.

    Returns
    -------
    str
        The wording from ``NABERS_STAR_MEANINGS``.

    Examples
    --------
    >>> nabers_meaning(5.5)
    'market leading performance'
    >>> nabers_meaning(0)
    'very poor performance'
    """
    return _lookup(_check_nabers(stars), NABERS_STAR_MEANINGS)


def energy_star_certifiable(score: int) -> bool:
    """Whether an ENERGY STAR score (integer 1 to 100) meets the 75 certification bar.

    The score is a whole-number percentile, so a fractional value is rejected rather
    than rounded. Meeting the bar makes a property eligible, not certified.

    Parameters
    ----------
    score : int
        ENERGY STAR score.

    Raises
    ------
    ValueError
        If ``score`` is not a whole number from 1 to 100.

    Examples
    --------
    >>> energy_star_certifiable(75), energy_star_certifiable(74)
    (True, False)
    """
    number = _check_number(score, "ENERGY STAR", 1, 100)
    if not number.is_integer():
        raise ValueError(f"ENERGY STAR: {score!r} is not a whole score; valid range is 1 to 100")
    return number >= ENERGY_STAR_CERTIFICATION_MIN


def gresb_stars(quintile_position: float) -> int:
    """GRESB Rating (1 to 5 stars) from an entity's position in the global ranking.

    ``quintile_position`` is the percentile position from 0 (bottom) to 100 (top),
    i.e. the share of all assessed entities the entity ranks above. Each quintile is
    one star and the lower edge belongs to the better quintile: 80 or more is the top
    20 % and 5 stars, below 20 is the bottom quintile and 1 star.

    Parameters
    ----------
    quintile_position : float
        Percentile position in the GRESB global ranking, 0 to 100, higher is better.

    Returns
    -------
    int
        Stars, 1 to 5.

    Examples
    --------
    >>> gresb_stars(80), gresb_stars(79.9), gresb_stars(0), gresb_stars(100)
    (5, 4, 1, 5)
    """
    return _lookup(_check_number(quintile_position, "GRESB", 0, 100), GRESB_STAR_QUINTILES)
