"""Tombstoning what an older version left under bare investor-id keys (dev broker)."""

from __future__ import annotations

from confluent_kafka import Producer

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.key_upgrade import tombstone_old_keys
from tests.kafka_helpers import consume_all


def test_old_bare_keys_are_tombstoned_and_nothing_else() -> None:
    """After the upgrade the flow never tombstones a bare investor-id key: the last
    record under it (personal data) would stay on the compacted topic for ever, through
    later erasures. A dry run counts; ``apply`` tombstones exactly the live bare keys,
    in the partition of the record they delete."""
    with DevBroker(brokers=1, topics=["leads.scored"], partitions=3) as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        producer = Producer(config)
        for key, value in [(b"inv-1", b"{}"), (b"inv-2", b"{}"), (b"inv-2", None),  # gone
                           (b"acme/inv-1", b"{}"), (b"beta/inv-1", b"{}"),
                           (b"Not A Key!", b"{}"), (b"inv-3", b"{}")]:
            producer.produce("leads.scored", key=key, value=value)
        assert producer.flush(10) == 0
        dry = tombstone_old_keys(config, ["leads.scored"], timeout=30)
        assert len(consume_all(broker.bootstrap, "leads.scored")) == 7  # nothing published
        done = tombstone_old_keys(config, ["leads.scored"], apply=True, timeout=30)
        messages = consume_all(broker.bootstrap, "leads.scored")
        again = tombstone_old_keys(config, ["leads.scored"], timeout=30)
    assert dry == done == {"leads.scored": {"old": 2, "current": 2, "other": 1}}
    new = messages[7:] if len(messages) == 9 else None
    tombstones = [m for m in messages if m.value() is None and m.key() != b"inv-2"]
    assert sorted(m.key() for m in tombstones) == [b"inv-1", b"inv-3"]
    for t in tombstones:
        [record] = [m for m in messages if m.key() == t.key() and m.value() is not None]
        assert record.partition() == t.partition()
    assert new is not None and again["leads.scored"]["old"] == 0
