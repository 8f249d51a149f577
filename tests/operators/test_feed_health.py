"""operators/feed_health.py: stale and recovered alternate per source, each at the right
event time, over random streams of signals and clock advances."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators.feed_health import FeedWatch
from esg_leads.schemas.codec import validate_record

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
LIMIT = 3600.0

steps = st.lists(st.tuples(st.sampled_from(["signal", "tick"]), st.sampled_from(["a", "b", "c"]),
                           st.floats(0, 4 * LIMIT)), max_size=60)


@given(steps)
def test_stale_and_recovered_alternate_and_are_dated_by_the_last_signal(stream):
    watch = FeedWatch({"a": timedelta(seconds=LIMIT), "*": timedelta(seconds=2 * LIMIT)})
    clock, last, stale = 1_772_000_000.0, {}, set()  # March 2026, as epoch seconds
    for kind, source, gap in stream:
        clock += gap
        alerts = (watch.signal("acme", source, clock, NOW) if kind == "signal"
                  else watch.advance("acme", clock, NOW))
        for alert in alerts:
            validate_record("ops.alerts", alert)
            subject, at = alert["subject"], alert["event_time"].timestamp()
            limit = LIMIT if subject == "a" else 2 * LIMIT
            if alert["kind"] == "feed_stale":
                # (event times are datetimes: microseconds)
                assert subject not in stale and abs(at - (last[subject] + limit)) < 1e-5
                assert at <= clock + 1e-5
                stale.add(subject)
            else:
                assert subject in stale and kind == "signal" and subject == source
                stale.discard(subject)
        if kind == "signal":
            last[source] = max(clock, last.get(source, clock))
        # Every watched source silent for longer than its limit is known to be stale.
        for name, seen in last.items():
            limit = LIMIT if name == "a" else 2 * LIMIT
            assert (clock - seen > limit) == (name in watch.stale()), (name, clock, seen)
    assert watch.stale() == frozenset(stale)


def test_an_unnamed_source_is_watched_only_with_a_wildcard():
    watch = FeedWatch({"a": timedelta(hours=1)})
    watch.signal("acme", "b", 0.0, NOW)
    assert watch.advance("acme", 10 * 3600.0, NOW) == []
    watch.configure({"*": timedelta(hours=1)})  # a resumed run's settings
    assert [a["subject"] for a in watch.advance("acme", 10 * 3600.0, NOW)] == ["b"]


@given(steps)
def test_the_status_keeps_each_outage_its_alerts_reported(stream):
    """Scoring reads outages from :meth:`FeedWatch.status`: they are exactly the pairs
    (last signal before, recovering signal) of the alerts, the most recent MAX_GAPS."""
    from esg_leads.operators.feed_health import MAX_GAPS

    watch = FeedWatch({"a": timedelta(seconds=LIMIT), "*": timedelta(seconds=2 * LIMIT)})
    clock, outages, last = 1_772_000_000.0, {}, {}
    for kind, source, gap in stream:
        clock += gap
        alerts = (watch.signal("acme", source, clock, NOW) if kind == "signal"
                  else watch.advance("acme", clock, NOW))
        for alert in alerts:
            if alert["kind"] == "feed_stale":
                last[alert["subject"]] = alert["details"]["last_signal_s"]
            else:
                outages.setdefault(alert["subject"], []).append((last[alert["subject"]], clock))
        status = watch.status("acme", clock, {"a": 0.5})
        assert status.tenant == "acme" and status.read_at_s == clock
        assert [f.source for f in status.sources] == sorted({s for k, s, _ in stream
                                                             if k == "signal"} & set(watch._last))
        for feed in status.sources:
            assert feed.gaps == tuple(outages.get(feed.source, [])[-MAX_GAPS:])
            assert feed.max_staleness_s == (LIMIT if feed.source == "a" else 2 * LIMIT)
            assert feed.catalog_share == (0.5 if feed.source == "a" else 0.0)
