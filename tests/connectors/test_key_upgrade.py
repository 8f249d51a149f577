"""Tombstoning what an older version left under bare investor-id keys (dev broker), and
the guard that refuses to while the old flow may still run."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors import key_upgrade
from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.key_upgrade import TopicScan, UpgradeRefused, tombstone_old_keys
from tests.kafka_helpers import consume_all

NEW = [("key-version", b"2")]  # what the new flow's sinks send
T0 = 1_767_225_600_000  # explicit timestamps: "newer" across partitions must not be luck


def _publish(config: dict, topic: str, records: list) -> None:
    """(key, value, headers, partition or None, ms) in order."""
    producer = Producer(config)
    for key, value, headers, partition, ms in records:
        producer.produce(topic, key=key, value=value, headers=headers, timestamp=ms,
                         **({} if partition is None else {"partition": partition}))
    assert producer.flush(10) == 0


def test_old_bare_keys_are_tombstoned_and_nothing_else() -> None:
    """After the upgrade the flow never tombstones a bare investor-id key: the last
    record under it (personal data) would stay on the compacted topic for ever, through
    later erasures. A dry run counts; ``apply`` tombstones exactly the live bare keys,
    in the partition of the record they delete; a second run is not refused by the
    tombstones of the first (bare keys, written after the new flow's records)."""
    with DevBroker(brokers=1, topics=["leads.scored"], partitions=3) as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        old = [(b"inv-1", b"{}"), (b"inv-2", b"{}"), (b"inv-2", None),  # gone
               (b"Not A Key!", b"{}"), (b"inv-3", b"{}")]
        _publish(config, "leads.scored",
                 [(k, v, None, None, T0 + i) for i, (k, v) in enumerate(old)]
                 + [(k, b"{}", NEW, None, T0 + 100) for k in (b"acme/inv-1", b"beta/inv-1")])
        dry = tombstone_old_keys(config, ["leads.scored"], timeout=30)
        assert len(consume_all(broker.bootstrap, "leads.scored")) == 7  # nothing published
        heard: list = []
        done = tombstone_old_keys(config, ["leads.scored"], apply=True, timeout=30,
                                  on_topic=lambda t, c: heard.append((t, c)))
        messages = consume_all(broker.bootstrap, "leads.scored")
        again = tombstone_old_keys(config, ["leads.scored"], apply=True, timeout=30)
    assert dry == done == {"leads.scored": {"old": 2, "current": 2, "other": 1}}
    assert heard == list(done.items())
    new = messages[7:] if len(messages) == 9 else None
    tombstones = [m for m in messages if m.value() is None and m.key() != b"inv-2"]
    assert sorted(m.key() for m in tombstones) == [b"inv-1", b"inv-3"]
    for t in tombstones:
        [record] = [m for m in messages if m.key() == t.key() and m.value() is not None]
        assert record.partition() == t.partition()
    assert new is not None and again["leads.scored"]["old"] == 0


def test_apply_refuses_while_the_old_flow_may_still_run_and_publishes_nothing() -> None:
    """Review of stop 30: the tool run before the old flow stopped tombstones every live
    lead; run before the old crm-sync stopped, each tombstone deletes a CRM lead of every
    tenant. Refused: no record of the new flow on any topic; a bare key after the first
    of them in its partition (offsets) or in another (timestamps). Nothing is published
    on any topic, the well-ordered one included; ``force`` publishes, with a warning.
    A topic the new flow has not written yet is judged by the others (a note)."""
    cases = {
        "crm.handoff": [(b"inv-1", b"{}", None, 0, T0),  # well ordered: old, then new
                        (b"acme/inv-1", b"{}", NEW, 0, T0 + 1)],
        "leads.review": [(b"inv-1", b"{}", None, 0, T0)],  # the new flow has not run
        "leads.scored": [(b"inv-1", b"{}", None, 1, T0 - 1), (b"acme/inv-1", b"{}", NEW, 1, T0),
                         (b"inv-2", None, None, 1, T0 - 5)],  # an old erasure, after: offsets
        "leads.shadow": [(b"acme/inv-1", b"{}", NEW, 1, T0),
                         (b"inv-3", b"{}", None, 0, T0 + 5)],  # another partition, later
    }
    with DevBroker(brokers=1, topics=list(cases), partitions=2) as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        for topic, records in cases.items():
            _publish(config, topic, records)
        refusals = {}
        for topic in [*cases, None]:
            try:
                tombstone_old_keys(config, [topic] if topic else list(cases), apply=True,
                                   timeout=30)
                refusals[topic] = None
            except UpgradeRefused as refused:
                refusals[topic] = str(refused)
        published = {t: len(consume_all(broker.bootstrap, t)) for t in cases}
        warnings: list[str] = []
        forced = tombstone_old_keys(config, list(cases), apply=True, force=True, timeout=30,
                                    on_warning=warnings.append)
        tombstones = sum(m.value() is None for t in cases
                         for m in consume_all(broker.bootstrap, t))
    assert refusals["crm.handoff"] is None
    assert refusals["leads.review"].startswith("no topic holds a record of the new flow")
    assert refusals["leads.scored"].startswith(
        "leads.scored: a record under a bare key (partition 1, offset 2) is newer than the "
        "first of the new flow (partition 1, offset 1)")
    assert refusals["leads.shadow"].startswith(
        "leads.shadow: a record under a bare key (partition 0, offset 0) is newer than the "
        "first of the new flow (leads.shadow, partition 1, offset 0)")
    assert refusals[None] == refusals["leads.scored"] and "--force" in refusals[None]
    # The first call tombstoned crm.handoff's inv-1: the only tombstone before --force.
    assert published == {"crm.handoff": 3, "leads.review": 1, "leads.scored": 3,
                         "leads.shadow": 2}
    assert [f["old"] for f in forced.values()] == [0, 1, 1, 1] and tombstones == 5
    assert sum("tombstoning anyway (--force)" in w for w in warnings) == 2
    assert [w for w in warnings if "anyway" not in w] == [
        "leads.review holds no record of the new flow yet: judged by the other topics"]


def test_a_topic_the_new_flow_has_not_written_yet_is_judged_by_the_others() -> None:
    """Second review of stop 30: ``crm.handoff`` gets a record of the new flow only after
    an approval, days later; until then every ``--apply`` was refused, and ``--force``
    turned off the checks of every topic. One flow writes them all: ``leads.scored``
    shows the new flow started after the last bare record anywhere, so it goes ahead,
    and refuses when a bare record on the unwritten topic is newer than that start."""
    with DevBroker(brokers=1, topics=["crm.handoff", "leads.scored"], partitions=1) as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        _publish(config, "crm.handoff", [(b"inv-1", b"{}", None, 0, T0)])
        _publish(config, "leads.scored", [(b"inv-1", b"{}", None, 0, T0),
                                          (b"acme/inv-1", b"{}", NEW, 0, T0 + 10)])
        notes: list[str] = []
        done = tombstone_old_keys(config, ["crm.handoff", "leads.scored"], apply=True,
                                  timeout=30, on_warning=notes.append)
        _publish(config, "crm.handoff", [(b"inv-2", b"{}", None, 0, T0 + 20)])  # old flow lives
        with pytest.raises(UpgradeRefused, match="crm.handoff: a record under a bare key "
                           r"\(partition 0, offset 2\) is newer than the first of the new "
                           r"flow \(leads.scored, partition 0, offset 1\)"):
            tombstone_old_keys(config, ["crm.handoff", "leads.scored"], apply=True, timeout=30)
    assert done == {"crm.handoff": {"old": 1, "current": 0, "other": 0},
                    "leads.scored": {"old": 1, "current": 1, "other": 0}}
    assert notes == ["crm.handoff holds no record of the new flow yet: judged by the other topics"]


def test_a_missing_topic_and_a_full_queue_publish_nothing_wrong() -> None:
    """Review of stop 30 (upg.py): with ``leads.shadow`` absent (challenger off), the
    tombstones of the other topics went out before the missing topic was found; a
    producer queue smaller than the keys raised ``BufferError`` halfway."""
    topics = ["crm.handoff", "leads.scored"]
    with DevBroker(brokers=1, topics=topics, partitions=3) as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        for topic in topics:
            _publish(config, topic, [(f"inv-{i}".encode(), b"{}", None, None, T0)
                                     for i in range(300)]
                     + [(b"acme/inv-1", b"{}", NEW, None, T0 + 1)])
        with pytest.raises(RuntimeError, match="leads.shadow: Broker: Unknown topic"):
            tombstone_old_keys(config, [*topics, "leads.shadow"], apply=True, timeout=30)
        before = sum(m.value() is None for m in consume_all(broker.bootstrap, "crm.handoff"))
        small = {**config, "queue.buffering.max.messages": 20}
        done = tombstone_old_keys(small, ["leads.scored"], apply=True, timeout=30)
        after = sum(m.value() is None for m in consume_all(broker.bootstrap, "leads.scored"))
    assert before == 0
    assert done["leads.scored"]["old"] == 300 and after == 300


def test_a_failed_broker_call_is_a_runtime_error_naming_the_topic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``get_watermark_offsets`` timing out raised ``KafkaException``: a traceback."""

    class Slow(key_upgrade.Consumer):  # type: ignore[misc, valid-type]
        def get_watermark_offsets(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out"))

    monkeypatch.setattr(key_upgrade, "Consumer", Slow)
    with DevBroker(brokers=1, topics=["leads.scored"], partitions=1) as broker:
        with pytest.raises(RuntimeError, match="leads.scored: its end offsets could not be read"):
            tombstone_old_keys({"bootstrap.servers": broker.bootstrap}, ["leads.scored"],
                               timeout=5)


_records = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2),
                              st.sampled_from(["bare", "new", "tool"]), st.integers(0, 5)),
                    max_size=25)


@given(_records)
def test_the_guard_passes_exactly_when_every_old_record_is_before_every_new_start(
        records: list[tuple[int, int, str, int]]) -> None:
    """The rule, against a brute force over two topics: refused iff some live bare key
    exists and (no record of the new flow on any topic, or a bare record the old flow
    wrote is after the first new one of its own partition, or later in time than the
    first new one of another partition or topic). The tool's own tombstones
    (``key-version: 1``) never count."""
    scans = [TopicScan("t0"), TopicScan("t1")]
    offsets: dict[tuple[int, int], int] = {}
    seen = []
    for n, (topic, partition, kind, ms) in enumerate(records):
        where = (topic, partition)
        offset = offsets[where] = offsets.get(where, -1) + 1
        key = b"acme/inv-1" if kind == "new" else f"inv-{n}".encode()
        headers = {"new": NEW, "tool": [("key-version", b"1")], "bare": []}[kind]
        scans[topic].see(partition, offset, ms, key, kind != "tool", headers)
        seen.append((where, offset, kind, ms))
    firsts = {}
    for where, o, kind, ms in seen:
        if kind == "new":
            firsts.setdefault(where, (o, ms))
    late = any(kind == "bare" and any((w == where and o > fo) or (w != where and ms > fms)
                                      for w, (fo, fms) in firsts.items())
               for where, o, kind, ms in seen)
    expected = any(k == "bare" for *_, k, _ in seen) and (not firsts or late)
    assert bool(key_upgrade.judge(scans)[0]) == expected
