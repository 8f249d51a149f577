"""Publish a recording (see :mod:`connectors.recording`) to Kafka.

:func:`publish_recording` replays a recording, in its replay order
``(timestamp_ms, topic, partition, offset)``, into a Kafka cluster -- a real one or a
:class:`connectors.dev_broker.DevBroker`.  Every message keeps its key, value, headers
and original timestamp (sent as the CreateTime), and goes to the same topic name
unless *topic_map* renames it.

Partitions
    Per-partition order is what Kafka guarantees, so a message is sent to its
    recorded partition whenever the destination topic has that partition (partition
    counts are read from the metadata once, at the start).  Otherwise the producer's
    default partitioner picks one from the key (librdkafka's ``consistent_random``:
    CRC32 of the key, a random partition for a null key) and the message is counted
    in ``"repartitioned"``; order across such messages is no longer the recorded one.

Delivery
    The producer is idempotent with ``acks=all`` and ``linger.ms=5`` (librdkafka's
    mock cluster supports idempotent producers, so this works against a
    ``DevBroker`` too); *config* overrides any setting, e.g. SASL/SSL options for a
    real cluster, or ``{"enable.idempotence": False}`` for an old broker.  A full
    local queue is handled by polling and retrying; delivery failures are counted and
    raised as :class:`PublishError` once everything has been flushed.

Pacing
    ``speed=None`` sends as fast as possible.  ``speed=X`` sends each message once
    ``(timestamp_ms - first_timestamp_ms) / X`` ms have passed since the first send,
    i.e. at X times the recorded pace (``1.0`` = real time).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from esg_leads.connectors.recording import RecordingReader

__all__ = ["DEFAULT_PRODUCER_CONFIG", "PublishError", "publish_recording"]

#: Producer settings applied before the caller's *config* overrides.
DEFAULT_PRODUCER_CONFIG: Final[dict[str, Any]] = {
    "linger.ms": 5,
    "acks": "all",
    "enable.idempotence": True,
}

_METADATA_TIMEOUT_S: Final = 10.0
# Topics just auto-created on a real cluster answer LEADER_NOT_AVAILABLE for a moment.
_METADATA_SETTLE_S: Final = 5.0
_MAX_ERRORS_KEPT: Final = 10

Progress = Callable[[int, int], object]


class PublishError(RuntimeError):
    """Some messages could not be delivered.

    Attributes
    ----------
    failed
        Failed deliveries per destination topic.
    errors
        The first few delivery (or fatal producer) errors, as strings.
    stats
        The statistics :func:`publish_recording` would have returned.
    """

    def __init__(
        self, message: str, failed: dict[str, int], errors: list[str], stats: dict[str, Any]
    ) -> None:
        super().__init__(message)
        self.failed = failed
        self.errors = errors
        self.stats = stats


def _partition_counts(producer: Producer, topics: list[str]) -> dict[str, int]:
    """Partition count of each destination topic (0 when unknown).

    Asks for each topic by name, which lets a cluster that auto-creates topics (the
    mock always does, with 4 partitions) create it now rather than at the first send.
    """
    counts: dict[str, int] = {}
    for topic in topics:
        deadline = time.monotonic() + _METADATA_SETTLE_S
        while True:
            meta = producer.list_topics(topic=topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
            n = len(meta.partitions) if meta is not None and meta.error is None else 0
            retriable = meta is not None and (
                (meta.error is not None and meta.error.code() == KafkaError.LEADER_NOT_AVAILABLE)
                or (meta.error is None and n == 0)
            )
            if n or not retriable or time.monotonic() >= deadline:
                counts[topic] = n
                break
            time.sleep(0.1)
    return counts


#: Client settings that reach the cluster (connection, security, logging), which the
#: watermark look-ups share with the producer; producer-only ones would be warned about.
_SHARED_PREFIXES: Final = ("security.", "sasl.", "ssl.", "ssl_", "enable.ssl", "oauth",
                           "client.", "socket.", "broker.", "api.version", "reconnect.",
                           "connections.", "metadata.", "topic.metadata", "logger", "log_level",
                           "log.", "debug", "resolve_cb", "client.dns")


def _watermark_consumer(bootstrap: str, config: dict[str, Any]) -> Consumer:
    shared = {k: v for k, v in config.items() if k.startswith(_SHARED_PREFIXES)}
    return Consumer({**shared, "bootstrap.servers": bootstrap,
                     "group.id": "esg-leads-publish-watermarks"})


def _end_offsets(bootstrap: str, config: dict[str, Any],
                 partitions: dict[str, int]) -> dict[tuple[str, int], int] | None:
    """The next offset of every partition of ``partitions`` (topic -> count); ``None``
    if the cluster would not say (the eviction check is advisory, never fatal)."""
    consumer = _watermark_consumer(bootstrap, config)
    try:
        return {(topic, p): consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=_METADATA_TIMEOUT_S)[1]
                for topic, count in partitions.items() for p in range(count)}
    except KafkaException:
        return None
    finally:
        consumer.close()


def _evicted(bootstrap: str, config: dict[str, Any],
             ends_before: dict[tuple[str, int], int] | None) -> dict[str, int] | None:
    """Per topic: messages at or after ``ends_before`` that the cluster has dropped
    (its log now starts later), i.e. lost to retention during this publish; ``None``
    if that could not be told."""
    if ends_before is None:
        return None
    consumer = _watermark_consumer(bootstrap, config)
    evicted: dict[str, int] = {}
    try:
        for (topic, p), before in ends_before.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=_METADATA_TIMEOUT_S)
            evicted[topic] = evicted.get(topic, 0) + max(0, min(low, high) - before)
    except KafkaException:
        return None
    finally:
        consumer.close()
    return evicted


def publish_recording(
    recording_dir: str | os.PathLike[str],
    bootstrap: str,
    *,
    speed: float | None = None,
    topic_map: dict[str, str] | None = None,
    batch: int = 10_000,
    config: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Produce every message of a recording to the cluster at *bootstrap*.

    Parameters
    ----------
    recording_dir
        A recording directory.
    bootstrap
        ``bootstrap.servers`` of the target cluster.
    speed
        ``None``: as fast as possible; ``X > 0``: X times the recorded pace.
    topic_map
        Recorded topic -> destination topic; unlisted topics keep their name.
    batch
        Messages read from the recording at a time.
    config
        Producer configuration overrides (merged over :data:`DEFAULT_PRODUCER_CONFIG`).
    progress
        Called as ``progress(sent, total)`` after each batch has been handed to the
        producer (``sent`` counts messages queued so far).

    Returns
    -------
    dict
        ``messages`` (total delivered), ``topics`` (delivered per destination topic),
        ``repartitioned`` (per topic: messages the partitioner placed because the
        recorded partition does not exist there), ``evicted`` (per topic: messages
        written since the publish began that the cluster no longer holds when it
        ends — the dev broker keeps at most ~5 MB per partition and drops the
        oldest; ``None`` if the cluster would not tell), ``seconds`` (wall time from the
        first send through the final flush; producer start-up and the metadata
        look-up are not counted), ``messages_per_s``.

    Raises
    ------
    PublishError
        If any delivery failed or the producer hit a fatal error (after flushing).
    confluent_kafka.KafkaException
        If the cluster cannot be reached for metadata.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0 or None, got {speed!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    topic_map = dict(topic_map or {})
    reader = RecordingReader(recording_dir, batch_rows=batch)
    total = reader.count()

    failed: dict[str, int] = {}
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is None:
            return
        topic = msg.topic()
        failed[topic] = failed.get(topic, 0) + 1
        if len(errors) < _MAX_ERRORS_KEPT:
            errors.append(f"{topic}[{msg.partition()}]: {err.str()}")

    fatal: list[str] = []
    user_config = dict(config or {})
    user_error_cb = user_config.pop("error_cb", None)

    def on_error(err: KafkaError) -> None:
        if err.fatal():
            fatal.append(err.str())
        if user_error_cb is not None:
            user_error_cb(err)

    producer_config: dict[str, Any] = {
        **DEFAULT_PRODUCER_CONFIG,
        "delivery.report.only.error": True,
        **user_config,
        "bootstrap.servers": bootstrap,
        "on_delivery": on_delivery,
        "error_cb": on_error,
    }
    producer = Producer(producer_config)
    completed = False
    try:
        destinations = sorted({topic_map.get(t, t) for t in reader.topics()})
        partition_counts = _partition_counts(producer, destinations)
        ends_before = _end_offsets(bootstrap, user_config, partition_counts)
        sent, queued, repartitioned, seconds = _produce_all(
            producer, reader, topic_map, speed, total, progress, fatal, partition_counts
        )
        completed = True
    finally:
        # Release the client now, also on errors (a traceback would keep it alive
        # and reconnecting).  On an error, drop what is still queued rather than
        # wait up to message.timeout.ms for it.
        if not completed:
            producer.purge()
            # Serve the purged messages' delivery reports, but never wait on a cluster
            # that is gone: close() flushes with no timeout and hung here (seen in CI, a
            # broker stopped mid-publish, > 5 min). Dropping the client destroys it.
            producer.flush(0)
        else:
            close = getattr(producer, "close", None)  # confluent-kafka >= 2.12
            if close is not None:
                close()
        del producer

    delivered = {t: queued[t] - failed.get(t, 0) for t in queued}
    n = sum(delivered.values())
    stats: dict[str, Any] = {
        "messages": n,
        "topics": delivered,
        "repartitioned": repartitioned,
        # Only worth asking after a clean publish; advisory, so never an error itself.
        "evicted": None if (failed or fatal) else _evicted(bootstrap, user_config, ends_before),
        "seconds": seconds,
        "messages_per_s": n / seconds if seconds > 0 else float("inf"),
    }
    if failed or fatal:
        nfail = sum(failed.values())
        detail = "; ".join(fatal + errors)
        raise PublishError(
            f"{nfail} of {sent} message(s) not delivered"
            + (" (fatal producer error)" if fatal else "")
            + (f": {detail}" if detail else ""),
            failed,
            fatal + errors,
            stats,
        )
    return stats


def _produce_all(
    producer: Producer,
    reader: RecordingReader,
    topic_map: dict[str, str],
    speed: float | None,
    total: int,
    progress: Progress | None,
    fatal: list[str],
    partition_counts: dict[str, int],
) -> tuple[int, dict[str, int], dict[str, int], float]:
    """Send every message; return (sent, queued per topic, repartitioned per topic, s)."""
    destinations = sorted({topic_map.get(t, t) for t in reader.topics()})
    queued: dict[str, int] = {t: 0 for t in destinations}
    repartitioned: dict[str, int] = {t: 0 for t in destinations}
    produce = producer.produce
    poll = producer.poll
    sent = 0
    first_ts: int | None = None
    started = time.monotonic()

    for messages in reader.iter_batches():
        for m in messages:
            topic = topic_map.get(m.topic, m.topic)
            count = partition_counts.get(topic)
            if count is None:  # a topic missing from the manifest's list
                count = partition_counts[topic] = _partition_counts(producer, [topic])[topic]
                queued.setdefault(topic, 0)
                repartitioned.setdefault(topic, 0)
            if m.partition < count:
                partition = m.partition
            else:
                partition = -1  # RD_KAFKA_PARTITION_UA: the partitioner decides
                repartitioned[topic] += 1
            if speed is not None:
                if first_ts is None:
                    first_ts = m.timestamp_ms
                    started = time.monotonic()
                due = started + (m.timestamp_ms - first_ts) / 1000.0 / speed
                while (wait := due - time.monotonic()) > 0:
                    poll(min(wait, 0.05))  # serve callbacks while waiting
            while True:
                try:
                    produce(
                        topic,
                        value=m.value,
                        key=m.key,
                        partition=partition,
                        timestamp=m.timestamp_ms,
                        headers=list(m.headers) if m.headers else None,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    poll(0.05)
            poll(0)
            queued[topic] += 1
            sent += 1
        if progress is not None:
            progress(sent, total)
        if fatal:
            break

    remaining = producer.flush()
    while remaining:  # flush() returns early only on a timeout; keep draining
        remaining = producer.flush(1.0)
    seconds = time.monotonic() - started
    return sent, queued, repartitioned, seconds
