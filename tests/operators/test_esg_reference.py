"""Tests for operators.esg_reference.

Expected values are written out here from the published sources rather than read from
the module's tables, so a wrong number in a table fails a test instead of agreeing with
itself.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators import esg_reference as ref
from esg_leads.operators.esg_reference import (
    EPC_BANDS,
    breeam_level,
    dgnb_level,
    energy_star_certifiable,
    epc_band_at_least,
    epc_band_from_sap,
    gresb_stars,
    leed_level,
    nabers_label,
    nabers_meaning,
)

# Worst to best, so list index is a rank where higher is better.
BREEAM_ORDER = ["unclassified", "pass", "good", "very_good", "excellent", "outstanding"]
LEED_ORDER = ["not_certified", "certified", "silver", "gold", "platinum"]
DGNB_ORDER = ["not_certified", "bronze", "silver", "gold", "platinum"]
EPC_BEST_FIRST = ["A+", "A", "B", "C", "D", "E", "F", "G"]


# --- Boundaries: the value at each threshold, and just below it ---------------------

@pytest.mark.parametrize(
    ("score", "band"),
    [
        (92, "A"), (91, "B"),
        (81, "B"), (80, "C"),
        (69, "C"), (68, "D"),
        (55, "D"), (54, "E"),
        (39, "E"), (38, "F"),
        (21, "F"), (20, "G"),
        (1, "G"),
        (100, "A"), (101, "A"), (150, "A"), (10_000, "A"),  # net exporters stay A
    ],
)
def test_epc_band_from_sap_boundaries(score, band):
    assert epc_band_from_sap(score) == band


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (91.5, "A"), (91.49, "B"),  # round half up onto the integer table
        (80.5, "B"), (80.4, "C"),
        (20.5, "F"), (20.49, "G"),
        (1.0, "G"), (1.4, "G"),
        (92.0, "A"),
    ],
)
def test_epc_band_from_sap_rounds_fractional_scores_half_up(score, band):
    assert epc_band_from_sap(score) == band


@pytest.mark.parametrize("score", [0.99, 0.5, 0, -1, -92])
def test_epc_band_from_sap_below_one_raises(score):
    with pytest.raises(ValueError, match="SAP"):
        epc_band_from_sap(score)


@pytest.mark.parametrize(
    ("percent", "level"),
    [
        (100, "outstanding"), (85, "outstanding"), (84.99, "excellent"),
        (70, "excellent"), (69.99, "very_good"),
        (55, "very_good"), (54.99, "good"),
        (45, "good"), (44.99, "pass"),
        (30, "pass"), (29.99, "unclassified"),
        (0, "unclassified"),
    ],
)
def test_breeam_level_boundaries(percent, level):
    assert breeam_level(percent) == level


@pytest.mark.parametrize(
    ("points", "level"),
    [
        (110, "platinum"), (80, "platinum"), (79, "gold"),
        (60, "gold"), (59, "silver"),
        (50, "silver"), (49, "certified"),
        (40, "certified"), (39, "not_certified"),
        (0, "not_certified"),
        (49.5, "certified"), (39.9, "not_certified"),  # fractional points are not rounded up
    ],
)
def test_leed_level_boundaries(points, level):
    assert leed_level(points) == level


@pytest.mark.parametrize(
    ("percent", "default_level", "existing_building_level"),
    [
        (100, "platinum", "platinum"),
        (80, "platinum", "platinum"), (79.99, "gold", "gold"),
        (65, "gold", "gold"), (64.99, "silver", "silver"),
        (50, "silver", "silver"), (49.99, "not_certified", "bronze"),
        (35, "not_certified", "bronze"), (34.99, "not_certified", "not_certified"),
        (0, "not_certified", "not_certified"),
    ],
)
def test_dgnb_level_boundaries(percent, default_level, existing_building_level):
    assert dgnb_level(percent) == default_level
    assert dgnb_level(percent, allow_bronze=False) == default_level
    assert dgnb_level(percent, allow_bronze=True) == existing_building_level


def test_dgnb_allow_bronze_is_keyword_only():
    with pytest.raises(TypeError):
        dgnb_level(40, True)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("stars", "label"),
    [
        (0, "0 stars"), (0.5, "0.5 stars"), (1, "1 star"), (1.0, "1 star"),
        (1.5, "1.5 stars"), (2, "2 stars"), (2.5, "2.5 stars"), (3, "3 stars"),
        (3.5, "3.5 stars"), (4, "4 stars"), (4.5, "4.5 stars"), (5, "5 stars"),
        (5.5, "5.5 stars"), (6, "6 stars"), (6.0, "6 stars"),
    ],
)
def test_nabers_label_every_step(stars, label):
    assert nabers_label(stars) == label


@pytest.mark.parametrize(
    ("stars", "meaning"),
    [
        # Wording from NABERSNZ "How the rating works".
        (0, "very poor performance"), (0.5, "very poor performance"),
        (1, "poor performance"), (1.5, "poor performance"),
        (2, "below average performance"), (2.5, "below average performance"),
        (3, "good performance"), (3.5, "good performance"),
        (4, "excellent performance"), (4.5, "excellent performance"),
        (5, "market leading performance"), (5.5, "market leading performance"),
        (6, "aspirational performance"),
    ],
)
def test_nabers_meaning(stars, meaning):
    assert nabers_meaning(stars) == meaning


@pytest.mark.parametrize("stars", [0.25, 4.2, 5.99, 0.1, 6.5, 7, -0.5, -1])
def test_nabers_rejects_off_step_and_out_of_range(stars):
    with pytest.raises(ValueError, match="NABERS"):
        nabers_label(stars)
    with pytest.raises(ValueError, match="NABERS"):
        nabers_meaning(stars)


@pytest.mark.parametrize(
    ("score", "certifiable"),
    [(100, True), (76, True), (75, True), (75.0, True), (74, False), (74.0, False), (1, False)],
)
def test_energy_star_certifiable_boundaries(score, certifiable):
    assert energy_star_certifiable(score) is certifiable


@pytest.mark.parametrize("score", [0, 101, -75, 74.5, 75.5, 99.9])
def test_energy_star_rejects_out_of_range_and_fractional(score):
    with pytest.raises(ValueError, match="ENERGY STAR"):
        energy_star_certifiable(score)


@pytest.mark.parametrize(
    ("position", "stars"),
    [
        (100, 5), (80, 5), (79.99, 4),
        (60, 4), (59.99, 3),
        (40, 3), (39.99, 2),
        (20, 2), (19.99, 1),
        (0, 1),
    ],
)
def test_gresb_stars_boundaries(position, stars):
    assert gresb_stars(position) == stars


# --- Invalid input, every function ----------------------------------------------------

NUMERIC_LOOKUPS = [
    # (function, scheme name in the message, a value just above the max or None)
    (epc_band_from_sap, "SAP", None),
    (breeam_level, "BREEAM", 100.01),
    (leed_level, "LEED", 111),
    (dgnb_level, "DGNB", 100.5),
    (nabers_label, "NABERS", 6.5),
    (nabers_meaning, "NABERS", 7),
    (energy_star_certifiable, "ENERGY STAR", 101),
    (gresb_stars, "GRESB", 100.1),
]
BAD_VALUES = [math.nan, math.inf, -math.inf, True, False, None, "50", -1, -0.01, [50]]


@pytest.mark.parametrize(("func", "scheme", "_"), NUMERIC_LOOKUPS)
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_invalid_values_raise_value_error_naming_scheme_value_and_range(func, scheme, _, value):
    with pytest.raises(ValueError) as excinfo:
        func(value)
    message = str(excinfo.value)
    assert scheme in message
    assert repr(value) in message
    assert "valid" in message


@pytest.mark.parametrize(
    ("func", "scheme", "above_max"), [row for row in NUMERIC_LOOKUPS if row[2] is not None]
)
def test_values_above_scale_max_raise(func, scheme, above_max):
    with pytest.raises(ValueError, match=scheme):
        func(above_max)


def test_out_of_range_message_states_the_range():
    with pytest.raises(ValueError, match=r"LEED: 111 is out of range; valid range is 0 to 110"):
        leed_level(111)
    sap_message = r"SAP/EPC: 0\.5 is out of range; valid range is 1 or more"
    with pytest.raises(ValueError, match=sap_message):
        epc_band_from_sap(0.5)


# --- epc_band_at_least ------------------------------------------------------------------

def test_epc_bands_constant():
    assert EPC_BANDS == ("A", "B", "C", "D", "E", "F", "G")


@pytest.mark.parametrize("band", EPC_BEST_FIRST)
@pytest.mark.parametrize("minimum", EPC_BEST_FIRST)
def test_epc_band_at_least_full_matrix(band, minimum):
    expected = EPC_BEST_FIRST.index(band) <= EPC_BEST_FIRST.index(minimum)
    assert epc_band_at_least(band, minimum) is expected


@pytest.mark.parametrize(
    ("band", "minimum", "expected"),
    [
        ("A+", "A", True), ("A", "A+", False), ("A+", "A+", True), ("A+", "G", True),
        ("C", "C", True), ("B", "C", True), ("D", "C", False), ("G", "F", False),
        ("c", "C", True), (" b ", "c", True), ("a+", "A", True), ("e", " D", False),
    ],
)
def test_epc_band_at_least_examples(band, minimum, expected):
    assert epc_band_at_least(band, minimum) is expected


@pytest.mark.parametrize("bad", ["H", "", "A++", "AA", "1", None, 1, True, ["A"]], ids=repr)
def test_epc_band_at_least_rejects_unknown_bands(bad):
    with pytest.raises(ValueError, match="EPC"):
        epc_band_at_least(bad, "C")
    with pytest.raises(ValueError, match="EPC"):
        epc_band_at_least("C", bad)


bands = st.sampled_from(EPC_BEST_FIRST)


@given(bands, bands)
def test_epc_band_at_least_is_total_and_antisymmetric(a, b):
    forward, backward = epc_band_at_least(a, b), epc_band_at_least(b, a)
    assert forward or backward
    assert (forward and backward) == (a == b)


@given(bands, bands, bands)
def test_epc_band_at_least_is_transitive(a, b, c):
    if epc_band_at_least(a, b) and epc_band_at_least(b, c):
        assert epc_band_at_least(a, c)


# --- Monotonicity: a higher score never gives a worse band ---------------------------

def _pair(low, high):
    value = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    return st.tuples(value, value).map(sorted)


@given(_pair(1, 1e6))
def test_sap_monotonic(pair):
    lower, higher = pair
    assert epc_band_at_least(epc_band_from_sap(higher), epc_band_from_sap(lower))


@given(_pair(0, 100))
def test_breeam_monotonic(pair):
    lower, higher = pair
    assert BREEAM_ORDER.index(breeam_level(higher)) >= BREEAM_ORDER.index(breeam_level(lower))


@given(_pair(0, 110))
def test_leed_monotonic(pair):
    lower, higher = pair
    assert LEED_ORDER.index(leed_level(higher)) >= LEED_ORDER.index(leed_level(lower))


@given(_pair(0, 100), st.booleans())
def test_dgnb_monotonic(pair, allow_bronze):
    lower, higher = pair
    high = DGNB_ORDER.index(dgnb_level(higher, allow_bronze=allow_bronze))
    assert high >= DGNB_ORDER.index(dgnb_level(lower, allow_bronze=allow_bronze))


@given(_pair(0, 100))
def test_dgnb_bronze_only_when_allowed(pair):
    for percent in pair:
        assert dgnb_level(percent) != "bronze"
        allowed = dgnb_level(percent, allow_bronze=True)
        assert allowed == ("bronze" if 35 <= percent < 50 else dgnb_level(percent))


@given(_pair(0, 100))
def test_gresb_monotonic(pair):
    lower, higher = pair
    assert gresb_stars(higher) >= gresb_stars(lower)


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=1, max_value=100))
def test_energy_star_monotonic(a, b):
    lower, higher = sorted((a, b))
    assert energy_star_certifiable(higher) >= energy_star_certifiable(lower)


@given(st.integers(min_value=0, max_value=12), st.integers(min_value=0, max_value=12))
def test_nabers_meaning_monotonic(a, b):
    lower, higher = sorted((a / 2, b / 2))
    wording = [meaning for _, meaning in sorted(ref.NABERS_STAR_MEANINGS)]
    assert wording.index(nabers_meaning(higher)) >= wording.index(nabers_meaning(lower))


# --- Table shape ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "table",
    [ref.SAP_BANDS, ref.BREEAM_LEVELS, ref.LEED_LEVELS, ref.DGNB_LEVELS,
     ref.GRESB_STAR_QUINTILES, ref.NABERS_STAR_MEANINGS],
)
def test_tables_are_strictly_descending_tuples(table):
    assert isinstance(table, tuple)
    thresholds = [threshold for threshold, _ in table]
    assert thresholds == sorted(thresholds, reverse=True)
    assert len(set(thresholds)) == len(thresholds)


# ------------------------------------------- errors name the scheme, value and range

@pytest.mark.parametrize(("call", "message"), [
    (lambda: ref.breeam_level("x"), "BREEAM: expected a number, got 'x' (valid range is 0 to 100)"),
    (lambda: ref.breeam_level(101), "BREEAM: 101 is out of range; valid range is 0 to 100"),
    (lambda: ref.leed_level(111), "LEED: 111 is out of range; valid range is 0 to 110"),
    (lambda: ref.dgnb_level(-1), "DGNB: -1 is out of range; valid range is 0 to 100"),
    (lambda: ref.nabers_label(7), "NABERS: 7 is out of range; valid range is 0 to 6"),
    (lambda: ref.nabers_meaning(5.3),
     "NABERS: 5.3 is not a half-star step; valid ratings are 0, 0.5, ..., 6"),
    (lambda: ref.energy_star_certifiable(0), "ENERGY STAR: 0 is out of range; valid range is 1 to 100"),
    (lambda: ref.energy_star_certifiable(75.5),
     "ENERGY STAR: 75.5 is not a whole score; valid range is 1 to 100"),
    (lambda: ref.gresb_stars(True), "GRESB: expected a number, got True (valid range is 0 to 100)"),
    (lambda: ref.epc_band_from_sap(None), "SAP/EPC: expected a number, got None (valid range is 1 or more)"),
    (lambda: ref.epc_band_at_least("H", "C"),
     "EPC: band 'H' is not a band; valid bands are A+, A, B, C, D, E, F, G"),
    (lambda: ref.epc_band_at_least("B", "Z"),
     "EPC: minimum 'Z' is not a band; valid bands are A+, A, B, C, D, E, F, G"),
])
def test_an_error_names_the_scheme_the_value_and_the_valid_range(call, message):
    with pytest.raises(ValueError) as raised:
        call()
    assert str(raised.value) == message
