"""The merged Kafka source's positions: committed progress, and positions the broker lost."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from esg_leads.connectors import kafka_source
from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.kafka_source import KafkaInput
from esg_leads.schemas.records import OffsetsReset, RawMessage
from tests.kafka_helpers import produce, wait_for

TOPICS = ["in.a", "in.b"]


@pytest.fixture(autouse=True)
def fresh_source_flags():
    """STOP and FAILED are process-wide (the run command's); each test starts clean."""
    kafka_source.STOP.clear()
    kafka_source.FAILED.clear()
    yield
    kafka_source.STOP.clear()
    kafka_source.FAILED.clear()


@pytest.fixture
def broker():
    with DevBroker(topics=TOPICS, partitions=2) as running:
        yield running


def publish(bootstrap: str, count: int, prefix: str = "m") -> None:
    for i in range(count):
        produce(bootstrap, TOPICS[i % 2], f"k{i}".encode(), f"{prefix}-{i}".encode())


def build(bootstrap: str, resume: dict | None = None, **options):
    source = KafkaInput({"bootstrap.servers": bootstrap}, TOPICS, batch_size=10,
                        merge_max_wait_ms=50, group_id="test-group", **options)
    return source.build_part("input", "merged", resume)


def take(partition, count: int, timeout: float = 30) -> list:
    """Items from ``partition`` until ``count`` of them are messages."""
    items: list = []
    deadline = time.monotonic() + timeout
    while sum(type(i) is RawMessage for i in items) < count:
        assert time.monotonic() < deadline, f"only {len(items)} items: {items}"
        items.extend(partition.next_batch())
    return items


def log_ends(bootstrap: str) -> dict[str, int]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {f"{t}:{p}": probe.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t in TOPICS for p in range(2)}
    finally:
        probe.close()


def committed(bootstrap: str, group: str = "test-group") -> dict[str, int]:
    """The group's committed offsets, as a lag tool reads them (the admin API)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(t, p) for t in TOPICS for p in range(2)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
    return {f"{tp.topic}:{tp.partition}": tp.offset for tp in result.topic_partitions
            if tp.offset >= 0}


def test_with_recovery_offsets_are_committed_one_snapshot_behind(broker: DevBroker) -> None:
    publish(broker.bootstrap, 8)
    part = build(broker.bootstrap, commit_interval=None)
    try:
        take(part, 8)
        assert committed(broker.bootstrap) == {}  # handed over is not yet snapshotted
        first = part.snapshot()
        assert sum(first.values()) == 8
        part.next_batch()
        assert committed(broker.bootstrap) == {}  # the snapshot may not be on disk yet
        part.snapshot()  # the next epoch ends: the first snapshot is written by now

        def next_epoch_committed() -> bool:
            # Commits are asynchronous; one that failed (a loaded broker) is retried with
            # the next snapshot, as in a run whose epochs go on. Nothing new was handed
            # over, so each further snapshot still commits the first one's offsets.
            if committed(broker.bootstrap) == first:
                return True
            part.next_batch()
            part.snapshot()
            return False
        wait_for(next_epoch_committed, 20, "the commit")
        publish(broker.bootstrap, 2, "later")
        take(part, 2)
        third = part.snapshot()
        assert committed(broker.bootstrap) == first
    finally:
        part.close()
    assert committed(broker.bootstrap) == third  # close commits what it handed over


def test_without_recovery_offsets_are_committed_as_they_are_handed_over(
        broker: DevBroker) -> None:
    publish(broker.bootstrap, 6)
    part = build(broker.bootstrap, commit_interval=0)
    try:
        take(part, 6)
        part.next_batch()  # the commit interval (here: none) has passed

        def handed_over_committed() -> bool:
            # Commits are asynchronous; one that failed (a loaded broker) is retried with
            # the next batch, as in a run that keeps reading: so keep reading.
            if sum(committed(broker.bootstrap).values()) == 6:
                return True
            part.next_batch()
            return False
        wait_for(handed_over_committed, 20, "the commit")
    finally:
        part.close()


def test_a_position_the_broker_no_longer_has_restarts_at_the_log_start_with_an_alert(
        broker: DevBroker, caplog: pytest.LogCaptureFixture) -> None:
    """A snapshot from a broker that held more than this one (it lost its data): the
    source must not jump to the end (librdkafka's default), nor silently anywhere."""
    publish(broker.bootstrap, 6)  # 3 per topic, spread over the partitions by key
    ends = log_ends(broker.bootstrap)
    resume = {k: 500 for k in ends}
    resume["in.a:0"] = ends["in.a:0"]  # this partition's position is still good
    with caplog.at_level(logging.ERROR, logger="esg_leads.connectors.kafka_source"):
        part = build(broker.bootstrap, resume)
        try:
            items = take(part, sum(v for k, v in ends.items() if k != "in.a:0"))
            state = part.snapshot()
        finally:
            part.close()
    notices = [i for i in items if type(i) is OffsetsReset]
    lost = {k for k, v in ends.items() if k != "in.a:0"}
    assert {f"{n.topic}:{n.partition}" for n in notices} == lost
    assert all(n.old_offset == 500 and n.new_offset == 0 == n.log_start for n in notices)
    assert state == ends  # the new log was read from 0 to its end, once
    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR and r.name == "esg_leads.connectors.kafka_source"]
    assert len(errors) == len(lost)
    assert any("in.b partition 1 position 500" in e and "reading on from 0" in e for e in errors)
    # Each notice precedes its partition's messages: the resume state never holds the
    # new position without the notice having been handed over.
    for notice in notices:
        first = next(i for i, m in enumerate(items) if m.topic == notice.topic
                     and m.partition == notice.partition)
        assert items[first] is notice


def test_with_the_fail_policy_a_lost_position_stops_the_input(broker: DevBroker) -> None:
    publish(broker.bootstrap, 2)
    part = build(broker.bootstrap, {"in.b:1": 500}, on_loss="fail")
    try:
        assert kafka_source.STOP.is_set()
        assert kafka_source.FAILED and "in.b partition 1 position 500" in kafka_source.FAILED[0]
        # The lost position is never fetched: a close while librdkafka handles its "out of
        # range" answer deadlocks (confluentinc/librdkafka#4514; hung this test once).
        assigned = {(tp.topic, tp.partition) for tp in part._consumer.assignment()}
        assert ("in.b", 1) not in assigned and ("in.a", 0) in assigned
        with pytest.raises(StopIteration):  # no recovery: the input ends (drains)
            part.next_batch()
    finally:
        part.close()
    assert committed(broker.bootstrap) == {}  # a failed run's positions are not progress


def test_a_broker_that_loses_its_data_mid_run_restarts_the_partition_at_its_log_start(
        caplog: pytest.LogCaptureFixture) -> None:
    """Finding 5 of issue 14: the broker behind the same address restarts without its
    data while the source reads; the source must reread the new log, not skip it."""
    first = DevBroker(topics=TOPICS, partitions=2, port=0)
    first.start()
    address, port = first.bootstrap, first.port
    publish(address, 10)
    # A client re-bootstraps once every broker it knew has been down this long.
    source = KafkaInput({"bootstrap.servers": address,
                         "metadata.recovery.rebootstrap.trigger.ms": 500}, TOPICS,
                        batch_size=10, merge_max_wait_ms=50, group_id="test-group")
    part = source.build_part("input", "merged", None)
    second = None
    try:
        take(part, 10)
        first.stop()
        second = DevBroker(topics=TOPICS, partitions=2, port=port)  # same address, empty
        second.start()
        publish(address, 4, "after")
        with caplog.at_level(logging.ERROR, logger="esg_leads.connectors.kafka_source"):
            items = take(part, 4, timeout=60)
    finally:
        part.close()
        for broker in (first, second):
            if broker is not None:
                broker.stop()
    assert {m.value for m in items if type(m) is RawMessage} == {
        f"after-{i}".encode() for i in range(4)}
    notices = [i for i in items if type(i) is OffsetsReset]
    assert notices and all(n.new_offset == 0 and n.old_offset > 0 for n in notices)
    # One ERROR line of ours per reset (the client's own lines about the restarting
    # broker come through ``esg_leads.kafka`` and are not counted here).
    assert sum(r.levelno == logging.ERROR and r.name == "esg_leads.connectors.kafka_source"
               for r in caplog.records) == len(notices)


class _SilentBroker:
    """An AdminClient whose metadata call never gets an answer: it records its timeout."""

    waits: list[float] = []

    def __init__(self, config: dict) -> None:
        pass

    def list_topics(self, topic: str, timeout: float) -> None:
        self.waits.append(timeout)
        raise RuntimeError("Failed to get metadata: Local: Broker transport failure")


@pytest.mark.parametrize(("client", "expected"), [({}, 5.0), ({"socket.timeout.ms": 60000}, 5.0),
                                                  ({"socket.timeout.ms": 400}, 0.4)])
def test_a_metadata_attempt_waits_5_s_or_the_clients_shorter_socket_timeout(
        monkeypatch: pytest.MonkeyPatch, client: dict, expected: float) -> None:
    monkeypatch.setattr(kafka_source, "AdminClient", _SilentBroker)
    _SilentBroker.waits = []
    stop, lines = kafka_source.threading.Event(), []

    def give_up_after_two(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            stop.set()

    with pytest.raises(TimeoutError, match="stopped while waiting"):
        kafka_source.wait_for_metadata({"bootstrap.servers": "127.0.0.1:9", **client}, ["t"],
                                       stop=stop, initial_backoff=0.001, log_fn=give_up_after_two)
    assert _SilentBroker.waits == [expected, expected]
    assert all("not ready" in line for line in lines)
