"""TopProperties: the dict of [weight, facts, checks] it replaced, kept compact (issue 16)."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from esg_leads.operators.top_properties import UNCHECKED, TopProperties
from esg_leads.schemas.records import PropertyFacts

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


def facts(pid: str, day: int) -> PropertyFacts:
    return PropertyFacts(pid, "acme", T0 + timedelta(days=day), "DE", "office", 1e6, "B", 2,
                         None, False, False, None, None, None, None, False, 0, True, False)


#: A pool of facts: the same objects come back, and older and newer versions.
POOL = [facts(f"p{i % 12}", i // 12) for i in range(36)]


def dict_merge(top: dict, properties: dict, limit: int) -> dict:
    """a4481ae's InvestorProfileState._merge_properties, on its dict."""
    for property_id, (count, new) in properties.items():
        entry = top.get(property_id)
        if entry is None:
            top[property_id] = [float(count), new]
        else:
            entry[0] += count
            if new is not entry[1] and new.effective >= entry[1].effective:
                entry[1] = new
                del entry[2:]
    if len(top) > limit:
        top = dict(sorted(top.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit])
    return top


def exact(pairs) -> list:
    """(id, weight as bits via repr, facts by identity)."""
    return [(pid, repr(w), id(f)) for pid, (w, f) in pairs]


STEPS = st.lists(st.one_of(
    st.tuples(st.just("merge"), st.dictionaries(
        st.sampled_from(range(36)), st.integers(0, 10**18) | st.integers(0, 3), max_size=10)),
    st.tuples(st.just("scale"), st.sampled_from([0.5, 0.999, 1e-300, 0.0, 1.0])),
    st.tuples(st.just("check")),
    st.tuples(st.just("profile")),
    st.tuples(st.just("restore")),
), max_size=30)


@hsettings(max_examples=150, deadline=None)
@given(STEPS, st.integers(1, 9))
def test_the_compact_table_is_the_dict_bit_for_bit(steps, limit):
    top, table, pool = TopProperties(), {}, POOL
    for step in steps:
        if step[0] == "merge":
            properties = {pool[i].property_id: (n, pool[i]) for i, n in step[1].items()}
            top.merge(properties, limit)
            table = dict_merge(table, properties, limit)
        elif step[0] == "scale":
            if top:
                top.scale(step[1])
            for entry in table.values():
                entry[0] *= step[1]
        elif step[0] == "check":  # thesis_fit computes the missing checks (here: fake ones)
            n = len(top)
            for i in range(n):
                if top.numbers[2 * n + i] == UNCHECKED:
                    top.numbers[n + i], top.numbers[2 * n + i] = top.facts[i].effective.day / 7, 2
            for entry in table.values():
                if len(entry) == 2:
                    entry[2:] = [entry[1].effective.day / 7, 2]
        elif step[0] == "profile":
            top.clear_checks()
            for entry in table.values():
                del entry[2:]
        else:  # a snapshot (of everything: facts shared as before): the checks left out
            top, table, pool = pickle.loads(pickle.dumps((top, table, pool)))
            for entry in table.values():
                del entry[2:]
        assert exact(top.items()) == exact((k, e[:2]) for k, e in table.items())
        n = len(top)
        assert [(s, c) for s, c in zip(top.numbers[n:2 * n], top.numbers[2 * n:])] == [
            (e[2], e[3]) if len(e) > 2 else (0.0, UNCHECKED) for e in table.values()]
        assert TopProperties.of(table) == top
        assert len(top.numbers) == 3 * n and top.ids == tuple(table)


def test_ids_that_are_not_the_facts_own_are_kept():
    top = TopProperties.of({"a": [3.0, POOL[0]], "b": [1.0, POOL[1]]})
    assert top.ids == ("a", "b") and pickle.loads(pickle.dumps(top)).ids == ("a", "b")
    own = TopProperties.of({"p0": [3.0, POOL[0]]})
    assert own._ids is None and own.ids == ("p0",)  # nothing held for them
