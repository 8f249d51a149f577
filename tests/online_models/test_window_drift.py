"""PSI drift detectors in event time (online_models/window_drift.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.online_models.window_drift import WindowDrift, psi

T0 = 1_767_571_200.0  # 2026-01-05, a Monday
SUBJECTS = ("feature:a", "feature:b", "feature:c", "score")


def _stream(seed: int, days: int = 20, per_hour: int = 3, shift_at: float | None = None,
            shifted: tuple[str, ...] = SUBJECTS) -> list:
    """Values every 20 minutes; from ``shift_at`` (days) the ``shifted`` subjects move by
    one standard deviation."""
    rng = random.Random(seed)
    monitor = WindowDrift(SUBJECTS)
    hits = []
    for i in range(days * 24 * per_hour):
        t = T0 + i * 3600 / per_hour
        after = shift_at is not None and t >= T0 + shift_at * 86_400
        values = {s: rng.gauss(1.0 if after and s in shifted else 0.0, 1.0) for s in SUBJECTS}
        hits += monitor.update(t, values)
    return hits


def test_golden_detection_of_a_shift_of_every_subject() -> None:
    hits = _stream(seed=1, shift_at=10)
    assert [(h.index, (h.at_s - T0) / 3600 - 240, h.subject) for h in hits] == [
        (1, 18.0, "feature:c,feature:a,score")]
    evidence = hits[0].evidence["feature:a"]
    assert (evidence["recent_n"], evidence["reference_n"]) == (72, 504)
    assert evidence["recent_mean"] > evidence["reference_mean"]


def test_one_subject_alone_is_not_an_alert() -> None:
    assert _stream(seed=2, shift_at=10, shifted=("feature:a",)) == []


def test_a_sustained_shift_is_one_alert() -> None:
    assert len(_stream(seed=3, days=30, shift_at=10)) == 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_stationary_stream_raises_nothing(seed: int) -> None:
    assert _stream(seed=seed) == []


def test_nothing_before_the_reference_window_is_full() -> None:
    # A shift two days in: the rolling reference (7 days) plus the recent day is not
    # yet there, so the start-up of a stream is never compared.
    assert _stream(seed=4, days=7, shift_at=2) == []


def test_the_same_values_in_other_batches_give_the_same_detections() -> None:
    assert _stream(seed=5, shift_at=12) == _stream(seed=5, shift_at=12)


def test_psi_of_identical_histograms_is_zero_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=2000)
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    small = psi(ref, rng.normal(0.2, 1, 2000), edges)[0]
    large = psi(ref, rng.normal(1.0, 1, 2000), edges)[0]
    assert psi(ref, ref, edges)[0] == 0.0
    assert 0 < small < 0.1 < large


def test_cadence_longer_than_the_recent_window_is_refused() -> None:
    with pytest.raises(ValueError, match="cadence"):
        WindowDrift(SUBJECTS, recent_hours=6, cadence_hours=12)


def test_a_far_future_event_time_costs_a_bounded_number_of_ticks() -> None:
    monitor = WindowDrift(SUBJECTS)
    monitor.update(0.0, {"score": 0.1})  # 1970, then 2026: no 82,000 empty comparisons
    monitor.update(T0, {"score": 0.1})
    assert T0 - 10 * 86_400 < monitor.next_tick <= T0 + 6 * 3600


@given(points=st.lists(st.tuples(st.floats(0, 500), st.floats(-5, 5)), max_size=80),
       lo=st.floats(0, 500), width=st.floats(0, 300),
       cadence=st.sampled_from((1.0, 6.0, 7.3, 24.0, 0.1 + 0.2)))
def test_a_window_holds_exactly_the_values_with_event_time_inside_it(points, lo, width, cadence):
    """Values kept in cadence intervals, in any arrival order (late ones included), give
    the same window as filtering every value by its time: no value lost at an interval's
    edge, none counted twice, none from outside."""
    from esg_leads.online_models.window_drift import _interval, _Subject

    subject = _Subject("x")
    for t, v in points:
        subject.add(_interval(t, cadence), t, v)
    hi = lo + width
    got = sorted(subject.between(lo, hi, cadence).tolist())
    assert got == sorted(v for t, v in points if lo <= t < hi)


def test_a_monitor_snapshotted_before_the_intervals_resumes_with_its_values() -> None:
    """Snapshots of a live run pickle the monitor; one written by the version that kept
    (times, values) deques per subject must resume and detect as if never stopped."""
    import pickle
    from collections import deque

    rng = random.Random(5)
    stream = [(T0 + i * 1200, {s: rng.gauss(0.0 if i < 720 else 1.0, 1.0) for s in SUBJECTS})
              for i in range(1440)]
    straight, resumed = WindowDrift(SUBJECTS), WindowDrift(SUBJECTS)
    hits = [h for t, v in stream for h in straight.update(t, v)]
    early = [h for t, v in stream[:600] for h in resumed.update(t, v)]
    assert hits and not early
    old = pickle.loads(pickle.dumps(resumed))  # now rewrite its subjects as the old format
    for subject in old.subjects.values():
        kept = sorted((t, v) for b in subject.buckets.values() for t, v in zip(b.times, b.values))
        state = (None, {"name": subject.name, "first_s": subject.first_s, "seen": subject.seen,
                        "quiet_until": subject.quiet_until,
                        "times": deque(t for t, _ in kept), "values": deque(v for _, v in kept)})
        subject.__setstate__(state)
    old.__setstate__(dict(old.__dict__))
    assert [(h.subject, h.at_s, h.evidence) for t, v in stream[600:] for h in old.update(t, v)] \
        == [(h.subject, h.at_s, h.evidence) for h in hits]


def test_values_are_kept_as_doubles_and_snapshots_holding_lists_resume_alike() -> None:
    """Issue 16: lists of float objects were ~40 bytes a value, doubles are 16 (with the
    cached NumPy copy); a snapshot of the version that kept lists resumes as if never stopped."""
    import pickle
    from array import array

    rng = random.Random(6)
    stream = [(T0 + i * 1200, {s: rng.gauss(0.0 if i < 720 else 1.0, 1.0) for s in SUBJECTS})
              for i in range(1440)]
    straight, resumed = WindowDrift(SUBJECTS), WindowDrift(SUBJECTS)
    hits = [h for t, v in stream for h in straight.update(t, v)]
    assert not [h for t, v in stream[:600] for h in resumed.update(t, v)]
    buckets = [b for s in resumed.subjects.values() for b in s.buckets.values()]
    assert buckets and all(type(b.times) is array and type(b.values) is array for b in buckets)
    for bucket in buckets:  # what the previous version pickled
        bucket.times, bucket.values = list(bucket.times), list(bucket.values)
    old = pickle.loads(pickle.dumps(resumed))
    assert [(h.subject, h.at_s, h.evidence) for t, v in stream[600:] for h in old.update(t, v)] \
        == [(h.subject, h.at_s, h.evidence) for h in hits]


def test_ticks_read_the_kept_doubles_without_copies_and_late_values_still_land() -> None:
    """Issue 16: a tick's arrays are views of the kept doubles (a copy of every value was
    half the detector's memory); a late value after a tick grows the bucket all the same,
    snapshots keep no views, and a snapshot that kept the copies resumes alike."""
    import pickle

    rng = random.Random(8)
    stream = [(T0 + i * 1200, {s: rng.gauss(0.0 if i < 720 else 1.0, 1.0) for s in SUBJECTS})
              for i in range(1440)]
    # A late value every 50: an interval a tick has already read grows again.
    stream = [((t - 86_400) if i % 50 == 49 else t, v) for i, (t, v) in enumerate(stream)]
    straight, resumed = WindowDrift(SUBJECTS), WindowDrift(SUBJECTS)
    hits = [[(h.subject, h.at_s, h.evidence) for h in straight.update(t, v)] for t, v in stream]
    assert any(hits[700:])
    for t, v in stream[:700]:
        resumed.update(t, v)
    read = [b for s in straight.subjects.values() for b in s.buckets.values() if b._arrays]
    assert read and all(not a.flags.owndata for b in read for a in b._arrays)
    snapshot = pickle.dumps(resumed)
    assert b"numpy" not in snapshot
    old_shape = pickle.loads(snapshot)
    for subject in old_shape.subjects.values():  # as the previous version pickled: with copies
        for bucket in subject.buckets.values():
            bucket.__setstate__((None, {"times": bucket.times, "values": bucket.values,
                                        "_arrays": (np.array(bucket.times), np.array(bucket.values))}))
    for monitor in (pickle.loads(snapshot), old_shape):
        assert [[(h.subject, h.at_s, h.evidence) for h in monitor.update(t, v)]
                for t, v in stream[700:]] == hits[700:]
