"""Kafka outputs: one keyed sink per output topic.

Message key: ``<tenant>/<investor_id>`` (:func:`schemas.keys.output_key`; tombstones
too: tenants share the topics, and one's erasure must not delete another's lead of the
same investor id), the tenant for ``ops.alerts``, none for an alert about the
deployment rather than a tenant, the original message key for ``leads.dlq``; value:
the record as compact JSON; headers: schema version, content type, tenant and
idempotency key, and on the topics keyed per investor (tombstones too, with the
tenant) the key contract's version, ``key-version``. Records are handed to the producer as they come (``linger.ms`` 0:
librdkafka sends at once) and the producer is flushed at each epoch's snapshot, so
an epoch's outputs are on the broker before the epoch's snapshot is; after a resume,
outputs of the replayed epoch are sent again with the same idempotency keys
(consumers upsert by key). Flushing at every batch instead blocked the flow for a
broker round trip per batch, the largest single cost of live lead latency once
window closes became a trickle. A failed delivery stops the flow at the next batch
or snapshot. Tombstones delete a key on compacted topics: the flow hands each
topic's sink its own (:class:`~schemas.records.Tombstone` items among its records), so
one producer sends an investor's last lead and the erasure's tombstone in that order
(two producers gave no order between them, and compaction could keep the lead). The
``tombstones`` kind, one sink for the deletions of every topic, remains for callers
that keep deletions apart.

Records are bounded where they are made (dead letters keep at most
``dlq.max_value_bytes`` of the original; other records by their schema), so a
record the producer refuses as larger than ``message.max.bytes`` is a defect. It is
logged (topic, size, idempotency key: no record content) and counted in
``dropped``, and the flow goes on: raising would fail the epoch, and the resumed run
would meet the same record again, forever.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer

from esg_leads.connectors.client_logs import with_logging
from esg_leads.schemas.codec import encode
from esg_leads.schemas.keys import KEY_VERSION, output_key
from esg_leads.schemas.outputs import SCHEMA_VERSION
from esg_leads.schemas.records import Tombstone

log = logging.getLogger(__name__)
_SCHEMA = str(SCHEMA_VERSION).encode()
_KEY_VERSION = ("key-version", str(KEY_VERSION).encode())
#: Output kinds keyed per investor (schemas.keys.KEYED_BY_INVESTOR).
_PER_INVESTOR = frozenset(("leads", "review", "handoff", "shadow"))

#: Every live producer, so that a graceful stop can flush them all.
PRODUCERS: list[Producer] = []
_LOCK = threading.Lock()


def key_of(kind: str, record: dict) -> bytes | None:
    if kind == "alerts":
        tenant = record["tenant"]
        return tenant.encode() if tenant is not None else None
    if kind == "dlq":
        return base64.b64decode(record["key_b64"]) if record.get("key_b64") else None
    return output_key(record["tenant"], record["investor_id"]).encode()


class _TopicPartition(StatefulSinkPartition[dict, None]):
    def __init__(self, producer: Producer, topic: str, kind: str,
                 on_sent: Callable[[str, int], None] | None,
                 topic_of: Callable[[str], str]) -> None:
        self._producer = producer
        self._topic = topic
        self._kind = kind
        self._on_sent = on_sent
        self._topic_of = topic_of
        self._errors: list[str] = []
        #: Records refused as larger than the producer's ``message.max.bytes``.
        self.dropped = 0

    def _delivered(self, error, message) -> None:  # noqa: ANN001 - librdkafka callback
        if error is not None:
            self._errors.append(str(error))

    def write_batch(self, items: list[dict]) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        sent = 0
        for record in items:
            if type(record) is Tombstone:  # this topic's own deletion, in its place
                topic, key, value = self._topic, record.key.encode(), None
                headers = [_KEY_VERSION, ("tenant", record.tenant.encode())]
            elif self._kind == "tombstones":
                topic, key, value = self._topic_of(record["topic"]), record["key"].encode(), None
                # (The key is output_key's, made in operators/lifecycle.py of a valid pair.)
                headers = [_KEY_VERSION, ("tenant", key.split(b"/", 1)[0])]
            else:
                topic, key, value = self._topic, key_of(self._kind, record), encode(record)
                headers = [("schema-version", _SCHEMA), ("content-type", b"application/json"),
                           ("tenant", (record.get("tenant") or "").encode()),
                           ("idempotency-key", record.get("idempotency_key", "").encode())]
                if self._kind in _PER_INVESTOR:
                    headers.append(_KEY_VERSION)
                sent += 1
            while True:
                try:
                    produce(topic, value=value, key=key, headers=headers, on_delivery=self._delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    poll(0.1)
                except KafkaException as error:
                    if error.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                        raise
                    self.dropped += 1
                    log.error("dropped a %d-byte record for %s larger than message.max.bytes "
                              "(idempotency key %s)", len(value or b"") + len(key or b""),
                              topic, (record or {}).get("idempotency_key"))
                    break
        poll(0)  # delivery reports so far
        self._raise_failed()
        if self._on_sent is not None and sent:
            self._on_sent(self._kind, sent)

    def snapshot(self) -> None:
        """Flush: the epoch's outputs are delivered before its snapshot is written."""
        self._producer.flush()
        self._raise_failed()

    def _raise_failed(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise KafkaException(f"{len(errors)} deliveries to {self._topic} failed: {errors[0]}")

    def close(self) -> None:
        self._producer.flush()
        with _LOCK:  # closed: nothing left for a graceful stop to flush, and let it go
            if self._producer in PRODUCERS:
                PRODUCERS.remove(self._producer)


class KafkaTopicSink(FixedPartitionedSink[dict, None]):
    """Records of one output ``kind`` to ``topic``.

    One sink partition per topic: bytewax routes every record to the worker that
    owns it, and calls its ``snapshot`` (our flush) at the end of each epoch, a hook
    a dynamic sink does not have. Items are ``(key, record)``: the flow keys them.
    For ``tombstones`` the record names the logical topic; ``topic_of`` maps it to
    the physical one.
    """

    def __init__(self, config: dict, topic: str, kind: str,
                 on_sent: Callable[[str, int], None] | None = None,
                 topic_of: Callable[[str], str] = lambda logical: logical) -> None:
        self.config = config
        self.topic = topic
        self.kind = kind
        self.on_sent = on_sent
        self.topic_of = topic_of

    def list_parts(self) -> list[str]:
        return [self.kind]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TopicPartition:
        producer = Producer(with_logging({"linger.ms": 0, "acks": "all",
                                          "enable.idempotence": True, **self.config}))
        with _LOCK:
            PRODUCERS.append(producer)
        return _TopicPartition(producer, self.topic, self.kind, self.on_sent, self.topic_of)


def flush_all(timeout: float = 10.0) -> int:
    """Flush every producer; returns the messages still queued (0 when all delivered)."""
    with _LOCK:
        return sum(producer.flush(timeout) for producer in PRODUCERS)
