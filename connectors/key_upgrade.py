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

The order of the upgrade matters, and ``apply`` checks what it can of it. Run while
the old flow still runs, the tool would tombstone every live lead (all its keys are
bare); run while the old crm-sync still runs, each bare tombstone is an erasure to it
(``DELETE /leads/<id>``: every tenant's pre-upgrade CRM lead gone). So ``apply``
refuses (:class:`UpgradeRefused`) unless the topics hold records of the new flow
(header ``key-version: 2``) and no record under a bare key is newer than the first of
them on any topic (:func:`judge`): evidence the old flow had stopped when the new one
started. Newer is offset order within a partition; across partitions and topics,
whose offsets do not compare, the records' timestamps. The tool's own tombstones carry
``key-version: 1`` (the old flow sent no such header) and do not count, so a second
run after an interrupted one is not refused. Every topic is read and judged before
anything is published: a missing topic or a refusal leaves the broker untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from esg_leads.connectors.client_logs import with_logging
from esg_leads.schemas.common import ENTITY_ID_PATTERN
from esg_leads.schemas.keys import KEY_VERSION, parse_output_key

#: A key of contract 1: an investor id, nothing else (it holds no ``/``).
_BARE = re.compile(ENTITY_ID_PATTERN)
_HEADER = "key-version"
_CURRENT = str(KEY_VERSION).encode()
#: What the tool's own tombstones carry: the contract of the key they delete.
_OLD = str(KEY_VERSION - 1).encode()


class UpgradeRefused(RuntimeError):
    """``apply`` was asked before the evidence says the old flow has stopped."""


def is_bare(key: bytes) -> bool:
    """Whether ``key`` is a key of contract 1, a bare investor id.

    >>> is_bare(b"inv-1"), is_bare(b"acme/inv-1"), is_bare(b"Not A Key!"), is_bare(b"\\xff")
    (True, False, False, False)
    """
    try:
        return _BARE.fullmatch(key.decode()) is not None
    except UnicodeDecodeError:
        return False


@dataclass
class TopicScan:
    """What one read of a topic found, per partition."""

    topic: str
    #: each key's state at the end: ``True`` if its last record has a value
    live: dict[int, dict[bytes, bool]] = field(default_factory=dict)
    #: the first record of the new flow (header ``key-version: 2``): (offset, timestamp ms)
    first_current: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    #: the newest offset under a bare key the old flow wrote (the tool's tombstones aside)
    last_bare_offset: dict[int, int] = field(default_factory=dict)
    #: the latest timestamp (ms) of those records
    last_bare_ms: dict[int, int] = field(default_factory=dict)

    def see(self, partition: int, offset: int, ms: int | None, key: bytes | None,
            live: bool, headers: Iterable[tuple[str, bytes]]) -> None:
        """One record, read in offset order within its partition."""
        if key is None:
            return
        self.live.setdefault(partition, {})[key] = live
        version = next((v for k, v in headers if k == _HEADER), None)
        if version == _CURRENT:
            self.first_current.setdefault(partition, (offset, ms))
        elif version != _OLD and is_bare(key):
            self.last_bare_offset[partition] = offset
            if ms is not None and ms >= 0:
                self.last_bare_ms[partition] = max(ms, self.last_bare_ms.get(partition, ms))

    def counts(self) -> dict[str, int]:
        """Live keys: ``old`` bare ids, ``current`` keys of contract 2, ``other``."""
        counts = {"old": 0, "current": 0, "other": 0}
        for keys in self.live.values():
            for key, live in keys.items():
                if not live:
                    continue
                try:
                    parse_output_key(key)
                    counts["current"] += 1
                except ValueError:
                    counts["old" if is_bare(key) else "other"] += 1
        return counts

    def starts(self) -> list[tuple[int, str, int, int]]:
        """The first record of the new flow per partition: (ms, topic, partition, offset)."""
        return [(ms, self.topic, p, offset) for p, (offset, ms) in self.first_current.items()
                if ms is not None and ms >= 0]


def judge(scans: list[TopicScan]) -> tuple[list[str], list[str]]:
    """``(refusals, notes)``: why the old flow may still run, and what is only worth
    saying. One flow writes every topic, so the evidence is pooled: the new flow
    started with its earliest record on any topic (header ``key-version: 2``), and the
    old one has stopped if no record it wrote under a bare key is newer than that —
    offsets within one partition, timestamps otherwise. A topic the new flow has not
    written yet (``crm.handoff`` waits for approvals) is a note, not a refusal.

    >>> old, new = TopicScan("crm.handoff"), TopicScan("leads.scored")
    >>> old.see(0, 0, 1_000, b"inv-1", True, [])
    >>> judge([old])[0]
    ['no topic holds a record of the new flow (header key-version: 2)']
    >>> new.see(0, 0, 2_000, b"acme/inv-1", True, [("key-version", b"2")])
    >>> judge([old, new])
    ([], ['crm.handoff holds no record of the new flow yet: judged by the other topics'])
    >>> new.see(1, 0, 3_000, b"inv-2", True, [])  # written after the new flow started
    >>> print(judge([old, new])[0][0].replace(" is newer", "\\n is newer"))
    leads.scored: a record under a bare key (partition 1, offset 0)
     is newer than the first of the new flow (leads.scored, partition 0, offset 0)
    """
    if not any(scan.counts()["old"] for scan in scans):
        return [], []  # nothing to tombstone, nothing to fear
    starts = sorted(start for scan in scans for start in scan.starts())
    if not any(scan.first_current for scan in scans):
        return [f"no topic holds a record of the new flow (header {_HEADER}: {KEY_VERSION})"], []
    refusals, notes = [], []
    for scan in scans:
        if not scan.first_current and scan.counts()["old"]:
            notes.append(f"{scan.topic} holds no record of the new flow yet: judged by the "
                         f"other topics")
        for p, offset in sorted(scan.last_bare_offset.items()):
            first = scan.first_current.get(p)
            if first is not None and offset > first[0]:
                refusals.append(f"{scan.topic}: a record under a bare key (partition {p}, "
                                f"offset {offset}) is newer than the first of the new flow "
                                f"(partition {p}, offset {first[0]})")
        for p, ms in sorted(scan.last_bare_ms.items()):
            # Offsets of two partitions do not compare: only the timestamps do.
            earlier = next((s for s in starts if (s[1], s[2]) != (scan.topic, p)), None)
            if earlier is not None and ms > earlier[0]:
                refusals.append(f"{scan.topic}: a record under a bare key (partition {p}, "
                                f"offset {scan.last_bare_offset[p]}) is newer than the first "
                                f"of the new flow ({earlier[1]}, partition {earlier[2]}, "
                                f"offset {earlier[3]})")
    return refusals, notes


def _partitions(consumer: Consumer, topic: str, connect_timeout: float) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=connect_timeout).topics[topic]
    except KafkaException:
        raise RuntimeError(f"the broker did not answer within {connect_timeout:g}s") from None
    if metadata.error is not None:
        raise RuntimeError(f"{topic}: {metadata.error.str()}")
    return sorted(metadata.partitions)


def _scan(consumer: Consumer, topic: str, partitions: list[int], timeout: float) -> TopicScan:
    """Reads ``topic`` from its start to its end at the time of the call."""
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in partitions}
    except KafkaException as error:
        raise RuntimeError(f"{topic}: its end offsets could not be read: "
                           f"{error.args[0].str()}") from None
    pending = {p for p, (low, high) in ends.items() if high > low}
    consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in pending])
    scan = TopicScan(topic)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout:g}s")
            for message in consumer.consume(500, timeout=0.5):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    raise RuntimeError(f"{topic}: {message.error().str()}")
                p, offset = message.partition(), message.offset()
                if offset >= ends[p][1]:
                    pending.discard(p)  # written after we started: not ours to judge
                    continue
                ts_type, ms = message.timestamp()
                scan.see(p, offset, ms if ts_type else None, message.key(),
                         message.value() is not None, message.headers() or ())
                if offset + 1 >= ends[p][1]:
                    pending.discard(p)
    finally:
        consumer.unassign()
    return scan


def _produce(producer: Producer, topic: str, key: bytes, partition: int,
             on_delivery: Callable) -> None:
    while True:
        try:
            # The same partition as the record it deletes, whatever the partitioner.
            producer.produce(topic, key=key, value=None, partition=partition,
                             headers=[(_HEADER, _OLD)], on_delivery=on_delivery)
            break
        except BufferError:  # the local queue is full: let deliveries drain, then again
            producer.poll(0.5)
    producer.poll(0)


def tombstone_old_keys(config: dict, topics: list[str], *, apply: bool = False,
                       force: bool = False, timeout: float = 300.0,
                       connect_timeout: float = 10.0, flush_timeout: float = 60.0,
                       on_topic: Callable[[str, dict[str, int]], None] | None = None,
                       on_warning: Callable[[str], None] | None = None,
                       ) -> dict[str, dict[str, int]]:
    """Per topic, the keys whose last record is not a tombstone: ``old`` bare investor
    ids (tombstoned when ``apply``), ``current`` keys of contract 2, ``other`` keys that
    are neither (left alone). ``topics`` are physical names.

    Every topic's metadata is checked and every topic read before anything is published.
    ``apply`` raises :class:`UpgradeRefused` when a topic says the old flow may still run
    (see the module's docstring); ``force`` publishes anyway and tells ``on_warning``.
    ``on_topic`` hears each topic's counts once its tombstones are acknowledged (a dry
    run: once it is read); a topic whose tombstones are not all acknowledged within
    ``flush_timeout`` raises ``RuntimeError``, the topics before it done.
    """
    consumer = Consumer(with_logging({**config, "group.id": f"esg-leads-upgrade-{uuid.uuid4()}",
                                      "enable.auto.commit": False, "enable.partition.eof": True,
                                      "auto.offset.reset": "earliest"}))
    try:
        layout = {topic: _partitions(consumer, topic, connect_timeout) for topic in topics}
        scans = [_scan(consumer, topic, layout[topic], timeout) for topic in topics]
    finally:
        consumer.close()
    doubts, notes = judge(scans)
    if apply and doubts and not force:
        raise UpgradeRefused(f"{doubts[0]}: the old flow may still run (stop it, and let "
                             f"the old crm-sync drain and stop, before this; --force "
                             f"publishes anyway)")
    if on_warning is not None:
        for why in doubts:
            on_warning(f"{why}; tombstoning anyway (--force)" if apply
                       else f"{why}: --apply would refuse")
        for note in notes:
            on_warning(note)
    report: dict[str, dict[str, int]] = {}
    producer = Producer(with_logging({**config, "acks": "all", "enable.idempotence": True})) \
        if apply else None
    for scan in scans:
        counts = scan.counts()
        if producer is not None and counts["old"]:
            errors: list = []

            def delivered(error, _message, errors=errors) -> None:  # noqa: ANN001
                if error is not None:
                    errors.append(error)

            for partition, keys in sorted(scan.live.items()):
                for key, live in keys.items():
                    if live and is_bare(key):
                        _produce(producer, scan.topic, key, partition, delivered)
            left = producer.flush(flush_timeout)
            if left or errors:
                raise RuntimeError(f"{scan.topic}: tombstones not all acknowledged "
                                   f"({left:,} waiting after {flush_timeout:g}s; "
                                   f"{[e.str() for e in errors[:3]]})")
        report[scan.topic] = counts
        if on_topic is not None:
            on_topic(scan.topic, counts)
    return report
