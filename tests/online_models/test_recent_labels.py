"""RecentLabels: bounded, erasure-aware, deterministic held-out split, no investor ids."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from esg_leads.online_models.recent_labels import RecentLabels, holdout_point


def fill(buffer: RecentLabels, ids: list[str], share: float = 0.5) -> None:
    for i, investor in enumerate(ids):
        buffer.add("acme", investor, {"a": float(i)}, 40.0, 55.0, i % 2 == 0, i * 60.0, share)


@given(st.lists(st.sampled_from([f"inv-{i}" for i in range(12)]), max_size=60),
       st.integers(1, 20), st.sampled_from([f"inv-{i}" for i in range(12)]))
def test_bounded_and_an_erased_investor_leaves_whatever_the_history(ids, capacity, erased):
    buffer = RecentLabels(capacity, salt=b"k" * 32)
    fill(buffer, ids)
    assert len(buffer) == min(capacity, len(ids))
    # The newest ``capacity`` are kept, in the order they were added.
    assert [e.features["a"] for e in buffer.since(0.0)] == \
        [float(i) for i in range(len(ids))][-capacity:]
    kept = ids[-capacity:]
    assert buffer.forget(erased) == kept.count(erased)
    assert len(buffer) == len(kept) - kept.count(erased)
    blob = pickle.dumps(buffer)
    assert erased.encode() not in blob  # no investor id in a snapshot, erased or not
    assert all(i.encode() not in blob for i in ids)


def test_the_held_out_split_is_stable_per_investor_and_near_its_share():
    points = [holdout_point("acme", f"inv-{i}") for i in range(10_000)]
    assert points == [holdout_point("acme", f"inv-{i}") for i in range(10_000)]
    share = sum(p < 0.3 for p in points) / len(points)
    assert abs(share - 0.3) < 0.02  # binomial sd 0.0046
    # Another tenant's split is another draw, and it is not the canary split.
    from esg_leads.online_models.champion import canary_point
    assert holdout_point("beta", "inv-1") != holdout_point("acme", "inv-1")
    assert canary_point("acme", "inv-1") != holdout_point("acme", "inv-1")
    buffer = RecentLabels(100, salt=b"s")
    fill(buffer, ["inv-1", "inv-1", "inv-2"], share=0.3)
    flags = {e.subject: e.held_out for e in buffer.since(0.0)}
    assert len(flags) == 2  # one flag per investor: held out or fitted on as a whole


def test_since_and_resize_keep_the_newest():
    buffer = RecentLabels(10, salt=b"s")
    fill(buffer, [f"inv-{i}" for i in range(10)])
    assert [e.features["a"] for e in buffer.since(8 * 60.0)] == [8.0, 9.0]
    buffer.resize(3)
    assert [e.features["a"] for e in buffer.since(0.0)] == [7.0, 8.0, 9.0]
