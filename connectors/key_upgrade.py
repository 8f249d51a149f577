"""Upgrading the per-investor output topics to keys that name the tenant: tombstones
for the records left under the old bare investor-id keys.

Key contract 1 keyed ``leads.scored``, ``leads.review``, ``crm.handoff`` and
``leads.shadow`` by the investor id alone; contract 2 (:mod:`schemas.keys`) keys them
``<tenant>/<investor_id>``. The new flow never writes, and so never tombstones, an old
key: on a compacted topic the last record under each bare key stays for ever, erasures
of that investor after the upgrade included, and it holds personal data. This reads
each topic from its start to its end at the time of the call, finds the old keys
whose last record is not a tombstone, and (with ``apply``) publishes a tombstone for
each: compaction then removes them. Keys of contract 2 are never touched, nor keys
that are neither (another producer's), which are counted apart for a human to judge.
"""

from __future__ import annotations

import re
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from esg_leads.connectors.client_logs import with_logging
from esg_leads.schemas.common import ENTITY_ID_PATTERN
from esg_leads.schemas.keys import KEY_VERSION, parse_output_key

#: A key of contract 1: an investor id, nothing else (it holds no ``/``).
_BARE = re.compile(ENTITY_ID_PATTERN)


def _live_keys(config: dict, topic: str, timeout: float,
               connect_timeout: float) -> dict[int, dict[bytes, bool]]:
    """Per partition, each key's state at the topic's end now: ``True`` if its last
    record has a value, ``False`` if a tombstone."""
    consumer = Consumer(with_logging({**config, "group.id": f"esg-leads-upgrade-{uuid.uuid4()}",
                                      "enable.auto.commit": False, "enable.partition.eof": True,
                                      "auto.offset.reset": "earliest"}))
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=connect_timeout).topics[topic]
        except KafkaException:
            raise RuntimeError(f"the broker did not answer within {connect_timeout:g}s") from None
        if metadata.error is not None:
            raise RuntimeError(f"{topic}: {metadata.error.str()}")
        partitions = list(metadata.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in partitions}
        pending = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in pending])
        state: dict[int, dict[bytes, bool]] = {p: {} for p in partitions}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout:g}s")
            for message in consumer.consume(500, timeout=0.5):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    raise RuntimeError(f"{topic}: {message.error()}")
                p = message.partition()
                if message.offset() >= ends[p][1]:
                    pending.discard(p)  # written after we started: not ours to judge
                    continue
                if message.key() is not None:
                    state[p][message.key()] = message.value() is not None
                if message.offset() + 1 >= ends[p][1]:
                    pending.discard(p)
        return state
    finally:
        consumer.close()


def tombstone_old_keys(config: dict, topics: list[str], *, apply: bool = False,
                       timeout: float = 300.0,
                       connect_timeout: float = 10.0) -> dict[str, dict[str, int]]:
    """Per topic, the keys whose last record is not a tombstone: ``old`` bare investor
    ids (tombstoned when ``apply``), ``current`` keys of contract 2, ``other`` keys that
    are neither (left alone). ``topics`` are physical names."""
    report: dict[str, dict[str, int]] = {}
    producer = Producer(with_logging({**config, "acks": "all", "enable.idempotence": True})) \
        if apply else None
    errors: list = []
    for topic in topics:
        counts = {"old": 0, "current": 0, "other": 0}
        for partition, keys in _live_keys(config, topic, timeout, connect_timeout).items():
            for key, live in keys.items():
                if not live:
                    continue
                try:
                    parse_output_key(key)
                    counts["current"] += 1
                    continue
                except ValueError:
                    pass
                try:
                    bare = _BARE.fullmatch(key.decode())
                except UnicodeDecodeError:
                    bare = None
                if bare is None:
                    counts["other"] += 1
                    continue
                counts["old"] += 1
                if producer is not None:
                    # The same partition as the record it deletes, whatever the partitioner.
                    producer.produce(topic, key=key, value=None, partition=partition,
                                     headers=[("key-version", str(KEY_VERSION - 1).encode())],
                                     on_delivery=lambda e, _m: errors.append(e) if e else None)
                    producer.poll(0)
        report[topic] = counts
    if producer is not None and (producer.flush(60) or errors):
        raise RuntimeError(f"tombstones not all acknowledged: {errors[:3] or 'timeout'}")
    return report
