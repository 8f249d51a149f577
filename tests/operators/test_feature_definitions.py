"""The declared feature set: definitions are checked, and the version follows them (issue 19.5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators import feature_definitions as fd
from esg_leads.operators.feature_definitions import (
    DEFINITIONS,
    FEATURE_NAMES,
    FEATURE_RANGES,
    FEATURE_SET_VERSION,
    FeatureDefinition,
    check_definitions,
    check_vector,
    feature_set_version,
)

ROOT = Path(__file__).resolve().parents[2]
#: The version of the definitions as committed. A change to DEFINITIONS changes it on
#: purpose: update this pin in the same commit, and know that every model trained on
#: the old feature set can no longer be loaded. A change of the encoding changes it too.
PINNED = "fs-3+04a3e510"


def _replaced(index: int, **change) -> tuple[FeatureDefinition, ...]:
    return (*DEFINITIONS[:index], DEFINITIONS[index]._replace(**change), *DEFINITIONS[index + 1:])


def test_the_version_is_a_name_and_a_short_content_hash():
    name, digest = FEATURE_SET_VERSION.split("+")
    assert name == fd.FEATURE_SET_NAME and len(digest) == 8 and int(digest, 16) >= 0
    assert FEATURE_SET_VERSION == PINNED


@pytest.mark.parametrize("field", ["name", "source", "window", "transformation", "range",
                                   "description"])
def test_changing_any_field_of_any_definition_changes_the_version(field):
    seen = {FEATURE_SET_VERSION}
    for index, definition in enumerate(DEFINITIONS):
        value = getattr(definition, field)
        if field == "range":
            new = (value[0], value[1] + 1.0)
        elif field == "source":
            new = next(s for s in fd.SOURCES if s != value)
        else:
            new = value + " (changed)"
        version = feature_set_version(_replaced(index, **{field: new}))
        assert version not in seen, (field, definition.name)
        seen.add(version)


def test_adding_removing_or_reordering_features_changes_the_version():
    extra = FeatureDefinition("new_feature", "engagement", "w", "t", (0.0, 1.0), "d")
    variants = [(*DEFINITIONS, extra), DEFINITIONS[:-1], (DEFINITIONS[1], DEFINITIONS[0],
                                                           *DEFINITIONS[2:])]
    versions = {feature_set_version(v) for v in variants}
    assert len(versions) == 3 and FEATURE_SET_VERSION not in versions
    assert feature_set_version(DEFINITIONS, name="fs-4") != FEATURE_SET_VERSION


@given(st.integers(0, len(DEFINITIONS) - 1), st.floats(-1e9, 1e9, allow_nan=False))
def test_a_changed_bound_always_changes_the_version(index, low):
    definition = DEFINITIONS[index]
    if low == definition.range[0]:
        return
    changed = _replaced(index, range=(low, definition.range[1]))
    assert feature_set_version(changed) != FEATURE_SET_VERSION


def test_the_version_is_the_same_in_every_process():
    """No dependence on hash randomisation, dict order of a process or the machine."""
    code = "from operators.feature_definitions import FEATURE_SET_VERSION as v; print(v)"
    seen = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        seen.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, check=True, cwd=ROOT).stdout.strip())
    assert seen == {FEATURE_SET_VERSION}
    assert feature_set_version(DEFINITIONS) == FEATURE_SET_VERSION  # and run to run


def test_derived_tables_follow_the_definitions():
    assert FEATURE_NAMES == tuple(d.name for d in DEFINITIONS)
    assert FEATURE_RANGES == {d.name: d.range for d in DEFINITIONS}
    from esg_leads.operators.features import FEATURE_SET_VERSION as reexported
    from esg_leads.operators.features import FEATURE_SOURCES, SOURCES

    assert reexported == FEATURE_SET_VERSION and isinstance(reexported, str)
    assert FEATURE_SOURCES == {d.name: d.source for d in DEFINITIONS} and SOURCES == fd.SOURCES


@pytest.mark.parametrize(("change", "message"), [
    ({"source": "gossip"}, "unknown source"),
    ({"range": (1.0, 0.0)}, "not a finite interval"),
    ({"range": (0.0, float("inf"))}, "not a finite interval"),
    ({"description": ""}, "required"),
    ({"name": DEFINITIONS[1].name}, "repeat"),
])
def test_bad_definitions_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        check_definitions(_replaced(0, **change))


def test_computed_vectors_are_checked_against_the_definitions():
    from esg_leads.operators.features import compute_features
    from esg_leads.operators.investor_profile import InvestorProfileState
    from tests.operators.test_features_values import AS_OF, build_state

    features = compute_features(build_state(), AS_OF)
    assert check_vector(features) == []
    empty = compute_features(InvestorProfileState((1.0, 7.0, 30.0)), AS_OF)
    assert check_vector(empty) == []
    reordered = dict(reversed(list(features.items())))
    assert check_vector(reordered) == ["features differ from the definitions: order differs"]
    assert "outside" in check_vector({**features, "replies": 11.0})[0]
    assert "unknown bogus" in check_vector({**features, "bogus": 1.0})[0]
