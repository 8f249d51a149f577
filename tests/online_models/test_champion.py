"""The canary split and the paired test (online_models/champion.py)."""

from __future__ import annotations

import math
import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.online_models.champion import PairedLosses, canary_point, in_canary

tenants = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=20)


# No deadline on any test here: a wall-clock limit fails on a loaded machine, not on a defect.
@settings(deadline=None, max_examples=40)  # each example hashes 10,000 ids
@given(tenants, st.floats(0.01, 0.99), st.text("abcdefghij-", min_size=0, max_size=6))
def test_the_canary_share_is_within_2_percent_over_10k_investors(tenant, share, prefix) -> None:
    ids = [f"{prefix}inv-{i:05d}" for i in range(10_000)]
    inside = sum(in_canary(tenant, i, share) for i in ids)
    assert abs(inside / 10_000 - share) <= 0.02


@settings(deadline=None)
@given(tenants, st.text(min_size=1, max_size=30), st.floats(0, 1), st.floats(0, 1))
def test_an_investor_in_the_canary_stays_in_at_a_larger_share(tenant, investor, a, b) -> None:
    small, large = sorted((a, b))
    if in_canary(tenant, investor, small):
        assert in_canary(tenant, investor, large)
    assert not in_canary(tenant, investor, 0.0)
    assert in_canary(tenant, investor, 1.0)


def test_the_split_is_the_same_in_another_process_and_differs_by_tenant() -> None:
    """Python's hash() is salted per process; the canary must not be."""
    code = "from online_models.champion import canary_point; print(repr(canary_point('acme', 'inv-7')))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", **_path()})
    assert float(other.stdout) == canary_point("acme", "inv-7")
    ids = [f"inv-{i}" for i in range(2000)]
    same = sum(in_canary("acme", i, 0.5) == in_canary("beta", i, 0.5) for i in ids)
    assert 850 < same < 1150  # independent splits per tenant


def _path() -> dict:
    import os
    return {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")}


@settings(deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0, 5)), min_size=2, max_size=60),
       st.floats(0.5, 0.99))
def test_the_lower_bound_is_below_the_mean_and_mirrors(pairs, confidence) -> None:
    forward, backward = PairedLosses(100), PairedLosses(100)
    for a, b in pairs:
        forward.add(a, b)
        backward.add(b, a)
    assert forward.lower_bound(confidence) <= forward.mean() + 1e-12
    assert math.isclose(forward.mean(), -backward.mean(), abs_tol=1e-9)
    # Both directions can never be significant at once.
    assert not (forward.lower_bound(confidence) > 0 and backward.lower_bound(confidence) > 0)


def test_the_window_keeps_the_latest_differences() -> None:
    paired = PairedLosses(window=10)
    for i in range(25):
        paired.add(float(i), 0.0)
    assert len(paired) == 10 and paired.total == 25 and paired.mean() == 19.5


def test_noise_alone_is_rarely_significant() -> None:
    rng = random.Random(4)
    significant = 0
    for _ in range(200):
        paired = PairedLosses(200)
        for _ in range(200):
            paired.add(rng.expovariate(1.5), rng.expovariate(1.5))
        significant += paired.lower_bound(0.95) > 0
    assert significant <= 20  # about 5 % by construction
