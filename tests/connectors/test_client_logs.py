"""librdkafka's log lines: through Python logging, one per back-off step (issue 14, Faults)."""

from __future__ import annotations

import logging
import socket
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors.client_logs import KAFKA_LOG, BackoffThrottle, with_logging


@given(gaps=st.lists(st.floats(0, 5, allow_nan=False), max_size=300),
       keys=st.lists(st.sampled_from("ab"), min_size=300, max_size=300))
def test_throttle_lets_one_line_per_step_through_and_accounts_for_every_line(
        gaps: list[float], keys: list[str]) -> None:
    now = [0.0]
    throttle = BackoffThrottle(initial=0.5, maximum=4.0, clock=lambda: now[0])
    emitted: dict[str, list[float]] = {"a": [], "b": []}
    shown = dict.fromkeys("ab", 0)  # lines let through, plus those they stood for
    seen = dict.fromkeys("ab", 0)
    pending = dict.fromkeys("ab", 0)  # dropped since the last line let through
    last_seen: dict[str, float] = {}
    for gap, key in zip(gaps, keys):
        now[0] += gap
        quiet = key in last_seen and now[0] - last_seen[key] > 4.0
        last_seen[key] = now[0]
        seen[key] += 1
        dropped = throttle.allow(key)
        if quiet:  # a key quiet for longer than the longest step starts afresh
            assert dropped is not None
            emitted[key] = []
        if dropped is None:
            pending[key] += 1
        else:
            assert dropped == pending[key]
            shown[key] += 1 + dropped
            pending[key] = 0
            emitted[key].append(now[0])
    for key, times in emitted.items():
        # Successive lines of one kind are at least one (doubling, capped) step apart.
        for k, (earlier, later) in enumerate(zip(times, times[1:])):
            assert later - earlier >= min(4.0, 0.5 * 2 ** k) - 1e-9
        # Nothing is lost: every line was shown or counted in a later line, except
        # those since the last line shown (still to be reported).
        assert shown[key] + pending[key] == seen[key]


def test_a_client_facing_a_closed_port_logs_one_line_per_back_off_step(caplog) -> None:
    """Unthrottled, a consumer and a producer log ~20 lines a second between them here."""
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        config = with_logging({"bootstrap.servers": f"127.0.0.1:{closed.getsockname()[1]}"})
        consumer = Consumer({**config, "group.id": "test"})
        producer = Producer(config)
        consumer.assign([TopicPartition("t", 0, 0)])
        with caplog.at_level(logging.WARNING, logger=KAFKA_LOG.name):
            started = time.monotonic()
            while time.monotonic() - started < 2:  # librdkafka retries for 2 s
                consumer.consume(10, 0.05)
                producer.poll(0.05)
            elapsed = time.monotonic() - started
        consumer.close()
    lines = [r for r in caplog.records if r.name == KAFKA_LOG.name]
    assert lines, "the connection failures are reported through Python logging"
    kinds: dict[tuple, int] = {}
    for record in lines:
        kinds[(record.levelno, record.args[0])] = kinds.get((record.levelno, record.args[0]), 0) + 1
    # Per kind: the first line, then one per step of 0.5, 1, 2, ... s that has passed.
    steps, waited = 1, 0.5
    while waited <= elapsed + 0.5:  # (+0.5: lines are served a poll after they happen)
        steps, waited = steps + 1, waited + 0.5 * 2 ** steps
    assert all(count <= steps for count in kinds.values()), (kinds, elapsed)
    assert len(kinds) <= 3, kinds  # the same trouble, whichever client saw it
    assert sum("more like it" in r.getMessage() for r in lines) >= 1
