"""InvestorProfileState and the vectors built from it give the doubles the eager code did.

Issue 16 made the investor stage do less per vector: the context and the thesis checks
kept until what they show changes, the lineage shared, not copied, the ranges checked
and the alignment clamped without a call per value. The oracle is main df89d1b's code, kept below as it was (``eager_*``): any
sequence of windows, silences, profile changes, unsubscribes and snapshot restores
must give the same state and the same vectors, bit for bit (compared by ``repr``,
which tells -0.0 from 0.0 and every NaN from a number).
"""

from __future__ import annotations

import math
import pickle
import sys
from array import array
from datetime import datetime, timedelta, timezone
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from esg_leads.operators import features as F
from esg_leads.operators.compact import Weights
from esg_leads.operators.feature_definitions import FEATURE_NAMES, FEATURE_RANGES
from esg_leads.operators.investor_profile import (
    _CONTENT_HALF_LIFE_DAYS,
    _DEPTH,
    _ESG_REPORT,
    _VIEW,
    LN2,
    MAX_LINEAGE,
    TOP_PROPERTIES,
    InvestorProfileState,
    KeptVector,
)
from esg_leads.operators.kept_vectors import PackedHistory
from esg_leads.operators.top_properties import UNCHECKED, TopProperties
from esg_leads.operators.investor_window import ACTION_INDEX, ACTIONS, WindowAggregate
from esg_leads.operators.lineage import PackedRefs, append_refs, as_dicts, combine, compact, ref
from esg_leads.schemas.codec import decode_event
from esg_leads.schemas.records import InvestorContext, PropertyFacts

HALF_LIVES = (1.0, 7.0, 30.0)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


# ------------------------------------------------------------ the oracle (df89d1b)

class EagerTop(dict):
    """Top properties as df89d1b kept them: ``{property_id: [weight, facts]}``."""

    def clear_checks(self) -> None:  # the eager code keeps no checks (the state's method)
        pass


def eager_top(s: InvestorProfileState) -> EagerTop:
    if type(s.top_properties) is not EagerTop:
        s.top_properties = EagerTop({k: [w, f] for k, (w, f) in s.top_properties.items()})
    return s.top_properties


def eager_decay(s: InvestorProfileState, now: datetime, half_lives_days) -> None:
    ts = now.timestamp()
    clock = s.clock
    if clock is not None and ts > clock:
        days = (ts - clock) / 86_400
        exp = math.exp
        factors = [exp(-LN2 * days / h) for h in half_lives_days]
        s.counts = [v * f for v, f in zip(s.counts, factors)]
        s.depth = [v * f for v, f in zip(s.depth, factors)]
        f = exp(-LN2 * days / _CONTENT_HALF_LIFE_DAYS)
        s.views *= f
        s.esg_reports *= f
        s.active_windows *= f
        s.content = [v * f for v in s.content]
        s.epc_ranks = [v * f for v in s.epc_ranks]
        if s.countries:
            s.countries = {k: v * f for k, v in s.countries.items()}
            s.assets = {k: v * f for k, v in s.assets.items()}
        s.value_n *= f
        s.value_sum *= f
        s.value_sq *= f
        for entry in eager_top(s).values():
            entry[0] *= f
    if clock is None or ts > clock:
        s.clock = ts


def eager_apply(s: InvestorProfileState, agg: WindowAggregate, window_end: datetime,
                half_lives_days) -> None:
    eager_decay(s, window_end, half_lives_days)
    # Lists, as df89d1b kept them (the state's own are in one array: set back below).
    counts, depths, content, epc_ranks = (list(s.counts), list(s.depth), list(s.content),
                                          list(s.epc_ranks))
    actions = agg.actions
    depth = sum(actions[i] * w for i, w in _DEPTH)
    for i in range(len(counts)):
        counts[i] += agg.n
        depths[i] += depth
    s.views += actions[_VIEW]
    s.esg_reports += actions[_ESG_REPORT]
    s.active_windows += 1
    s.meetings += actions[ACTION_INDEX["meeting_booked"]]
    s.replies += actions[ACTION_INDEX["reply"]]
    if agg.catalog_log_value is not None:
        s.catalog_log_value = agg.catalog_log_value
    s.ingest_ms = agg.ingest_ms or None
    dwell = list(s.dwell)  # a list, as df89d1b kept it (set back below)
    for i, v in enumerate(agg.dwell):
        dwell[i] += v
    s.dwell = dwell
    totals = s.totals
    totals[0] += 1
    totals[1] += agg.n
    totals[2] += actions[_VIEW]
    totals[3] += depth
    totals[4] += actions[_ESG_REPORT]
    c = content
    c[0] += agg.with_facts
    c[1] += agg.high_epc
    c[2] += agg.certified
    c[3] += agg.low_risk
    c[4] += agg.third_party
    c[5] += agg.expected_high
    c[6] += agg.expected_certified
    c[7] += agg.expected_low_risk
    c[8] += agg.data_age_days
    c[9] += agg.stale
    for i, n in enumerate(agg.epc_ranks):
        if n:
            epc_ranks[i] += n
    s.counts, s.depth, s.content, s.epc_ranks = counts, depths, content, epc_ranks
    # Dicts, as the code before Weights kept them.
    s.countries, s.assets = dict(s.countries.items()), dict(s.assets.items())
    for k, n in agg.countries.items():
        s.countries[k] = s.countries.get(k, 0.0) + n
    for k, n in agg.assets.items():
        s.assets[k] = s.assets.get(k, 0.0) + n
    for v in agg.log_values:
        s.value_n += 1
        s.value_sum += v
        s.value_sq += v * v
    if agg.properties:
        s._engaged = None
    top = eager_top(s)
    for property_id, (count, facts) in agg.properties.items():
        entry = top.get(property_id)
        if entry is None:
            top[property_id] = [float(count), facts]
        else:
            entry[0] += count
            if facts.effective >= entry[1].effective:
                entry[1] = facts
    if len(top) > TOP_PROPERTIES:
        s.top_properties = EagerTop(sorted(top.items(), key=lambda kv: (-kv[1][0], kv[0]))[:TOP_PROPERTIES])
    if s.first_seen is None or (agg.first is not None and agg.first < s.first_seen):
        s.first_seen = agg.first
    if agg.first is not None and (s.first_known is None or agg.first < s.first_known):
        s.first_known = agg.first
    seek_dwell = list(s.seek_dwell)
    seek_dwell[0] += agg.seek_dwell[0]
    seek_dwell[1] += agg.seek_dwell[1]
    s.seek_dwell = seek_dwell
    s.previous_active = s.last_active
    s.last_active = window_end
    # The code before compact references: dicts, appended to a list (as_dicts passes a
    # list of dicts through).
    s.lineage, omitted = append_refs(as_dicts(s.lineage), s.lineage_omitted, as_dicts(agg.refs),
                                     MAX_LINEAGE)
    s.lineage_omitted = combine(omitted, agg.omitted)


def eager_thesis_fit(state: InvestorProfileState) -> float:
    targets_c, targets_a, excluded = state.target_countries, state.target_assets, state.excluded_assets
    ticket = state.ticket_max
    total = weight = 0.0
    for entry in state.top_properties.values():
        w, facts = entry[0], entry[1]
        checks = []
        if targets_a or excluded:
            checks.append(float(facts.asset_class not in excluded
                                and (not targets_a or facts.asset_class in targets_a)))
        if targets_c:
            checks.append(float(facts.country in targets_c))
        if ticket and facts.value_eur:
            checks.append(math.exp(-abs(math.log(facts.value_eur / ticket)) / 2))
        if checks:
            total += w * sum(checks) / len(checks)
            weight += w
    return (total + 3.0 * 0.5) / (weight + 3.0)


def eager_alignment(features: dict, state: InvestorProfileState):
    efficiency = min(100.0, max(0.0, 50 + 125 * features["high_epc_lift"]))
    certification = min(100.0, max(0.0, 50 + 125 * features["certified_lift"]))
    climate = min(100.0, max(0.0, 50 + 125 * features["low_risk_lift"]))
    research = min(100.0, max(0.0, 100 * (1 - math.exp(-1.5 * features["esg_reports_30d"]))))
    stated = min(100.0, max(0.0, 100 * features["stated_esg"]))
    fit = (min(100.0, max(0.0, 100 * features["pref_match_epc"]))
           if state.min_epc_rank is not None else 50.0)
    w = F.ALIGNMENT_WEIGHTS
    score = (w["energy_efficiency"] * efficiency + w["certification"] * certification
             + w["climate_resilience"] * climate + w["esg_research"] * research
             + w["stated_commitment"] * stated + w["preference_fit"] * fit)
    return round(score, 2), {
        "energy_efficiency": round(efficiency, 2), "certification": round(certification, 2),
        "climate_resilience": round(climate, 2), "esg_research": round(research, 2),
        "stated_commitment": round(stated, 2), "preference_fit": round(fit, 2)}


def eager_context(state: InvestorProfileState) -> InvestorContext:
    ranked = sorted(state.top_properties.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return InvestorContext(
        state.investor_type, state.subscriber_type, state.jurisdiction, dict(state.consents),
        state.do_not_call, state.unsubscribed, state.ticket_min, state.ticket_max,
        state.min_epc_band, state.required_certifications, state.sfdr_target,
        state.uk_sdr_label, state.max_climate_risk, state.target_countries,
        state.target_assets, state.excluded_assets, state.contact_ref,
        tuple(entry[1] for _, entry in ranked[:5]), state.do_not_contact, state.time_zone)


def eager_vector(state: InvestorProfileState, as_of: datetime) -> tuple:
    with mock.patch.object(F, "thesis_fit", eager_thesis_fit):
        features = F.compute_features(state, as_of)
    clamped = F.clamp_features(features)
    alignment, components = eager_alignment(features, state)
    intent = F.intent_score(features)
    n = state.content[0]
    return (as_of, features, tuple(features.values()), alignment, components, intent,
            F.engagement_readiness(features, intent),
            max(0.0, round(state.content[8] / n, 1)) if n else None, eager_context(state),
            as_dicts(state.lineage), state.ingest_ms if state.last_active == as_of else None,
            tuple(clamped), state.lineage_omitted)


def new_vector(state: InvestorProfileState, as_of: datetime) -> tuple:
    v = F.build_vector(state, "acme", "inv-1", as_of)
    return (v.as_of, v.features, v.values, v.esg_alignment, v.esg_components, v.intent,
            v.engagement_readiness, v.data_freshness_days, v.context, as_dicts(v.lineage),
            v.ingest_ms, v.clamped, v.lineage_omitted)


STATE_SLOTS = ("clock", "counts", "depth", "views", "esg_reports", "active_windows", "content",
               "epc_ranks", "countries", "assets", "value_n", "value_sum", "value_sq",
               "meetings", "replies", "totals", "dwell", "seek_dwell", "catalog_log_value",
               "ingest_ms", "first_seen", "last_active", "previous_active", "first_known",
               "lineage_omitted")


def snapshot_of(state: InvestorProfileState) -> str:
    """The state's values, whatever holds them (the eager code keeps lists and dicts,
    the state arrays of doubles and Weights: the same floats, in the same order)."""
    top = {k: (e[0], e[1]) for k, e in state.top_properties.items()}
    slots = [getattr(state, name) for name in STATE_SLOTS]
    return repr(([list(v) if isinstance(v, array) else dict(v.items())
                  if isinstance(v, Weights) else v for v in slots], top,
                 as_dicts(state.lineage)))


# -------------------------------------------------------------------- inputs

def _facts(pid: str, day: int, country: str, asset: str, value: float | None, risk: int | None):
    return PropertyFacts(pid, "acme", T0 + timedelta(days=day), country, asset, value, "B", 2,
                         None, False, False, None, None, None, risk, day % 2 == 0,
                         T0.toordinal() - 30, True, risk is not None and risk < 40)


#: A pool of facts: the same objects come back (the catalog shares them), and newer
#: versions of a property (a replaced entry must lose its thesis checks).
FACTS = [_facts(f"p{i % 6}", i // 6, ("DE", "FR", "GB")[i % 3], ("office", "retail")[i % 2],
                (None, 2e6, 4.5e7, 9e5)[i % 4], (None, 20, 70)[i % 3]) for i in range(12)]

PROFILES = [
    {},
    {"target_countries": ["DE"], "target_asset_classes": ["office"], "ticket_max_eur": 3e6,
     "preferences": {"min_epc_band": "C", "excluded_asset_classes": ["retail"]},
     "consents": [{"channel": "email", "status": "opted_in"}]},
    {"ticket_max_eur": 5e7, "risk_tolerance": "low",
     "consents": [{"channel": "phone", "status": "opted_in"}]},
    {"target_countries": ["FR", "GB"], "preferences": {"max_climate_risk": 50}},
]


def profile(i: int, when: datetime):
    payload = {"tenant": "acme", "source": "test", "event_id": f"prof-{when.timestamp()}",
               "event_time": when.isoformat(), "investor_id": "inv-1",
               "investor_type": "pension_fund", "subscriber_type": "corporate",
               "jurisdiction": "DE", **PROFILES[i]}
    return decode_event("investor.profiles", orjson.dumps(payload))


@st.composite
def aggregates(draw) -> WindowAggregate:
    agg = WindowAggregate()
    agg.actions = draw(st.lists(st.integers(0, 4), min_size=len(ACTIONS), max_size=len(ACTIONS)))
    agg.n = sum(agg.actions)
    agg.with_facts = draw(st.integers(0, 6))
    agg.high_epc, agg.certified, agg.low_risk, agg.third_party, agg.stale = (
        draw(st.integers(0, agg.with_facts)) for _ in range(5))
    unit = st.floats(0.0, 1.0)
    agg.expected_high, agg.expected_certified, agg.expected_low_risk = (
        draw(unit) * agg.with_facts for _ in range(3))
    agg.data_age_days = draw(st.floats(0.0, 400.0)) * agg.with_facts
    agg.epc_ranks = draw(st.lists(st.integers(0, 2), min_size=8, max_size=8))
    agg.countries = draw(st.dictionaries(st.sampled_from(["DE", "FR", "GB"]), st.integers(1, 3)))
    agg.assets = draw(st.dictionaries(st.sampled_from(["office", "retail"]), st.integers(1, 3)))
    agg.log_values = draw(st.lists(st.floats(10.0, 20.0), max_size=3))
    for facts in draw(st.lists(st.sampled_from(FACTS), max_size=4)):
        agg.properties[facts.property_id] = [draw(st.integers(1, 3)), facts]
    agg.first = T0 + timedelta(minutes=draw(st.integers(0, 10_000)))
    for offset in draw(st.lists(st.integers(0, 80), max_size=12)):  # repeats: listed once
        agg._ref((f"e{offset}", "investor.engagements", 0, offset))
    agg.dwell = [draw(st.floats(0.0, 500.0)), draw(st.integers(0, 3)),
                 draw(st.floats(0.0, 500.0)), draw(st.integers(0, 3))]
    agg.seek_dwell = [draw(st.floats(0.0, 9.0)), draw(st.integers(0, 3))]
    agg.catalog_log_value = draw(st.none() | st.floats(12.0, 18.0))
    agg.ingest_ms = draw(st.integers(0, 2))
    agg.refs_omitted = draw(st.integers(0, 2))
    agg.refs_digest = agg.refs_omitted * 12345
    return agg


STEPS = st.one_of(
    st.tuples(st.just("window"), st.integers(-2, 200), aggregates()),
    st.tuples(st.just("silence"), st.integers(-2, 400)),
    st.tuples(st.just("profile"), st.integers(0, len(PROFILES) - 1)),
    st.tuples(st.just("unsubscribe")),
    st.tuples(st.just("restore")),
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEPS, min_size=1, max_size=10))
def test_state_and_vectors_are_the_eager_codes_bit_for_bit(steps):
    new, old = InvestorProfileState(HALF_LIVES), InvestorProfileState(HALF_LIVES)
    now = T0
    for step in steps:
        kind = step[0]
        if kind == "window":  # hours after the last instant; <= 0: no time passes
            now += timedelta(hours=step[1])
            old_agg = pickle.loads(pickle.dumps(step[2]))
            new.apply_window(step[2], now, HALF_LIVES)
            eager_apply(old, old_agg, now, HALF_LIVES)
        elif kind == "silence":
            now += timedelta(hours=step[1])
            new.decay_to(now, HALF_LIVES)
            eager_decay(old, now, HALF_LIVES)
        elif kind == "profile":
            new.apply_profile(profile(step[1], now), "ref")
            old.apply_profile(profile(step[1], now), "ref")
        elif kind == "unsubscribe":
            new.unsubscribe(now)
            old.unsubscribe(now)
        else:  # a snapshot restored: its caches are rebuilt, to the same values
            new = pickle.loads(pickle.dumps(new))
        assert snapshot_of(new) == snapshot_of(old)
        if new.last_active is not None:
            assert repr(new_vector(new, now)) == repr(eager_vector(old, now))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 60.0, 90.0, 100.0]), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)))
def test_the_range_check_agrees_with_clamping(values):
    assert F.in_ranges(tuple(values)) == (not F.clamp_features(dict(zip(FEATURE_NAMES, values))))
    lows = tuple(FEATURE_RANGES[n][0] for n in FEATURE_NAMES)
    assert F.in_ranges(lows)


EDGES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, -0.4, 0.4, 0.5, 1.0, -1.0, 2.0])


@given(st.fixed_dictionaries({k: EDGES for k in ("high_epc_lift", "certified_lift",
                                                 "low_risk_lift", "esg_reports_30d",
                                                 "stated_esg", "pref_match_epc")}),
       st.none() | st.integers(0, 7))
def test_alignment_is_the_eager_codes_for_every_double(features, rank):
    state = InvestorProfileState(HALF_LIVES)
    state.min_epc_rank = rank
    assert outcome(F.esg_alignment, features, state) == outcome(eager_alignment, features, state)


def outcome(fn, *args) -> str:
    try:
        return repr(fn(*args))
    except ArithmeticError as error:  # exp(-1.5 * -474.0): the same error from both
        return type(error).__name__


def test_snapshots_keep_no_cache_and_old_ones_restore():
    state = InvestorProfileState(HALF_LIVES)
    agg = WindowAggregate()
    agg.properties = {"p0": [2, FACTS[0]]}
    agg._ref(("e1", "investor.engagements", 0, 1))
    state.apply_profile(profile(1, T0), "ref")
    state.apply_window(agg, T0 + timedelta(hours=1), HALF_LIVES)
    vector = F.build_vector(state, "acme", "inv-1", state.last_active)
    assert state._context is not None
    assert "_context" not in pickle.loads(pickle.dumps(state)).__getstate__()[1]
    # A snapshot of df89d1b: lineage a list of dicts, no context slot; it restores
    # (compact references, in a tuple) and builds the same vector.
    # Its top properties (and a4481ae's) a dict of [weight, facts].
    old_shape = dict(state.__getstate__()[1], lineage=as_dicts(state.lineage),
                     top_properties={pid: [w, f] for pid, (w, f) in state.top_properties.items()})
    assert old_shape["lineage"] == [ref("e1", "investor.engagements", 0, 1)]
    restored = InvestorProfileState.__new__(InvestorProfileState)
    restored.__setstate__((None, old_shape))
    assert restored.lineage == state.lineage == (compact(old_shape["lineage"][0]),)
    assert type(restored.lineage) is PackedRefs
    # The shape of 17b023b (a tuple of tuples) restores packed, too.
    tuples = InvestorProfileState.__new__(InvestorProfileState)
    tuples.__setstate__((None, dict(old_shape, lineage=tuple(state.lineage))))
    assert type(tuples.lineage) is PackedRefs and tuples.lineage == state.lineage
    assert F.build_vector(restored, "acme", "inv-1", state.last_active) == vector
    assert type(restored.top_properties) is TopProperties
    # The thesis checks cached after the weights, left out of snapshots (a cache) and
    # computed again alike.
    top, n = state.top_properties, len(state.top_properties)
    assert n and UNCHECKED not in top.numbers  # cached now
    again = pickle.loads(pickle.dumps(state))
    assert list(again.top_properties.numbers[2 * n:]) == [UNCHECKED] * n
    assert list(again.top_properties.items()) == list(top.items())
    assert F.build_vector(again, "acme", "inv-1", state.last_active) == vector
    assert again.top_properties == top  # the checks computed again: the same doubles


# ------------------------------------------------- point-in-time history, kept compact

_DOUBLES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.5])


@hsettings(max_examples=80, deadline=None)
@given(st.lists(_DOUBLES, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
       st.lists(_DOUBLES, min_size=3, max_size=3), st.none() | _DOUBLES | st.just(3),
       st.dictionaries(st.sampled_from(["efficiency", "fit", "stated"]), _DOUBLES | st.just(7)),
       st.sampled_from([(), ("recency_days",)]))
def test_a_remembered_vector_comes_back_exactly(values, scores, freshness, components, clamped):
    from esg_leads.schemas.records import FeatureVector

    alignment, intent, readiness = scores
    vector = FeatureVector("acme", "inv-1", T0, "v", dict(zip(FEATURE_NAMES, values)),
                           tuple(values), alignment, components, intent, readiness, freshness,
                           None, (ref("e1", "t", 0, 1),), 123, clamped, None, None)
    state = InvestorProfileState(HALF_LIVES)
    state.remember(vector)
    for restored in (state, pickle.loads(pickle.dumps(state))):
        # repr: NaN == NaN is False, and -0.0 must stay -0.0.
        assert repr(restored.features_as_of(T0)) == repr(vector.features_only())
    if (freshness is not None and (type(freshness) is not float or freshness != freshness)
            or not all(type(v) is float for v in components.values())):
        return  # kept as it was: nothing here may change in a round trip through doubles
    assert type(state.history) is PackedHistory  # issue 16: one bytes for the history
    (kept,) = state.history
    assert type(kept) is KeptVector and len(kept) == 8
    assert sum(type(f) is float for f in kept) == 0  # every number in the one array
    # The bytes hold its head (as_of, ingest_ms) and its doubles, nothing else.
    assert len(state.history.data) <= 20 + 8 * len(kept.numbers)


def test_history_packed_by_the_previous_version_still_rebuilds():
    """A snapshot's history vectors: feature values as doubles, the rest as it was."""
    from array import array

    from esg_leads.schemas.records import FeatureVector

    values = tuple(float(i) / 7 for i in range(len(FEATURE_NAMES)))
    vector = FeatureVector("acme", "inv-1", T0, "v", dict(zip(FEATURE_NAMES, values)), values,
                           61.5, {"fit": 50.0}, 0.25, 0.5, None, None, (), None, (), None, None)
    older = vector.features_only()._replace(features=None, values=array("d", values))
    state = InvestorProfileState(HALF_LIVES)
    state.history = [older]
    assert repr(state.features_as_of(T0)) == repr(vector.features_only())
    # As 2b8dadb kept it: a FeatureVector, every number in ``values``, the component
    # names in ``esg_components``; restored from a snapshot, it rebuilds alike.
    kept = InvestorProfileState(HALF_LIVES)
    kept.remember(vector)
    (new,) = kept.history
    shape = FeatureVector(*vector[:4], None, new.numbers, None, new.component_keys,
                          None, None, None, None, (), *vector[-4:-2])
    previous = InvestorProfileState(HALF_LIVES)
    previous.history = [shape]
    previous = pickle.loads(pickle.dumps(previous))
    assert repr(previous.features_as_of(T0)) == repr(kept.features_as_of(T0)) == repr(
        vector.features_only())


def test_content_counters_are_doubles_and_older_snapshots_holding_lists_restore():
    state = InvestorProfileState(HALF_LIVES)
    agg = WindowAggregate()
    agg.n, agg.with_facts, agg.high_epc, agg.epc_ranks = 3, 2, 1, [0, 2, 0, 0, 1, 0, 0, 0]
    agg.countries, agg.assets = {"DE": 2, "FR": 1}, {"office": 2}
    state.apply_window(agg, T0, HALF_LIVES)
    state.decay_to(T0 + timedelta(days=3), HALF_LIVES)
    counters = ("content", "epc_ranks", "counts", "depth")
    # Issue 16: kept as doubles in one array; the names read tuples, which refuse an
    # item write (it would change a copy only), and a value of another length is refused
    # (it would shift every counter after it).
    assert all(type(getattr(state, name)) is tuple for name in counters)
    with pytest.raises(TypeError):
        state.content[0] += 5  # type: ignore[index]
    for name in counters:
        with pytest.raises(ValueError, match="values expected"):
            setattr(state, name, [*getattr(state, name), 1.0])
    # Every decayed counter in one array of doubles (stop 31), none in a slot of its own.
    assert len(state.decayed) == 2 * len(HALF_LIVES) + 24 and "views" not in state.__slots__
    for held in (state.decayed, state.totals):  # no spare room (decay built it anew)
        assert sys.getsizeof(held) == sys.getsizeof(array("d", list(held)))
    # As pickled before: a slot per counter, lists (counts and depth: until e59ea70),
    # floats, and dicts for the weights.
    shape = dict(state.__getstate__()[1], countries=dict(state.countries.items()),
                 assets=dict(state.assets.items()))
    del shape["decayed"]
    for name in counters:
        shape[name] = list(getattr(state, name))
    for name in ("views", "esg_reports", "active_windows", "value_n", "value_sum", "value_sq"):
        shape[name] = getattr(state, name)
    older = InvestorProfileState.__new__(InvestorProfileState)
    older.__setstate__((None, shape))
    restored = pickle.loads(pickle.dumps(older))
    assert all(type(getattr(restored, name)) is tuple for name in counters)
    assert type(restored.decayed) is array
    assert type(restored.countries) is Weights and type(restored.assets) is Weights
    assert restored.countries == state.countries and restored.assets == state.assets
    assert snapshot_of(restored) == snapshot_of(state)
    assert repr(new_vector(restored, T0 + timedelta(days=3))) == repr(
        new_vector(state, T0 + timedelta(days=3)))


def test_investors_with_the_same_consents_share_one_dict_that_no_change_reaches():
    """Issue 16: consents and stated-profile features are one dict per distinct content,
    shared by investors (and their contexts). An unsubscribe or a new profile of one
    investor builds a new dict: another's consents, and a context already built, stay
    as they were. Snapshots restore to the shared dicts and go on alike."""
    a, b = InvestorProfileState(HALF_LIVES), InvestorProfileState(HALF_LIVES)
    for state in (a, b):
        state.apply_profile(profile(1, T0), "ref")
    assert a.consents is b.consents and a.profile_features() is b.profile_features()
    before = dict(b.consents)
    context = a.context()
    assert context.consents is a.consents
    a.unsubscribe(T0 + timedelta(hours=1))
    assert a.consents["email"] == "opted_out" and b.consents == before
    assert context.consents == before and a.context().consents["email"] == "opted_out"
    assert list(a.consents) == list(before)  # in the profile's order, as records list them
    restored = pickle.loads(pickle.dumps(b))
    assert restored.consents is b.consents
    assert restored.profile_features() is b.profile_features()
    agg = WindowAggregate()
    agg._ref(("e1", "investor.engagements", 0, 1))
    for state in (b, restored):
        state.apply_window(agg, T0 + timedelta(hours=2), HALF_LIVES)
    assert F.build_vector(restored, "acme", "inv-1", T0 + timedelta(hours=2)) == \
        F.build_vector(b, "acme", "inv-1", T0 + timedelta(hours=2))
    # A snapshot from before sharing holds its own dicts: restored, they are shared.
    old = InvestorProfileState.__new__(InvestorProfileState)
    old.__setstate__((None, {**b.__getstate__()[1], "consents": dict(b.consents),
                             "_profile_features": dict(b.profile_features())}))
    assert old.consents is b.consents and old.profile_features() is b.profile_features()


#: ``pickle.dumps`` of the InvestorProfileState a4481ae's code (main at stop 31's start)
#: built with :func:`counters_state` (zlib, base85): a slot per decayed counter.
A4481AE_STATE = (
    "c-o~@Piq@T6j$6>lBGtnp){d6Hc+Jp=NrTdNh*rKg!B>$Wf;vqX(t-ZY-VO9I}k{rc3YU6C;2G(7&!$3xwNIF2lw"
    "KBfzbDMrL`K|Q&&hk@25BK&+q+te)+}ko3-KzH^5Dp0-m^ClY!;lShp+n92}llX3bbCh~bm3m(YU}`Nne(@g&~-K"
    "JGt@y-@d{x%M&CVrZw_RX2YQS1N1%FoU=sx-K6%VdV%a=;Oz^l`fIOOQTV43Zorp@8UDGml&pvXM!t*_F7(wDR?%"
    "Mq*+P)fb1a1AQQ}TJzbYaTqh`BweTdD77`}FdO4PYlSdbChPE3g7!S7-@N_euGKYZTBTy)BqXQ<CoMGM!V<qcdI1"
    "nmN&>D9RJXzT;4KQJH?X3jDt}L-isYCafHwyXIg7R-;zMc!uEQ|~1y5cCol)LLP;}qY{ieWYe?sJQt_CsgIRA~)w"
    "Zh1Ka_S9(dvMH1i(>S>E?(w5Q#jh7(x)?UOwfqpv%!&hsK?U$O7g#qebFb1^zE5Jfl*Hlo-D~&d+ryoFr~ile^Vd"
    "&*yVn0@@b>J7Ti5&1$A_q%K<3k!-sq)Yq&?EF{l~M^pG#P{I9Q>fP5o&hGuE%e9ZXNofi0v?3|-iJe_DU(*_+Uy<"
    "gs<ud_H)?{LA`jr(eF`@74b2Q^vZrYBaaztH07&`TX$i#W9@iePH{%fx`8RMpT$tMkNkSwg5RvksYkb#=ZOa^VP$"
    "69KVabLBCUyGT1vSjl(e+uP-|>y&dXij6(qN2=yy<UT8JuT;;&@IUcr3$mKHxhx>oOI{53e&|HE~5c}!#*GFGoz8"
    "#t~05A2##bGTpuzZR#!E@ak&y}O-h8x4iuvV3HSOe^q1>lTR=;!diG<I-cxiZKHehbIg*IVcbHw>H647A45;@JVv"
    "dT1+-LfI_HRf5w?6S00giFaF#(~maWCH?86&?LN=nG+I=8A?ETj`FZZpC6H+qewI(QQgeKT$<di{G{I&7B^Z;i=t"
    "5Lc$3l4X0&;r*lbM(dcr3_tEr)+20Y__=q``U%%u0_zp11ZdWhVF7Uni(7f}VFU1mSkW`XJF$8og#4`WvnaR"
)


def counters_window(k: int) -> WindowAggregate:
    agg = WindowAggregate()
    agg.n, agg.with_facts, agg.high_epc, agg.epc_ranks = 3 + k, 2, 1, [0, 2, 0, 0, 1, 0, k, 0]
    agg.countries, agg.assets = {"DE": 2, "FR": k}, {"office": 2}
    agg.log_values = [13.5 + k, 14.25]
    agg.actions[0] += k + 1
    return agg


def counters_state() -> InvestorProfileState:
    state = InvestorProfileState(HALF_LIVES)
    state.apply_window(counters_window(0), T0, HALF_LIVES)
    state.decay_to(T0 + timedelta(days=3), HALF_LIVES)
    state.apply_window(counters_window(1), T0 + timedelta(days=3, hours=1), HALF_LIVES)
    return state


def test_a_snapshot_of_a4481ae_restores_its_counters_into_one_array_and_goes_on_alike():
    import base64
    import zlib

    unbroken = counters_state()
    restored = pickle.loads(zlib.decompress(base64.b85decode("".join(A4481AE_STATE))))
    assert type(restored.decayed) is array and restored.decayed.tobytes() == unbroken.decayed.tobytes()
    assert snapshot_of(restored) == snapshot_of(unbroken)
    for state in (unbroken, restored):
        state.decay_to(T0 + timedelta(days=9), HALF_LIVES)
        state.apply_window(counters_window(2), T0 + timedelta(days=9), HALF_LIVES)
    assert snapshot_of(restored) == snapshot_of(unbroken)
    when = T0 + timedelta(days=9)
    assert repr(new_vector(restored, when)) == repr(new_vector(unbroken, when))


def test_investors_stating_the_same_targets_share_the_tuples_and_restores_share_them():
    """Stop 31 (issue 16): stated targets, exclusions and certifications are one tuple
    per distinct sequence; snapshots (of a4481ae too: tuples of their own) restore
    shared."""
    a, b = InvestorProfileState(HALF_LIVES), InvestorProfileState(HALF_LIVES)
    for state in (a, b):
        state.apply_profile(profile(1, T0), "ref")
    names = ("required_certifications", "excluded_assets", "target_countries", "target_assets")
    assert a.target_countries == ("DE",) and a.excluded_assets == ("retail",)
    assert all(getattr(a, name) is getattr(b, name) for name in names)
    own = {name: tuple(list(getattr(b, name))) for name in names}  # equal, not the same
    old = InvestorProfileState.__new__(InvestorProfileState)
    old.__setstate__((None, {**b.__getstate__()[1], **own}))
    assert all(getattr(old, name) is getattr(a, name) for name in names)
    assert old.context() == a.context()
