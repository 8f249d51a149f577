"""``esg-leads record``: Kafka topics to a recording, as the generator writes them.

Every message keeps its topic, partition, offset, timestamp, key, value and
headers. ``until_end`` stops at the end each partition had when recording started
(a consistent cut of topics that are no longer written); otherwise recording runs
for ``duration`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from esg_leads.connectors.kafka_source import wait_for_metadata
from esg_leads.connectors.recording import RecordedMessage, RecordingWriter

log = logging.getLogger(__name__)


def record(config: dict, topics: list[str], out: str | Path, *, until_end: bool = True,
           duration: float | None = None, overwrite: bool = False,
           progress: Callable[[int, int], None] | None = None,
           connect_timeout: float | None = None) -> dict:
    """Record ``topics`` into the recording directory ``out``; returns counts.

    ``connect_timeout``: how long to wait for the broker before giving up with
    :class:`~connectors.kafka_source.BrokerUnavailable` (``None``: for as long as it takes).
    """
    # With a budget the command fails in one line once it is spent; a line per retry
    # before that would be noise in front of it (kept at INFO for --log-level debugging).
    layout = wait_for_metadata(config, topics, budget=connect_timeout,
                               log_fn=None if connect_timeout is None else log.info)
    consumer = Consumer({**config, "group.id": "esg-leads-record", "enable.auto.commit": False,
                         "enable.partition.eof": True, "fetch.wait.max.ms": 50})
    assignment, ends, total = [], {}, 0
    for topic in topics:
        for partition in layout[topic]:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            assignment.append(TopicPartition(topic, partition, low))
            ends[(topic, partition)] = high
            total += high - low
    consumer.assign(assignment)
    pending = {tp for tp, end in ends.items() if end > 0} if until_end else set(ends)
    done_at = None if until_end or duration is None else time.monotonic() + duration
    written = 0
    started = time.monotonic()
    with RecordingWriter(out, overwrite=overwrite) as writer:
        while pending if until_end else time.monotonic() < (done_at or float("inf")):
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                tp = (message.topic(), message.partition())
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"while recording {tp}: {error}")
                    if until_end and message.offset() >= ends.get(tp, 0):
                        pending.discard(tp)
                    continue
                if until_end and message.offset() >= ends[tp]:
                    pending.discard(tp)
                    continue  # written after the cut
                writer.write(RecordedMessage(message.topic(), message.partition(), message.offset(),
                                             message.timestamp()[1], message.key(), message.value(),
                                             tuple(message.headers() or ())))
                written += 1
                if until_end and message.offset() + 1 >= ends[tp]:
                    pending.discard(tp)
            if progress is not None:
                progress(written, total)
    consumer.close()
    return {"messages": written, "topics": topics, "seconds": time.monotonic() - started}
