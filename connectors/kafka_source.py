"""Kafka input: every input topic-partition, merged into one stream in replay order.

bytewax's own ``KafkaSource`` reads every topic-partition as its own source
partition, so the interleaving of topics and partitions in the dataflow depends on
scheduling: a profile can be seen before or after an engagement, one partition can
run hours of event time ahead of another (turning the other's events "late" for
the event-time windows), and a live run could not be reproduced from a recording.
This source instead merges all input topic-partitions exactly as a recording
replays: ``(timestamp, topic, partition, offset)``. A partition with nothing
buffered holds the merge back until it has a message or reports end-of-partition,
for at most ``merge_max_wait_ms`` (then the merge goes on without it: the one case
in which a live run's order can differ from a replay of its recording).

One reader: parallelism comes from the keyed stages downstream (bytewax exchanges
items between workers by key), not from reading, which is cheap next to them.
Resume state is a dict of next offsets per topic-partition — just offsets.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from datetime import datetime
from collections.abc import Callable

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.records import RawMessage

log = logging.getLogger(__name__)
#: Header that carries a consumer error on a message the broker could not deliver.
CONSUMER_ERROR_HEADER = "x-esg-leads-consumer-error"

#: Set by the run command's signal handler: stop taking input.
STOP = threading.Event()
#: On stop, end the input (open windows close and publish) instead of idling until
#: the process exits after its next snapshot. The run command sets it when there is
#: no recovery directory, i.e. when state would be lost anyway.
DRAIN_ON_STOP = True


def wait_for_metadata(config: dict, topics: list[str], stop: threading.Event = STOP,
                      initial_backoff: float = 0.5, max_backoff: float = 30.0,
                      log_fn: Callable[[str], None] | None = None) -> dict[str, list[int]]:
    """Partition indices of each topic, retrying with backoff while the broker is away.

    One clear line per failed attempt (no stack trace); returns once every topic
    answers, or raises ``TimeoutError`` if ``stop`` is set meanwhile.
    """
    backoff = initial_backoff
    admin = AdminClient({k: v for k, v in config.items() if k != "group.id"})
    while True:
        try:
            partitions = {}
            for topic in topics:
                metadata = admin.list_topics(topic, timeout=5)
                info = metadata.topics[topic]
                if info.error is not None and info.error.code() != KafkaError.NO_ERROR:
                    raise RuntimeError(f"topic {topic!r}: {info.error.str()}")
                partitions[topic] = sorted(info.partitions)
                if not partitions[topic]:
                    raise RuntimeError(f"topic {topic!r} has no partitions yet")
            return partitions
        except Exception as error:  # noqa: BLE001 - reported, then retried
            message = (f"Kafka at {config.get('bootstrap.servers')} not ready: "
                       f"{str(error).splitlines()[0][:200]}; retrying in {backoff:.1f}s")
            (log_fn or log.warning)(message)
            if stop.wait(backoff):
                raise TimeoutError("stopped while waiting for Kafka") from None
            backoff = min(max_backoff, backoff * 2)


class _MergedPartition(StatefulSourcePartition[RawMessage, dict]):
    def __init__(self, config: dict, assignments: list[tuple[str, int]], offsets: dict[str, int],
                 batch_size: int, max_wait_ms: int, until_end: bool,
                 on_stats: Callable[[str], None] | None) -> None:
        consumer_config = {
            **config,
            "group.id": config.get("group.id", "esg-leads-unused"),  # offsets live in snapshots
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # A live lead should not wait for a fuller fetch: on the dev broker, a fetch
            # that finds nothing new sleeps out this wait even if data arrives meanwhile
            # (consume latency p50/p99 5.5/10.5 ms at 2 ms vs 9.0/16.4 ms at 10 ms, at
            # 5,000 msg/s); a real broker answers as soon as data arrives. Override it in
            # kafka.client to poll an idle real cluster less often.
            "fetch.wait.max.ms": 2,
            **{k: v for k, v in config.items() if k == "fetch.wait.max.ms"},
        }
        if on_stats is not None:
            consumer_config.setdefault("statistics.interval.ms", 5000)
            consumer_config["stats_cb"] = on_stats
        self._consumer = Consumer(consumer_config)
        self._keys = [f"{t}:{p}" for t, p in assignments]
        self._offsets = dict(offsets)
        ends = {}
        for topic, partition in assignments:
            key = f"{topic}:{partition}"
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                             timeout=10)
            ends[key] = high
            # Concrete offsets from the start, so that snapshots are plain numbers.
            if self._offsets[key] == OFFSET_BEGINNING:
                self._offsets[key] = low
            elif self._offsets[key] == OFFSET_END:
                self._offsets[key] = high
        self._consumer.assign([TopicPartition(t, p, self._offsets[f"{t}:{p}"])
                               for t, p in assignments])
        #: How far the merge has taken each partition (handed over or pending).
        self._merged = dict(self._offsets)
        self._buffers: dict[str, deque[RawMessage]] = {k: deque() for k in self._keys}
        self._at_end = dict.fromkeys(self._keys, False)
        self._batch_size = batch_size
        self._max_wait = max_wait_ms / 1000
        #: In a bounded run, where each partition ended when the run started.
        self._end_offsets: dict[str, int] | None = ends if until_end else None
        self._strict = until_end
        #: Messages merged but not yet handed over (a bounded run fills whole batches).
        self._pending: list[RawMessage] = []
        #: Since when the merge has been waiting for a partition with nothing buffered.
        self._held_since: float | None = None
        self._stop_epochs = 0
        #: Messages the merge had to emit without waiting for an idle partition.
        self.forced_merges = 0

    # ----------------------------------------------------------------- input

    def _fill(self, timeout: float) -> bool:
        """Read what the consumer has (waiting up to ``timeout`` s); whether anything came."""
        messages = self._consumer.consume(self._batch_size, timeout)
        for message in messages:
            key = f"{message.topic()}:{message.partition()}"
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end[key] = True
                    continue
                if message.offset() is None or message.offset() < 0:
                    log.warning("Kafka consumer error: %s", error)
                    continue
                value, headers = None, ((CONSUMER_ERROR_HEADER, str(error).encode()),)
            else:
                value, headers = message.value(), tuple(message.headers() or ())
            self._at_end[key] = False
            _, timestamp = message.timestamp()
            self._buffers[key].append(RawMessage(message.topic(), message.partition(),
                                                 message.offset(), timestamp, message.key(),
                                                 value, headers))
        return bool(messages)

    def _drained(self) -> bool:
        ends = self._end_offsets
        if ends is None:
            return False
        return all(self._merged[k] >= ends[k] and not self._buffers[k] for k in self._keys)

    def next_awake(self) -> datetime | None:
        return None  # bytewax calls again at once, or after 1 ms when a batch was empty

    def next_batch(self) -> list[RawMessage]:
        """Merged messages; never blocks (the whole worker waits while a source does).

        A bounded run (``--until-end``: its input is all written) hands over batches of
        exactly ``batch_size`` messages, the last one excepted, accumulating across
        calls: it then batches exactly as a replay of the same messages with the same
        batch size, and so decides the same (see README, "Determinism"). A live run
        hands over what it has as soon as it has it.
        """
        if STOP.is_set():
            if DRAIN_ON_STOP:
                raise StopIteration
            return []  # take no more input; the run exits after the next snapshot
        pending = self._pending
        if self._drained() and not pending:
            raise StopIteration
        self._fill(0)
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        self._merge_into(pending, force=now - self._held_since >= self._max_wait)
        full = len(pending) >= self._batch_size
        if full or (pending and (not self._strict or self._caught_up())):
            batch = pending[: self._batch_size]
            self._pending = pending[self._batch_size:]
            self._held_since = None
            offsets = self._offsets
            for message in batch:  # resume state: only what was handed over
                offsets[f"{message.topic}:{message.partition}"] = message.offset + 1
            return batch
        return []

    def _caught_up(self) -> bool:
        """Nothing buffered and every partition at its end: no more input right now."""
        return all(not self._buffers[k] and (self._at_end[k] or self._past_end(k))
                   for k in self._keys)

    def _merge_into(self, out: list[RawMessage], force: bool) -> None:
        buffers = self._buffers
        # A partition with nothing buffered may still hold an earlier message. Only
        # the partition just taken from can newly run dry, so this is checked once
        # up front and then only for that partition (not for all on every message).
        blocked = any(not buffers[k] and self._live(k) for k in self._keys)
        if blocked and not force:
            return
        heads = [(b[0].sort_key(), k) for k, b in buffers.items() if b]
        heapq.heapify(heads)
        while heads and len(out) < 2 * self._batch_size:
            if blocked:
                if not force:
                    return
                self.forced_merges += 1
            _, key = heapq.heappop(heads)
            buffer = buffers[key]
            message = buffer.popleft()
            self._merged[key] = message.offset + 1
            out.append(message)
            if buffer:
                heapq.heappush(heads, (buffer[0].sort_key(), key))
            elif self._live(key):
                blocked = True

    def _live(self, key: str) -> bool:
        """Whether the partition may have more messages than have been read from it."""
        return not self._at_end[key] and not self._past_end(key)

    def _past_end(self, key: str) -> bool:
        return self._end_offsets is not None and self._merged[key] >= self._end_offsets[key]

    def snapshot(self) -> dict:
        if STOP.is_set():
            self._stop_epochs += 1
        return dict(self._offsets)

    @property
    def epochs_since_stop(self) -> int:
        return self._stop_epochs

    def close(self) -> None:
        self._consumer.close()


class KafkaInput(FixedPartitionedSource[RawMessage, dict]):
    """Every input topic-partition, merged in replay order (see the module docstring).

    Parameters
    ----------
    config
        librdkafka client settings (``bootstrap.servers``, SASL/SSL, ...).
    topics
        Physical input topic names.
    starting_offset
        Where to start when there is no resume state: ``"beginning"`` or ``"end"``.
    until_end
        Stop once every partition reaches the end it had at start-up (a bounded run).
    """

    def __init__(self, config: dict, topics: list[str], *, starting_offset: str = "beginning",
                 batch_size: int = 1000, merge_max_wait_ms: int = 2000, until_end: bool = False,
                 on_stats: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.topics = topics
        self.start = OFFSET_BEGINNING if starting_offset == "beginning" else OFFSET_END
        self.batch_size = batch_size
        self.merge_max_wait_ms = merge_max_wait_ms
        self.until_end = until_end
        self.on_stats = on_stats
        self.partitions: list[_MergedPartition] = []

    def _layout(self) -> dict[str, list[int]]:
        return wait_for_metadata(self.config, self.topics)

    def list_parts(self) -> list[str]:
        return ["merged"]

    def build_part(self, step_id: str, for_part: str, resume_state: dict | None) -> _MergedPartition:
        layout = self._layout()
        assignments = [(t, p) for t in self.topics for p in layout[t]]
        offsets = {f"{t}:{p}": self.start for t, p in assignments}
        if resume_state:
            offsets.update({k: v for k, v in resume_state.items() if k in offsets})
        partition = _MergedPartition(self.config, assignments, offsets, self.batch_size,
                                     self.merge_max_wait_ms, self.until_end, self.on_stats)
        self.partitions.append(partition)
        return partition
