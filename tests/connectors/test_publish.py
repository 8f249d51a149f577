"""Tests of connectors.publish.publish_recording against a DevBroker (loopback only)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    TopicPartition,
)

from esg_leads.connectors.dev_broker import MOCK_DEFAULT_PARTITIONS, DevBroker
from esg_leads.connectors.publish import PublishError, publish_recording
from esg_leads.connectors.recording import RecordedMessage, write_messages
from tests.kafka_helpers import consume_all

T0 = 1_700_000_000_000
SIGNALS = "esg.property-signals"
ENGAGEMENTS = "investor.engagements"

CONSUMER: dict[str, Any] = {
    "socket.timeout.ms": 5000,
    "socket.connection.setup.timeout.ms": 2000,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
    "session.timeout.ms": 6000,
    "fetch.wait.max.ms": 10,
    "enable.auto.commit": False,
    "enable.partition.eof": True,
}



def as_tuple(msg: Any) -> tuple[Any, ...]:
    """(key, value, headers, timestamp) of a consumed message, comparable to a recording."""
    ts_type, ts = msg.timestamp()
    assert ts_type == TIMESTAMP_CREATE_TIME
    return (msg.key(), msg.value(), tuple(msg.headers() or ()), ts)


def recorded_tuple(m: RecordedMessage) -> tuple[Any, ...]:
    return (m.key, m.value, m.headers, m.timestamp_ms)


def make_recording() -> list[RecordedMessage]:
    """Two topics; engagements were recorded with 5 partitions (the broker will have 3)."""
    msgs: list[RecordedMessage] = []
    offsets: Counter[tuple[str, int]] = Counter()
    for i in range(60):
        topic, partitions = (SIGNALS, 3) if i % 3 else (ENGAGEMENTS, 5)
        partition = (i * 7) % partitions
        key = None if i % 11 == 0 else f"id-{i % 9}".encode()
        value = None if i % 13 == 5 else f'{{"n": {i}}}'.encode()
        headers: tuple[tuple[str, bytes | None], ...] = ()
        if i % 4 == 1:
            headers = (("source", b"crm"), ("trace", f"t{i}".encode()))
        elif i % 4 == 2:
            headers = (("tenant", b"acme"), ("empty", b""), ("null", None))
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] += 1
        # Timestamps increase with the offset inside every partition (as in Kafka).
        msgs.append(RecordedMessage(topic, partition, offset, T0 + 37 * i, key, value, headers))
    return msgs


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, list[RecordedMessage]]:
    msgs = make_recording()
    directory = tmp_path / "rec"
    # Small segments: the reader's k-way merge is exercised too.
    write_messages(directory, msgs, segment_rows=7)
    return directory, sorted(msgs, key=RecordedMessage.sort_key)


def test_publish_round_trip_preserves_messages_and_partitions(
    recording: tuple[Path, list[RecordedMessage]],
) -> None:
    directory, msgs = recording
    calls: list[tuple[int, int]] = []
    with DevBroker(brokers=3, topics=[SIGNALS, ENGAGEMENTS], partitions=3) as broker:
        stats = publish_recording(
            directory,
            broker.bootstrap,
            batch=8,
            progress=lambda sent, total: calls.append((sent, total)),
        )
        got = {t: consume_all(broker.bootstrap, t) for t in (SIGNALS, ENGAGEMENTS)}

    by_topic = Counter(m.topic for m in msgs)
    assert stats["topics"] == dict(by_topic)
    assert stats["messages"] == len(msgs) == sum(len(v) for v in got.values())
    assert {t: len(v) for t, v in got.items()} == dict(by_topic)
    assert stats["seconds"] > 0 and stats["messages_per_s"] > 0
    assert calls[-1] == (len(msgs), len(msgs))
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)

    # Signals: every message in its recorded partition, in the recorded order.
    assert stats["repartitioned"][SIGNALS] == 0
    consumed: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for msg in got[SIGNALS]:
        consumed[msg.partition()].append(as_tuple(msg))
    expected: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for m in msgs:
        if m.topic == SIGNALS:
            expected[m.partition].append(recorded_tuple(m))
    assert dict(consumed) == dict(expected)

    # Engagements: partitions 0-2 kept in order; 3-4 do not exist, the partitioner
    # placed those (same key -> same partition); nothing lost or altered.
    eng = [m for m in msgs if m.topic == ENGAGEMENTS]
    assert stats["repartitioned"][ENGAGEMENTS] == sum(m.partition >= 3 for m in eng) > 0
    assert sorted(map(as_tuple, got[ENGAGEMENTS]), key=repr) == sorted(
        map(recorded_tuple, eng), key=repr
    )
    kept = {recorded_tuple(m): m.partition for m in eng if m.partition < 3}
    in_partition: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for msg in got[ENGAGEMENTS]:
        t = as_tuple(msg)
        if t in kept:
            assert msg.partition() == kept[t]
            in_partition[msg.partition()].append(t)
    for p, seq in in_partition.items():
        assert seq == [recorded_tuple(m) for m in eng if m.partition == p]
    placed: dict[bytes, set[int]] = defaultdict(set)
    for msg in got[ENGAGEMENTS]:
        if as_tuple(msg) not in kept and msg.key() is not None:
            placed[msg.key()].add(msg.partition())
    assert all(len(parts) == 1 for parts in placed.values())


def test_topic_map_and_auto_created_topics(
    recording: tuple[Path, list[RecordedMessage]],
) -> None:
    directory, msgs = recording
    with DevBroker(brokers=1) as broker:  # nothing pre-created: the mock auto-creates
        stats = publish_recording(
            directory, broker.bootstrap, topic_map={SIGNALS: "replayed.signals"}
        )
        assert broker.topic_partitions("replayed.signals") == MOCK_DEFAULT_PARTITIONS
        assert broker.topic_partitions(SIGNALS) is None  # mapped away, never created
        signals = consume_all(broker.bootstrap, "replayed.signals")
        engagements = consume_all(broker.bootstrap, ENGAGEMENTS)
    n_sig = sum(m.topic == SIGNALS for m in msgs)
    n_eng = len(msgs) - n_sig
    assert stats["topics"] == {"replayed.signals": n_sig, ENGAGEMENTS: n_eng}
    assert len(signals) == n_sig and len(engagements) == n_eng
    # 4 partitions cover the 3 recorded signal partitions; engagements' partition 4 not.
    assert stats["repartitioned"] == {
        "replayed.signals": 0,
        ENGAGEMENTS: sum(m.topic == ENGAGEMENTS and m.partition >= 4 for m in msgs),
    }
    recorded = {recorded_tuple(m): m.partition for m in msgs if m.topic == SIGNALS}
    assert {as_tuple(msg): msg.partition() for msg in signals} == recorded


def _timed_recording(tmp_path: Path, span_ms: int, n: int = 9) -> Path:
    step = span_ms // (n - 1)
    msgs = [
        RecordedMessage("paced", i % 2, i // 2, T0 + i * step, f"k{i}".encode(), b"v")
        for i in range(n)
    ]
    write_messages(tmp_path / "paced", msgs)
    return tmp_path / "paced"


def test_speed_paces_sends(tmp_path: Path) -> None:
    directory = _timed_recording(tmp_path, span_ms=60_000)
    with DevBroker(topics=["paced"], partitions=2) as broker:
        started = time.monotonic()
        stats = publish_recording(directory, broker.bootstrap, speed=120.0)
        elapsed = time.monotonic() - started
        assert len(consume_all(broker.bootstrap, "paced")) == 9
    # A minute of recorded time at 120x is 0.5 s: never less (the pacing waits for it),
    # and far from the 60 s of a speed ignored. The upper bound is 40 times the pace, so
    # that a loaded machine (tests run on every core) cannot fail it; 1.5 s could.
    assert 0.5 <= elapsed < 20, elapsed
    assert 0.45 <= stats["seconds"] < 20, stats
    assert stats["messages"] == 9


def test_no_speed_means_no_pacing(tmp_path: Path) -> None:
    directory = _timed_recording(tmp_path, span_ms=3_600_000)  # an hour of timestamps
    with DevBroker(topics=["paced"], partitions=2) as broker:
        started = time.monotonic()
        stats = publish_recording(directory, broker.bootstrap)
        assert time.monotonic() - started < 10
    assert stats["messages"] == 9


def test_full_local_queue_and_config_overrides(tmp_path: Path) -> None:
    msgs = [RecordedMessage("bulk", i % 3, i // 3, T0 + i, None, b"x" * 100) for i in range(600)]
    write_messages(tmp_path / "bulk", msgs)
    with DevBroker(topics=["bulk"], partitions=3) as broker:
        # A 5-message local queue forces BufferError on produce(); it must be retried.
        stats = publish_recording(
            tmp_path / "bulk",
            broker.bootstrap,
            config={"queue.buffering.max.messages": 5, "enable.idempotence": False, "acks": 1},
        )
        got = consume_all(broker.bootstrap, "bulk")
    assert stats["messages"] == len(got) == 600
    assert sorted(msg.timestamp()[1] for msg in got) == [m.timestamp_ms for m in msgs]


def test_delivery_errors_are_counted_and_raised(
    recording: tuple[Path, list[RecordedMessage]],
) -> None:
    directory, msgs = recording
    with DevBroker(topics=[SIGNALS, ENGAGEMENTS], partitions=3) as broker:
        # Every Produce request fails with a non-retriable error.
        broker.inject_request_errors(0, [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 200)
        with pytest.raises(PublishError, match="not delivered") as info:
            publish_recording(directory, broker.bootstrap)
    err = info.value
    assert sum(err.failed.values()) == len(msgs)
    assert err.stats["messages"] == 0
    assert any("authorization" in e.lower() for e in err.errors)


def test_invalid_arguments(recording: tuple[Path, list[RecordedMessage]]) -> None:
    directory, _ = recording
    for speed in (0, -1.0):
        with pytest.raises(ValueError, match="speed"):
            publish_recording(directory, "127.0.0.1:1", speed=speed)
    with pytest.raises(ValueError, match="batch"):
        publish_recording(directory, "127.0.0.1:1", batch=0)


class _Abort(Exception):
    pass


def test_error_mid_publish_releases_the_producer_without_waiting(
    recording: tuple[Path, list[RecordedMessage]],
) -> None:
    directory, _ = recording
    broker = DevBroker(topics=[SIGNALS, ENGAGEMENTS], partitions=3)
    broker.start()

    def progress(sent: int, total: int) -> None:
        broker.stop()  # the cluster vanishes with messages still queued ...
        raise _Abort(f"{sent}/{total}")  # ... and the caller bails out

    started = time.monotonic()
    try:
        with pytest.raises(_Abort):
            publish_recording(directory, broker.bootstrap, batch=8, progress=progress)
    finally:
        broker.stop()
    # Queued messages are purged, not retried until message.timeout.ms (300 s). The bound
    # is a fifth of that, so that no load on the machine can fail a correct purge.
    assert time.monotonic() - started < 60


def test_messages_the_broker_drops_while_publishing_are_reported(tmp_path: Path) -> None:
    # The mock keeps ~5 MB per partition and drops the oldest message sets beyond it.
    msgs = [RecordedMessage("bulk", 0, i, T0 + i, None, b"x" * 10_000) for i in range(800)]
    write_messages(tmp_path / "bulk", msgs)
    with DevBroker(topics=["bulk", "other"], partitions=1) as broker:
        stats = publish_recording(tmp_path / "bulk", broker.bootstrap)
        watermarks = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
        low, high = watermarks.get_watermark_offsets(TopicPartition("bulk", 0), timeout=10)
        watermarks.close()
    assert stats["messages"] == 800 == high
    assert stats["evicted"]["bulk"] == low > 0  # what the log no longer starts with


def test_nothing_is_reported_evicted_when_the_broker_keeps_everything(
    recording: tuple[Path, list[RecordedMessage]],
) -> None:
    directory, _ = recording
    with DevBroker(topics=[SIGNALS, ENGAGEMENTS], partitions=3) as broker:
        publish_recording(directory, broker.bootstrap)  # an earlier publish: offsets > 0
        stats = publish_recording(directory, broker.bootstrap)
    assert stats["evicted"] == {SIGNALS: 0, ENGAGEMENTS: 0}
