"""crm-sync's decisions: statuses, Retry-After, breaker, bucket, order and commits."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.crm_delivery import (
    Breaker,
    BreakerState,
    DeliveryQueue,
    Outcome,
    TokenBucket,
    Verdict,
    classify,
    parse_retry_after,
    retry_wait,
)


def test_statuses() -> None:
    assert classify("PUT", 409).outcome is Outcome.DELIVERED
    assert classify("PUT", 422).outcome is Outcome.REJECTED
    assert classify("PUT", 400).outcome is Outcome.REJECTED
    assert classify("DELETE", 404).outcome is Outcome.DELIVERED
    assert classify("PUT", 401).outcome is classify("PUT", 403).outcome is Outcome.AUTH_FAILED
    assert classify("PUT", 429).outcome is Outcome.THROTTLED
    assert not classify("PUT", 429).breaker_failure  # the CRM works: it is counting us
    assert classify("PUT", 503).outcome is Outcome.FAILED  # no Retry-After: a failure
    assert classify("PUT", 503, 4.0) == Verdict(Outcome.THROTTLED, 4.0)
    assert classify("PUT", 502).breaker_failure and classify("PUT", None).breaker_failure
    assert classify("PUT", 301).outcome is Outcome.FAILED


@given(st.text(max_size=40), st.floats(0, 4e9))
def test_retry_after_never_negative_nor_unbounded(text: str, now: float) -> None:
    seconds = parse_retry_after(text, now)
    assert seconds is None or 0 <= seconds <= 24 * 3600


@given(st.floats(0, 1e5), st.integers(0, 100), st.integers(0, 2**32))
def test_retry_after_is_a_floor(after: float, attempt: int, seed: int) -> None:
    wait = retry_wait(Verdict(Outcome.THROTTLED, after), attempt, base=0.5, cap=60,
                      auth_retry=60, rng=random.Random(seed))
    assert wait >= after


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 5)), max_size=80),
       st.integers(1, 5), st.floats(0.1, 10))
def test_breaker_invariants(steps: list, failures: int, cooldown: float) -> None:
    """One probe at a time when half-open; nothing through while open before the
    cooldown; opens only after ``failures`` consecutive failures; alerts alternate."""
    breaker, now, alerts, streak = Breaker(failures, cooldown), 0.0, [], 0
    for ok, dt in steps:
        now += dt
        state_before = breaker.state
        allowed = breaker.allow(now)
        if state_before is BreakerState.OPEN and now < breaker.opened_at + cooldown:
            assert not allowed
        if breaker.state is BreakerState.HALF_OPEN:
            assert not breaker.allow(now), "a second probe while half-open"
        if not allowed:
            continue
        streak = 0 if ok else streak + 1
        change = breaker.record(ok, now)
        if change == "opened":
            assert streak >= failures
        if change:
            alerts.append(change)
    assert all(a != b for a, b in zip(alerts, alerts[1:]))
    assert not alerts or alerts[0] == "opened"


@given(st.floats(0.5, 100), st.lists(st.floats(0, 2), min_size=1, max_size=60))
def test_bucket_never_exceeds_its_rate(rate: float, gaps: list) -> None:
    bucket, now, sends = TokenBucket(rate=rate, burst=1.0, now=0.0), 0.0, []
    for gap in gaps:
        now += gap
        sends.append(now + bucket.reserve(now))
    sends.sort()
    # Any window of length T holds at most burst + rate * T sends.
    for i, start in enumerate(sends):
        inside = [t for t in sends[i:] if t - start <= 1.0]
        assert len(inside) <= 1 + rate * 1.0 + 1e-6


@settings(max_examples=300)
@given(st.lists(st.one_of(st.tuples(st.just("add"), st.sampled_from("abc")),
                          st.tuples(st.just("take"), st.integers(1, 3)),
                          st.tuples(st.just("done"), st.booleans())), max_size=60))
def test_queue_never_older_after_newer_and_commits_only_behind_acks(ops: list) -> None:
    queue, offset, flying, sent = DeliveryQueue(), 0, [], {}
    resolved: set[int] = set()
    for op, arg in ops:
        if op == "add":
            queue.add(arg, 0, offset, offset)
            offset += 1
        elif op == "take":
            for entry in queue.take(arg):
                assert entry.key not in [e.key for e in flying], "two of one investor in flight"
                # The same record again (given back) is fine; an older one never.
                assert entry.payload >= sent.get(entry.key, -1), "an older record after a newer"
                sent[entry.key] = entry.payload
                flying.append(entry)
        elif flying:
            entry = flying.pop(0)
            if arg:
                queue.resolve(entry.key)
                resolved.update(entry.covers)
            else:
                queue.give_back(entry.key)
        position = queue.committable().get(0, 0)
        assert all(o in resolved for o in range(position)), "committed past an unresolved record"
