"""WindowAggregate: what one investor did in one window."""

from __future__ import annotations

import math
import pickle
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.investor_window import (
    ACTIONS,
    InvestorWindows,
    MAX_PROPERTIES,
    MAX_REFS,
    MAX_VALUES,
    WindowAggregate,
)
from esg_leads.schemas.codec import decode_event
from esg_leads.schemas.records import (
    CatalogMix,
    EnrichedEngagement,
    Ingested,
    InvestorWindow,
    PropertyFacts,
    SilenceDue,
)
from esg_leads.schemas.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
AS_OF = datetime(2026, 1, 1).toordinal()  # data_as_of of every property below
MIX = CatalogMix(10, high_epc=0.2, certified=0.1, low_climate_risk=0.5, log_value=math.log(5e6))
STALE = timedelta(days=365)
HOUR = timedelta(hours=1)
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)  # processing time of dead letters


def facts(pid: str, *, high: bool = False, certified: bool = False, low_risk: bool = False,
          third_party: bool = True, rank: int | None = 3, country: str = "GB",
          asset: str = "office", value: float | None = None, as_of: int = AS_OF,
          effective: datetime = T0 - timedelta(days=30)) -> PropertyFacts:
    return PropertyFacts(
        property_id=pid, tenant="acme", effective=effective, country=country, asset_class=asset,
        value_eur=value, epc_band=None, epc_rank=rank, energy_star_score=None, certified=certified,
        certified_verified=certified, certification=None, energy_intensity=None,
        carbon_intensity=None, max_climate_risk=None, third_party=third_party,
        data_as_of_ordinal=as_of, high_epc=high, low_climate_risk=low_risk,
    )


_offsets = iter(range(10**9))


def item(action: str = "property_view", *, minutes: int = 0, f: PropertyFacts | None = None,
         property_id: str | None = None, duration: float | None = None,
         investor: str = "inv-1", mix: CatalogMix = MIX) -> EnrichedEngagement:
    offset = next(_offsets)
    payload = {"tenant": "acme", "event_id": f"e{offset}",
               "event_time": (T0 + timedelta(minutes=minutes)).isoformat(), "source": "web",
               "investor_id": investor, "action": action, "channel": "web"}
    pid = property_id or (f.property_id if f is not None else None)
    if pid is not None:
        payload["property_id"] = pid
    if duration is not None:
        payload["duration_s"] = duration
    value = orjson.dumps(payload)
    ingested = Ingested(decode_event("investor.engagements", value), "investor.engagements", 0,
                        offset, 0, investor.encode(), value)
    return EnrichedEngagement(ingested, f, mix)


def fold(items: list[EnrichedEngagement]) -> dict[str, WindowAggregate]:
    """One aggregate per investor, as a window holds them."""
    acc: dict[str, WindowAggregate] = {}
    for it in items:
        investor = it.ingested.event.investor_id
        acc.setdefault(investor, WindowAggregate()).add(it, STALE.total_seconds() / 86_400)
    return acc


def test_new_aggregate_is_empty():
    agg = WindowAggregate()
    assert agg.n == 0 and agg.first is None and agg.last is None
    assert all(agg.action(a) == 0 for a in ACTIONS)


def test_counts_by_action_and_time_span():
    acc = fold([item("email_open", minutes=5), item("email_click", minutes=1),
                item("email_open", minutes=40), item("meeting_booked", minutes=20)])
    agg = acc["inv-1"]
    assert agg.n == 4
    assert (agg.action("email_open"), agg.action("email_click"), agg.action("meeting_booked")) == (2, 1, 1)
    assert agg.action("property_view") == 0
    assert agg.first == T0 + timedelta(minutes=1) and agg.last == T0 + timedelta(minutes=40)
    assert agg.with_facts == 0 and agg.unknown_property == 0


def test_one_aggregate_per_investor():
    acc = fold([item(investor="a"), item(investor="b"), item(investor="a")])
    assert sorted(acc) == ["a", "b"]
    assert acc["a"].n == 2 and acc["b"].n == 1


def test_esg_content_sums_and_expected_shares_from_the_catalog_mix():
    green = facts("p1", high=True, certified=True, low_risk=True, rank=1, country="GB")
    brown = facts("p2", rank=6, third_party=False, country="DE", asset="retail")
    agg = fold([item(f=green), item(f=green), item(f=brown)])["inv-1"]
    assert agg.with_facts == 3
    assert (agg.high_epc, agg.certified, agg.low_risk, agg.third_party) == (2, 2, 2, 2)
    # Each viewed property adds the catalog's base rates: what a random browser would see.
    assert agg.expected_high == pytest.approx(3 * 0.2)
    assert agg.expected_certified == pytest.approx(3 * 0.1)
    assert agg.expected_low_risk == pytest.approx(3 * 0.5)
    assert agg.epc_ranks[1] == 2 and agg.epc_ranks[6] == 1 and sum(agg.epc_ranks) == 3
    assert agg.countries == {"GB": 2, "DE": 1}
    assert agg.assets == {"office": 2, "retail": 1}
    assert agg.catalog_log_value == pytest.approx(math.log(5e6))


def test_data_age_and_staleness():
    fresh = facts("p1", as_of=T0.toordinal() - 10)
    old = facts("p2", as_of=T0.toordinal() - 400)
    agg = fold([item(f=fresh), item(f=old)])["inv-1"]
    assert agg.data_age_days == 410
    assert agg.stale == 1


def test_unknown_property_is_counted_but_adds_no_content():
    agg = fold([item(property_id="p-unknown"), item("email_open")])["inv-1"]
    assert agg.unknown_property == 1  # the email open names no property
    assert agg.with_facts == 0 and agg.expected_high == 0.0


def test_property_entry_keeps_the_latest_facts_and_a_count():
    old = facts("p1", rank=5, effective=T0 - timedelta(days=50))
    new = facts("p1", rank=1, high=True, effective=T0 - timedelta(days=5))
    agg = fold([item(f=new), item(f=old), item(f=old)])["inv-1"]
    count, kept = agg.properties["p1"]
    assert count == 3 and kept is new


def test_dwell_is_tracked_only_for_property_views_split_by_esg_strength():
    green = facts("p1", high=True)
    certified = facts("p2", certified=True)
    plain = facts("p3")
    agg = fold([
        item(f=green, duration=60.0), item(f=certified, duration=30.0), item(f=plain, duration=10.0),
        item("brochure_download", f=green, duration=500.0),  # not a view: no dwell
        item(f=plain),  # a view without a duration
        item(property_id="p-unknown", duration=99.0),  # no facts: no dwell
    ])["inv-1"]
    assert agg.dwell == [90.0, 2, 10.0, 1]


def test_log_values_of_valued_properties():
    agg = fold([item(f=facts("p1", value=1e6)), item(f=facts("p2"))])["inv-1"]
    assert agg.log_values == [pytest.approx(math.log(1e6))]


def test_lineage_refs_name_each_event():
    it = item("email_open")
    agg = fold([it])["inv-1"]
    assert agg.refs == [(it.ingested.event.event_id, "investor.engagements", 0, it.ingested.offset)]
    assert agg.refs == [it.ingested.ref()]


def test_state_is_bounded_whatever_the_traffic():
    items = [item(f=facts(f"p{i}", value=1e6 + i)) for i in range(100)]
    agg = fold(items)["inv-1"]
    assert agg.n == 100 and agg.with_facts == 100  # counts still see everything
    assert len(agg.refs) == MAX_REFS
    assert len(agg.properties) == MAX_PROPERTIES
    assert len(agg.log_values) == MAX_VALUES
    assert sum(c for c, _ in agg.properties.values()) == MAX_PROPERTIES


def test_a_property_signal_is_one_shared_reference_in_every_viewers_window():
    """Issue 16: a popular property's signal was held once per viewer; every window
    it enriched holds its facts' own reference tuple, one object per signal version
    (a restated property: each window refers to the version its facts came from)."""
    signal = ("sig-1", "property.esg_signals", 0, 7)
    f = facts("p1")._replace(ref=signal)
    restated = facts("p1")._replace(ref=("sig-2", "property.esg_signals", 0, 9))
    views = [item(f=f, investor=f"inv-{i}", minutes=i) for i in range(3)]
    views.append(item(f=restated, investor="inv-3", minutes=4))
    windows = windows_of()
    windows.process(views, NOW)
    closed = {w.investor_id: w.aggregate.refs for w in windows.flush(NOW)}
    signals = {investor: [r for r in refs if r[1] == "property.esg_signals"]
               for investor, refs in closed.items()}
    assert all(found == [signal] and found[0] is signal
               for investor, found in signals.items() if investor != "inv-3")
    assert signals["inv-3"] == [restated.ref] and signals["inv-3"][0] is restated.ref
    # What a window built alone holds: the same values.
    assert closed == {investor: agg.refs for investor, agg in fold(views).items()}


def test_windows_of_an_earlier_version_restore_with_compact_references():
    """A snapshot from before compact references: the open windows' references were
    dicts, and the windows kept an (empty) cache of shared signal references."""
    from esg_leads.operators.lineage import as_dicts

    windows = windows_of()
    windows.process([item("email_open"), item(f=facts("p1")._replace(
        ref=("sig-1", "property.esg_signals", 0, 7)), minutes=2)], NOW)
    state = windows.__getstate__()
    (agg,) = state["_open"].values()
    old = pickle.loads(pickle.dumps(agg))
    old.refs = as_dicts(agg.refs)  # what the earlier version held
    restored = pickle.loads(pickle.dumps(old))
    assert restored.refs == agg.refs and all(type(r) is tuple for r in restored.refs)
    again = InvestorWindows.__new__(InvestorWindows)
    again.__setstate__({**pickle.loads(pickle.dumps(state)), "_signal_refs": {}})
    assert "_signal_refs" not in again.__dict__
    assert [w.aggregate.refs for w in again.flush(NOW)] == [w.aggregate.refs for w in windows.flush(NOW)]


# ------------------------------------------------------------- tenant windows

def windows_of(stagger: bool = False, lateness: str = "PT15M", tenant: str = "acme",
               step: str = "PT0.025S") -> InvestorWindows:
    return InvestorWindows(tenant, Settings(windows={"length": "PT1H", "allowed_lateness": lateness,
                                                     "stagger": stagger, "stagger_step": step}))


def test_the_tenant_watermark_closes_every_investors_window_and_then_they_are_late():
    windows = windows_of()
    out = windows.process([item(minutes=10, investor="inv-1"), item(minutes=20, investor="inv-2"),
                           item(minutes=74, investor="inv-3")], NOW)
    assert out == []  # 10:14 has not reached 10:00 + 15 min lateness
    out = windows.process([item(minutes=75, investor="inv-3")], NOW)
    assert [(w.investor_id, w.window_start, w.window_end) for w in out] == [
        ("inv-1", T0, T0 + HOUR), ("inv-2", T0, T0 + HOUR)]
    assert all(isinstance(w, InvestorWindow) and w.tenant == "acme" for w in out)
    late = windows.process([item(minutes=59, investor="inv-9")], NOW)
    assert [(d["reason"], d["topic"]) for d in late] == [("late", "investor.engagements")]
    assert windows.counts[("used", "investor.engagements")] == 2
    # The end of input closes what is still open: inv-3's 10:00 window, with both events.
    (last,) = windows.flush(NOW)
    assert (last.investor_id, last.window_start, last.aggregate.n) == ("inv-3", T0 + HOUR, 2)
    assert windows.flush(NOW) == []


def test_an_event_whose_window_is_still_open_is_not_late_even_behind_the_watermark():
    windows = windows_of(lateness="PT0S")
    windows.process([item(minutes=10, investor="inv-1"), item(minutes=50, investor="inv-2")], NOW)
    assert windows.process([item(minutes=5, investor="inv-1")], NOW) == []
    (window, _) = windows.flush(NOW)
    assert window.aggregate.n == 2


def test_staggered_windows_are_shifted_by_a_stable_per_investor_phase():
    windows = windows_of(stagger=True)
    phases = {windows.phase(f"inv-{i}") for i in range(50)}
    assert len(phases) > 40 and all(0 <= p < 3600 for p in phases)
    assert windows.phase("inv-7") == windows_of(stagger=True).phase("inv-7")
    windows.process([item(minutes=m, investor=f"inv-{i}") for i in range(20) for m in (0, 30)], NOW)
    for window in windows.flush(NOW):
        agg = window.aggregate
        assert window.window_end - window.window_start == HOUR
        assert window.window_start <= agg.first <= agg.last < window.window_end
        shift = (T0 - window.window_start).total_seconds() % 3600
        assert shift == pytest.approx(windows.phase(window.investor_id), abs=1e-5)


def test_phases_are_whole_steps_plus_an_offset_per_tenant():
    acme, other = windows_of(stagger=True, step="PT1M"), windows_of(stagger=True, step="PT1M",
                                                                  tenant="borealis")
    offsets = set()
    for windows in (acme, other):
        phases = [windows.phase(f"inv-{i}") for i in range(600)]
        offset = min(phases) % 60
        steps = [(p - offset) / 60 for p in phases]
        assert all(0 <= p < 3600 and abs(n - round(n)) < 1e-6 for p, n in zip(phases, steps))
        assert len(set(phases)) == 60  # 600 investors fill all of the hour's 60 slots
        offsets.add(round(offset, 6))
    assert len(offsets) == 2 and all(0 <= o < 60 for o in offsets)  # tenants close apart


def test_a_snapshot_from_before_stagger_steps_keeps_its_phases():
    import zlib
    windows = windows_of(stagger=True)
    state = windows.__getstate__()
    for name in ("_slots", "_step", "_offset", "_idle_after", "_arrived"):
        del state[name]
    old = InvestorWindows.__new__(InvestorWindows)
    old.__setstate__({**state, "_stagger": True})
    assert old.phase("inv-7") == round((zlib.crc32(b"inv-7") % 10_000) * 3600 / 10_000, 6)


def _closed(outputs: list) -> list[tuple]:
    return [(w.investor_id, w.window_start, w.aggregate.n, sorted(r[0] for r in w.aggregate.refs))
            if isinstance(w, InvestorWindow) else tuple(w) if isinstance(w, SilenceDue)
            else ("late", w["event_id"]) for w in outputs]


timed_items = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 300)), max_size=60).map(
    lambda pairs: [item(minutes=m, investor=f"inv-{i}") for i, m in pairs])


@settings(max_examples=100, deadline=None)
@given(timed_items, st.lists(st.integers(1, 10), min_size=1), st.booleans())
def test_output_does_not_depend_on_batching_and_every_event_is_accounted_for(items, sizes, stagger):
    whole = windows_of(stagger)
    expected = whole.process(items, NOW) + whole.flush(NOW)
    batched, out, i = windows_of(stagger), [], 0
    for size in sizes * (len(items) + 1):
        if i >= len(items):
            break
        out += batched.process(items[i:i + size], NOW)
        # A snapshot at any batch boundary resumes to the same result.
        batched = pickle.loads(pickle.dumps(batched))
        i += size
    out += batched.flush(NOW)
    assert _closed(out) == _closed(expected)
    used = sum(w.aggregate.n for w in expected if isinstance(w, InvestorWindow))
    assert used + sum(1 for w in expected if isinstance(w, dict)) == len(items)
    assert used == whole.counts[("used", "investor.engagements")]


# --------------------------------------------------------------------- properties

PROPS = [facts("p1", high=True, certified=True, low_risk=True, rank=0, value=2e6),
         facts("p2", rank=7, country="FR", asset="hotel", as_of=AS_OF - 500),
         facts("p3", low_risk=True, rank=2, third_party=False, country="US", value=9e6)]
MIXES = [MIX, CatalogMix(3, 1 / 3, 0.7, 0.123, None)]

items_strategy = st.lists(
    st.builds(
        lambda action, minute, f, duration, mix: item(action, minutes=minute, f=f,
                                                      duration=duration, mix=mix),
        st.sampled_from(ACTIONS),
        st.integers(0, 59),
        st.none() | st.sampled_from(PROPS),
        st.none() | st.floats(0, 3600, allow_nan=False),
        st.sampled_from(MIXES),
    ),
    max_size=25,
)


def _summary(agg: WindowAggregate) -> dict:
    return {
        "n": agg.n, "actions": agg.actions, "with_facts": agg.with_facts,
        "content": (agg.high_epc, agg.certified, agg.low_risk, agg.third_party, agg.stale,
                    agg.data_age_days, agg.unknown_property),
        "epc_ranks": agg.epc_ranks, "countries": agg.countries, "assets": agg.assets,
        "first": agg.first, "last": agg.last, "dwell_counts": (agg.dwell[1], agg.dwell[3]),
        "properties": {k: v[0] for k, v in agg.properties.items()},
        "log_values": sorted(agg.log_values),
    }


@settings(max_examples=150, deadline=None)
@given(items_strategy, st.randoms(use_true_random=False))
def test_folding_a_permutation_gives_the_same_counts_and_sums(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    a, b = fold(items), fold(shuffled)
    assert a.keys() == b.keys()
    for investor in a:
        x, y = a[investor], b[investor]
        assert _summary(x) == _summary(y)
        for attr in ("expected_high", "expected_certified", "expected_low_risk"):
            assert getattr(x, attr) == pytest.approx(getattr(y, attr))
        assert x.dwell[0] == pytest.approx(y.dwell[0]) and x.dwell[2] == pytest.approx(y.dwell[2])
        assert x.n == sum(x.actions) == len(items)


# ---------------------------------------------------------------- idle tenants

def idle_windows(idle: str | None = "PT10M", rescore: tuple[str, ...] = ()) -> InvestorWindows:
    return InvestorWindows("acme", Settings(windows={
        "length": "PT1H", "allowed_lateness": "PT15M", "stagger": False, "idle_close_after": idle},
        features={"rescore_after": list(rescore)}))


def test_an_idle_tenants_windows_close_as_if_its_clock_kept_pace_with_the_wall_clock():
    windows = idle_windows()
    wall = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    assert windows.idle_deadline() is None  # nothing has arrived
    windows.process([item(minutes=50, investor="inv-1")], wall)  # watermark 9:50
    # 9:00-10:00 closes at 10:15, 25 event minutes on: due 25 wall minutes later.
    assert windows.idle_deadline() == wall + timedelta(minutes=25, milliseconds=1)
    assert windows.advance_idle(wall + timedelta(minutes=24)) == []
    (window,) = windows.advance_idle(wall + timedelta(minutes=25))
    assert (window.investor_id, window.window_start) == ("inv-1", T0)
    assert windows.idle_deadline() is None and windows.flush(NOW) == []
    # The clock moved on: an event from the closed window is late now.
    late = windows.process([item(minutes=55, investor="inv-2")], wall + timedelta(minutes=26))
    assert [d["reason"] for d in late] == ["late"]


def test_a_tenant_is_idle_only_after_idle_close_after_even_if_a_window_is_due_sooner():
    windows = idle_windows("PT30M")
    wall = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    windows.process([item(minutes=10, investor="inv-1"), item(minutes=74, investor="inv-2")], wall)
    # inv-1's window closes at 10:15, one event minute away, but idleness takes 30.
    assert windows.idle_deadline() == wall + timedelta(minutes=30, milliseconds=1)
    assert windows.advance_idle(wall + timedelta(minutes=29)) == []
    (window,) = windows.advance_idle(wall + timedelta(minutes=30))
    assert window.investor_id == "inv-1"
    # inv-2's 10:00 window closes at 11:15: 61 event minutes after 10:14.
    assert windows.idle_deadline() == wall + timedelta(minutes=61, milliseconds=1)


def test_without_idle_close_after_or_after_a_restart_nothing_closes_on_the_wall_clock():
    wall = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    never = idle_windows(None)
    never.process([item(minutes=50, investor="inv-1")], wall)
    assert never.idle_deadline() is None and never.advance_idle(wall + timedelta(days=9)) == []
    windows = idle_windows()
    windows.process([item(minutes=50, investor="inv-1")], wall)
    # A restarted run must read its backlog before calling a tenant idle.
    resumed = pickle.loads(pickle.dumps(windows))
    assert resumed.idle_deadline() is None and resumed.advance_idle(wall + timedelta(days=9)) == []
    resumed.process([item(minutes=51, investor="inv-1")], wall + timedelta(days=9))
    assert resumed.idle_deadline() == wall + timedelta(days=9, minutes=24, milliseconds=1)


def test_an_idle_deadline_is_never_asked_for_again_at_once():
    # Deadlines hold whole microseconds: one rounded down would find nothing due.
    import random
    rng = random.Random(3)
    for _ in range(300):
        windows = idle_windows("PT1S")
        wall = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc) + timedelta(
            microseconds=rng.randrange(10**6))
        windows.process([item(minutes=59, investor="inv-1")], wall)
        windows._arrived = (windows._arrived[0] + rng.random() * 1e-6, windows._arrived[1])
        deadline = windows.idle_deadline()
        assert len(windows.advance_idle(deadline)) == 1 and windows.idle_deadline() is None


def test_an_idle_tenants_silence_rescores_fall_due_on_the_wall_clock_too():
    windows = idle_windows(rescore=("P1D",))
    wall = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    windows.process([item(minutes=50, investor="inv-1")], wall)  # watermark 9:50
    (window,) = windows.advance_idle(wall + timedelta(minutes=25))
    # Its re-score is due a day after the window's end, 10:00: a day and 10 minutes on.
    assert windows.idle_deadline() == wall + timedelta(days=1, minutes=10, milliseconds=1)
    assert windows.advance_idle(wall + timedelta(days=1, minutes=9)) == []
    (due,) = windows.advance_idle(windows.idle_deadline())
    assert due == SilenceDue("acme", "inv-1", T0 + HOUR + DAY, T0 + HOUR)
    assert windows.idle_deadline() is None


# ------------------------------------------------- silence re-scores on the tenant clock

DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)


def timed(rescore: tuple[str, ...] = ("P3D",), lateness: str = "PT15M",
          stagger: bool = False) -> InvestorWindows:
    return InvestorWindows("acme", Settings(
        windows={"length": "PT1H", "allowed_lateness": lateness, "stagger": stagger},
        features={"rescore_after": list(rescore)}))


def minutes(delta: timedelta) -> int:
    return int(delta / MINUTE)


def silences(out: list) -> list[SilenceDue]:
    return [o for o in out if type(o) is SilenceDue]


@pytest.mark.parametrize("mover", ["inv-2", "inv-3"])  # inv-1 itself: see the next-but-two
def test_a_silence_rescore_is_due_when_the_tenants_clock_reaches_its_deadline_whoever_moves_it(
        mover):
    """Not when the investor's shard next hears from one of its own investors: that
    was hours later in the demo, after a reviewer had decided the case it opened."""
    windows = timed()
    windows.process([item(minutes=10, investor="inv-1"), item(minutes=75, investor="inv-2")], NOW)
    deadline = T0 + HOUR + 3 * DAY  # the end of inv-1's 9:00 window, plus three days
    before = windows.process([item(minutes=minutes(deadline - T0) - 1, investor=mover)], NOW)
    assert silences(before) == []
    out = windows.process([item(minutes=minutes(deadline - T0), investor=mover)], NOW)
    assert silences(out) == [SilenceDue("acme", "inv-1", deadline, T0 + HOUR)]
    # Once: nothing more for inv-1, whatever else falls due later.
    later = windows.process([item(minutes=minutes(9 * DAY), investor="inv-4")], NOW)
    assert silences(later) and "inv-1" not in {s.investor_id for s in silences(later)}


def test_window_closes_and_rescores_come_out_in_the_order_of_their_instants():
    windows = timed(("P1D", "P3D"))
    windows.process([item(minutes=10, investor="inv-1")], NOW)
    out = windows.process([item(minutes=minutes(10 * DAY), investor="inv-2")], NOW)
    assert [(type(o).__name__, o.investor_id) for o in out] == [
        ("InvestorWindow", "inv-1"), ("SilenceDue", "inv-1"), ("SilenceDue", "inv-1")]
    assert [s.due for s in silences(out)] == [T0 + HOUR + DAY, T0 + HOUR + 3 * DAY]


def test_activity_after_the_planned_window_cancels_its_rescore_and_plans_a_new_one():
    windows = timed()
    windows.process([item(minutes=10, investor="inv-1")], NOW)
    windows.process([item(minutes=minutes(2 * DAY) + 10, investor="inv-1")], NOW)
    assert silences(windows.process([item(minutes=minutes(4 * DAY), investor="inv-2")], NOW)) == []
    out = windows.process([item(minutes=minutes(5 * DAY + HOUR), investor="inv-2")], NOW)
    assert silences(out) == [SilenceDue("acme", "inv-1", T0 + HOUR + 5 * DAY, T0 + HOUR + 2 * DAY)]
    assert windows._planned == {"inv-2": [windows._planned["inv-2"][0], 1]}  # noqa: SLF001


@pytest.mark.parametrize("lateness", ["PT15M", "PT0S"])
def test_a_window_ending_at_the_rescore_instant_supersedes_the_rescore(lateness):
    """Both would be leads as of that instant, under one idempotency key (seen live:
    consumers kept one, replays the other): the window, which has the new events, wins."""
    windows = timed(lateness=lateness)
    windows.process([item(minutes=10, investor="inv-1")], NOW)
    deadline = T0 + HOUR + 3 * DAY
    windows.process([item(minutes=minutes(deadline - T0) - 30, investor="inv-1")], NOW)
    out = windows.process([item(minutes=minutes(deadline - T0) + 20, investor="inv-2")], NOW)
    assert silences(out) == []
    assert [(w.investor_id, w.window_end) for w in out] == [("inv-1", deadline)]
    later = windows.process([item(minutes=minutes(9 * DAY), investor="inv-2")], NOW)
    assert [s.due for s in silences(later) if s.investor_id == "inv-1"] == [deadline + 3 * DAY]


def test_the_end_of_input_fires_no_rescore_and_an_erasure_forgets_the_investor():
    windows = timed()
    windows.process([item(minutes=10, investor="inv-1"), item(minutes=10, investor="inv-2"),
                     item(minutes=80, investor="inv-3")], NOW)
    windows.forget("inv-1")
    assert all(t[1] != "inv-1" for t in windows._timers) and "inv-1" not in windows._planned  # noqa: SLF001
    out = windows.process([item(minutes=minutes(4 * DAY), investor="inv-3")], NOW)
    assert [s.investor_id for s in silences(out)] == ["inv-2", "inv-3"]
    assert silences(windows.flush(NOW)) == []


def test_a_snapshot_from_before_the_tenant_clock_timed_rescores_plans_them_from_now_on():
    windows = timed()
    windows.process([item(minutes=10, investor="inv-1")], NOW)
    state = windows.__getstate__()
    for name in ("_rescore_after", "_timers", "_planned"):
        del state[name]
    old = InvestorWindows.__new__(InvestorWindows)
    old.__setstate__(state)
    old.set_rescore_after((timedelta(days=3),))  # TenantIntake.restore passes the settings
    old.process([item(minutes=80, investor="inv-2")], NOW)
    out = old.process([item(minutes=minutes(4 * DAY), investor="inv-2")], NOW)
    assert [s.investor_id for s in silences(out)] == ["inv-1", "inv-2"]


rescore_items = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 900)), max_size=60).map(
    lambda pairs: [item(minutes=m, investor=f"inv-{i}") for i, m in pairs])


@settings(max_examples=100, deadline=None)
@given(rescore_items, st.lists(st.integers(1, 10), min_size=1), st.booleans())
def test_rescores_fire_at_the_first_event_that_reaches_their_deadline_however_batched(
        items, sizes, stagger):
    def fresh() -> InvestorWindows:
        return timed(("PT2H", "PT5H"), stagger=stagger)

    one_by_one, expected, clock = fresh(), [], float("-inf")
    for it in items:
        out = one_by_one.process([it], NOW)
        for due in silences(out):  # due now and not before: a function of the clock
            assert clock < one_by_one._seconds(due.due) <= one_by_one.watermark  # noqa: SLF001
            assert due.due - due.planned_for in (2 * HOUR, 5 * HOUR)
        clock = one_by_one.watermark
        expected += out
    expected += one_by_one.flush(NOW)
    batched, out, i = fresh(), [], 0
    for size in sizes * (len(items) + 1):
        if i >= len(items):
            break
        out += batched.process(items[i:i + size], NOW)
        batched = pickle.loads(pickle.dumps(batched))
        i += size
    out += batched.flush(NOW)
    assert _closed(out) == _closed(expected)
