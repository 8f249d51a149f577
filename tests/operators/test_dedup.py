"""EventIdDedup: redelivered event ids are recognised within an event-time horizon."""

from __future__ import annotations

import pickle
import struct
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from esg_leads.operators.dedup import EventIdDedup, id_key

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
PINNED_KEY = -4484350512283479584  # BLAKE2b-64 of "investor.engagements/e-1", little-endian


def test_first_delivery_is_new_and_redelivery_is_duplicate():
    seen = EventIdDedup(horizon=24 * HOUR)
    assert seen.first_time("e1", T0) is True
    assert seen.first_time("e1", T0) is False
    assert seen.first_time("e2", T0) is True
    # A redelivery is a duplicate whatever event time it carries.
    assert seen.first_time("e1", T0 + 5 * HOUR) is False
    assert len(seen) == 2


def test_ids_expire_once_the_newest_event_is_a_horizon_past_them():
    seen = EventIdDedup(horizon=24 * HOUR)
    seen.first_time("old", T0)
    seen.first_time("mid", T0 + 12 * HOUR)
    # Exactly one horizon after "old": still remembered (expiry is strictly older).
    seen.first_time("edge", T0 + 24 * HOUR)
    assert seen.first_time("old", T0) is False
    # Past the horizon: "old" is forgotten, "mid" is not.
    seen.first_time("new", T0 + 25 * HOUR)
    assert len(seen) == 3
    assert seen.first_time("mid", T0 + 12 * HOUR) is False
    assert seen.first_time("old", T0) is True  # forgotten: treated as new again


def test_expiry_follows_event_time_not_arrival_count():
    seen = EventIdDedup(horizon=HOUR)
    for i in range(1000):  # many arrivals, all at the same event time
        seen.first_time(f"e{i}", T0)
    assert len(seen) == 1000
    assert seen.first_time("e0", T0) is False


def test_offsets_compare_as_instants():
    seen = EventIdDedup(horizon=HOUR)
    seen.first_time("utc", T0)
    # 13:30+01:00 is 12:30Z: within the hour, so nothing expires.
    seen.first_time("cet", datetime(2026, 3, 1, 13, 30, tzinfo=timezone(HOUR)))
    assert seen.first_time("utc", T0) is False
    # 15:01+02:00 is 13:01Z: now "utc" (12:00Z) is older than the horizon.
    seen.first_time("eet", datetime(2026, 3, 1, 15, 1, tzinfo=timezone(2 * HOUR)))
    assert seen.first_time("utc", T0) is True


def test_an_out_of_order_old_event_does_not_expire_newer_ids():
    seen = EventIdDedup(horizon=HOUR)
    seen.first_time("recent", T0)
    seen.first_time("late", T0 - 10 * HOUR)  # far older than the horizon, arrives late
    assert seen.first_time("recent", T0) is False
    assert seen.first_time("late", T0 - 10 * HOUR) is False


def test_pickle_round_trip_keeps_behaviour():
    seen = EventIdDedup(horizon=2 * HOUR)
    for i, minutes in enumerate([0, 30, 60, 90]):
        seen.first_time(f"e{i}", T0 + timedelta(minutes=minutes))
    copy = pickle.loads(pickle.dumps(seen))
    assert len(copy) == len(seen) == 4
    # Same answers, and the same expiry afterwards, from original and copy.
    for dedup in (seen, copy):
        assert dedup.first_time("e1", T0) is False
        assert dedup.first_time("e9", T0 + timedelta(minutes=150)) is True  # expires e0 (at T0)
        assert len(dedup) == 4
        assert dedup.first_time("e0", T0) is True
        assert dedup.first_time("e2", T0) is False


# --------------------------------------------------------------------- properties

HORIZON_MIN = 60
deliveries = st.lists(
    st.tuples(st.sampled_from([f"e{i}" for i in range(12)]), st.integers(0, 400)),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(deliveries)
def test_an_id_seen_within_the_horizon_is_always_a_duplicate(stream):
    """Against a model: an id is a duplicate iff seen before and not yet forgotten, and
    an id whose last sighting is within the horizon of the newest event is never forgotten."""
    seen = EventIdDedup(horizon=timedelta(minutes=HORIZON_MIN))
    last_seen: dict[str, int] = {}  # id -> minute of the delivery that recorded it
    newest = None
    for event_id, minute in stream:
        first = seen.first_time(event_id, T0 + timedelta(minutes=minute))
        if event_id in last_seen and last_seen[event_id] >= (newest - HORIZON_MIN):
            assert first is False, (event_id, minute)
        if first:
            last_seen[event_id] = minute
        newest = minute if newest is None else max(newest, minute)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=200))
def test_memory_is_bounded_by_the_events_inside_the_horizon(gaps):
    """With events in time order, exactly the ids of the last horizon are kept."""
    seen = EventIdDedup(horizon=timedelta(minutes=HORIZON_MIN))
    minute = 0
    times = []
    for i, gap in enumerate(gaps):
        minute += gap
        times.append(minute)
        assert seen.first_time(f"e{i}", T0 + timedelta(minutes=minute))
        inside = sum(1 for t in times if t >= minute - HORIZON_MIN)
        assert len(seen) == inside


class DedupMachine(RuleBasedStateMachine):
    """Deliveries (new ids, redeliveries, late events) and snapshots interleaved."""

    def __init__(self) -> None:
        super().__init__()
        self.dedup = EventIdDedup(horizon=timedelta(minutes=HORIZON_MIN))
        self.recorded: dict[str, int] = {}
        self.newest: int | None = None
        self.counter = 0

    def _deliver(self, event_id: str, minute: int) -> bool:
        first = self.dedup.first_time(event_id, T0 + timedelta(minutes=minute))
        if first:
            self.recorded[event_id] = minute
        self.newest = minute if self.newest is None else max(self.newest, minute)
        return first

    @rule(step=st.integers(0, 40))
    def new_event(self, step):
        minute = (self.newest or 0) + step
        self.counter += 1
        assert self._deliver(f"n{self.counter}", minute) is True

    @rule(data=st.data())
    def redeliver(self, data):
        if not self.recorded:
            return
        event_id = data.draw(st.sampled_from(sorted(self.recorded)))
        recorded_at = self.recorded[event_id]
        within = recorded_at >= self.newest - HORIZON_MIN
        first = self._deliver(event_id, recorded_at)
        if within:
            assert first is False

    @rule(back=st.integers(0, 200))
    def late_event(self, back):
        self.counter += 1
        assert self._deliver(f"l{self.counter}", max(0, (self.newest or 0) - back)) is True

    @rule()
    def snapshot_and_restore(self):
        self.dedup = pickle.loads(pickle.dumps(self.dedup))

    @invariant()
    def memory_bounded(self):
        # Never more ids than were recorded, and never fewer than those inside the horizon.
        if self.newest is None:
            return
        inside = sum(1 for m in self.recorded.values() if m >= self.newest - HORIZON_MIN)
        assert inside <= len(self.dedup) <= len(self.recorded)


TestDedupMachine = DedupMachine.TestCase
TestDedupMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# ------------------------------------------------------------- compact form (issue 16)

def test_the_digest_of_an_id_is_pinned_so_snapshots_read_alike_in_every_process():
    # BLAKE2b, not hash(): Python's str hash is salted per process.
    assert id_key("investor.engagements/e-1") == PINNED_KEY
    assert id_key("\ud800 lone surrogate") != id_key("? lone surrogate")


def test_a_snapshot_from_before_digests_resumes_with_the_same_answers():
    seen = EventIdDedup(horizon=2 * HOUR)
    for i, minutes in enumerate([0, 30, 60, 90]):
        seen.first_time(f"e{i}", T0 + timedelta(minutes=minutes))
    # What a4481ae's EventIdDedup pickled: (horizon s, [(event time s, id)], newest s).
    t0 = T0.timestamp()
    old = EventIdDedup.__new__(EventIdDedup)
    old.__setstate__((7200.0, [(t0 + m * 60, f"e{i}") for i, m in enumerate([0, 30, 60, 90])],
                      t0 + 5400))
    for dedup in (seen, old):
        assert len(dedup) == 4 and dedup.first_time("e3", T0) is False
        assert dedup.first_time("e9", T0 + timedelta(minutes=150)) is True  # expires e0
        assert len(dedup) == 4 and dedup.first_time("e0", T0) is True


def test_snapshots_are_little_endian_whatever_the_host():
    seen = EventIdDedup(horizon=HOUR)
    seen.first_time("x", T0)
    version, horizon, times, keys, newest = seen.__getstate__()
    assert (version, horizon, newest) == (2, 3600.0, T0.timestamp())
    assert struct.unpack("<d", times) == (T0.timestamp(),)
    assert struct.unpack("<q", keys) == (id_key("x"),)


def test_expired_ids_leave_the_arrays_too():
    seen = EventIdDedup(horizon=HOUR)
    for i in range(20_000):  # a minute apart: about sixty inside the horizon at any time
        assert seen.first_time(f"e{i}", T0 + timedelta(minutes=i))
    assert len(seen) == 61
    assert len(seen._times) - seen._head == 61 and len(seen._times) <= 2_200
    assert seen.first_time("e19999", T0) is False and seen.first_time("e0", T0) is True
