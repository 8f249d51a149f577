"""DriftMonitor: golden detections on seeded streams, warm-up, min_effect, cool-down.

The exact indices below were computed once from these seeded streams and then written
down: a change in the detector's bookkeeping (or in River's ADWIN) shows up here.
"""

from __future__ import annotations

import random

import pytest

from esg_leads.online_models.drift import Detection, DriftMonitor


def feature_stream(levels: list[tuple[int, float]], seed: int = 7, **kwargs) -> list[Detection]:
    """Gaussian (sd 1) feature ``x`` whose mean follows ``levels`` = [(count, mean), ...]."""
    rng = random.Random(seed)
    monitor = DriftMonitor(features=("x",), **kwargs)
    hits = []
    for count, mean in levels:
        for _ in range(count):
            hits += monitor.update_features({"x": rng.gauss(mean, 1)})
    return hits


def error_stream(levels: list[tuple[int, float]], seed: int = 7, **kwargs) -> list[Detection]:
    """Squared errors uniform on [0, 2 * mean], the mean following ``levels``."""
    rng = random.Random(seed)
    monitor = DriftMonitor(features=(), **kwargs)
    hits = []
    for count, mean in levels:
        for _ in range(count):
            hits += monitor.update_error(rng.random() * 2 * mean)
    return hits


# ----------------------------------------------------------------------- features

def test_golden_feature_mean_shift():
    hits = feature_stream([(1000, 0.0), (2000, 3.0)], warmup=500)
    assert [(h.detector, h.subject, h.index, h.width) for h in hits] == [("ADWIN", "feature:x", 1024, 200)]
    assert hits[0].mean_after == pytest.approx(3.0263, abs=1e-4)
    assert hits[0].effect == pytest.approx(2.695, abs=1e-3)


def test_no_feature_detection_on_a_stationary_stream():
    assert feature_stream([(20_000, 0.0)], warmup=500) == []


def test_warmup_suppresses_early_changes():
    early_change = [(200, 0.0), (4800, 3.0)]
    assert feature_stream(early_change, warmup=2000) == []
    hits = feature_stream(early_change, warmup=100)
    assert [h.index for h in hits] == [224]


def test_min_effect_suppresses_small_changes():
    small_change = [(3000, 0.0), (17_000, 0.2)]
    assert feature_stream(small_change, warmup=500) == []  # default min_effect 0.25
    hits = feature_stream(small_change, warmup=500, min_effect=0.0)
    assert [h.index for h in hits] == [4256]
    assert hits[0].effect == pytest.approx(0.112, abs=1e-3)


def test_only_watched_and_present_features_are_updated():
    monitor = DriftMonitor(features=("x", "y"), warmup=0)
    assert monitor.update_features({"z": 1.0}) == []
    monitor.update_features({"x": 1.0, "z": 2.0})
    assert monitor.watched["x"].seen == 1 and monitor.watched["y"].seen == 0
    assert DriftMonitor(features=()).update_features({"x": 1.0}) == []


@pytest.mark.parametrize(("shift", "index"), [(1.0, 1056), (2.0, 1024)])
def test_a_material_feature_shift_is_reported(shift, index):
    hits = feature_stream([(1000, 0.0), (4000, shift)], warmup=500)
    assert [h.index for h in hits] == [index]
    assert hits[0].effect == pytest.approx(shift, rel=0.2)


def test_a_one_sd_shift_is_reported_whatever_the_seed():
    assert [len(feature_stream([(3000, 0.0), (4000, 1.0)], seed=k)) for k in range(10)] == [1] * 10


def test_a_later_change_after_the_cooldown_is_reported():
    # 3 at 1000 is confirmed by 1224; 6 at 1300 falls in the cool-down (to 1724); 12 at
    # 2300 is reported, measured against the reference reset after the first alert.
    hits = feature_stream([(1000, 0.0), (300, 3.0), (1000, 6.0), (1000, 12.0)], warmup=500,
                          cooldown=500)
    assert [h.index for h in hits] == [1024, 2336]
    assert hits[1].mean_after == pytest.approx(12.02, abs=0.01)


# -------------------------------------------------------------------------- errors

def test_golden_error_jump():
    hits = error_stream([(1000, 0.1), (1000, 0.5)])
    assert [(h.detector, h.subject, h.index, h.width) for h in hits] == [("ADWIN", "model_error", 1024, 200)]
    assert hits[0].mean_after == pytest.approx(0.477, abs=1e-3)
    assert hits[0].effect == pytest.approx(3.34, abs=0.01)


def test_no_error_detection_on_a_stationary_stream():
    assert error_stream([(20_000, 0.25)]) == []


def test_cooldown_silences_a_detector_after_it_fired():
    levels = [(1000, 0.1), (200, 0.3), (1000, 0.6)]
    assert [h.index for h in error_stream(levels, cooldown=0)] == [1056, 1312]
    assert [h.index for h in error_stream(levels)] == [1056]  # default cooldown 500
    assert [h.index for h in error_stream(levels, cooldown=200)] == [1056]


def test_error_detector_is_not_delayed_by_feature_warmup():
    assert [h.index for h in error_stream([(1000, 0.1), (1000, 0.5)], warmup=10**6)] == [1024]


def test_a_falling_error_is_not_concept_drift():
    assert error_stream([(1000, 0.5), (1000, 0.1)]) == []
