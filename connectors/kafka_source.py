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

Where reading starts
--------------------
From the resume state when bytewax has one (the offsets that go with the snapshot of
every stage's state), else from ``starting_offset``. Never from the consumer group's
committed offsets: a position without the state that goes with it skips the events
of windows that were open when the state was lost (a run without recovery, a lost
recovery directory), and those leads are never scored.

Committed offsets (a progress report)
-------------------------------------
Offsets are committed to the consumer group so that lag tools see progress. With
recovery, at each snapshot the source commits the offsets of the *previous* snapshot:
bytewax writes a snapshot once the epoch it ends has gone through the dataflow, so by
the next epoch's end it is on disk, and a committed offset never claims more than a
snapshot holds (should bytewax lag more than an epoch behind, the commit runs ahead
of the recovery store by that much: harmless, since no run starts from the group's
offsets). Without recovery, snapshots are hourly, so the source commits what it has
handed over every ``commit_interval`` seconds instead. Commits are asynchronous (a
failed one is logged and retried with the next); ``close`` commits synchronously.

Lost positions
--------------
A stored position can be out of range: retention deleted it, or the broker lost its
data (a restart of a broker without its disks, a new cluster with the same topics).
librdkafka's ``auto.offset.reset`` would then jump to the end of the partition,
silently skipping whatever is there; it is set to ``error`` here, so that the loss
surfaces (an ``_AUTO_OFFSET_RESET`` event while reading; at start-up the position is
checked against the partition's watermarks first). Then, by ``on_loss``:

* ``"earliest"``: the partition restarts at its log start (``event_id`` dedup
  dead-letters what was already processed as ``duplicate``), with one ERROR line
  naming the partition, the old and the new position, and an
  :class:`~schemas.records.OffsetsReset` item in the stream, in order with the
  messages, from which the flow makes an ``offsets_reset`` alert. The resume state
  takes the new position only when that item is handed over, so a snapshot never
  holds one without the other.
* ``"fail"``: one ERROR line, then the source stops taking input as on SIGTERM and
  records why in :data:`FAILED`; ``esg-leads run`` exits non-zero once stopped.

A position that the broker reports out of range but that its watermarks contain
again (a leader change) is read on from where it was, with a warning: nothing was
skipped.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from esg_leads.connectors.client_logs import KAFKA_LOG, quiet, with_logging
from esg_leads.schemas.records import OffsetsReset, RawMessage

log = logging.getLogger(__name__)
#: Header that carries a consumer error on a message the broker could not deliver.
CONSUMER_ERROR_HEADER = "x-esg-leads-consumer-error"

#: Set by the run command's signal handler: stop taking input.
STOP = threading.Event()
#: On stop, end the input (open windows close and publish) instead of idling until
#: the process exits after its next snapshot. The run command sets it when there is
#: no recovery directory, i.e. when state would be lost anyway.
DRAIN_ON_STOP = True
#: Why the source stopped the run (``on_loss="fail"``); empty while all is well.
FAILED: list[str] = []

#: Consumer errors that mean "the position is not on the broker any more".
_LOST = frozenset((KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE,
                   KafkaError._LOG_TRUNCATION))


class BrokerUnavailable(TimeoutError):
    """The broker did not answer within the caller's retry budget."""


def wait_for_metadata(config: dict, topics: list[str], stop: threading.Event = STOP,
                      initial_backoff: float = 0.5, max_backoff: float = 30.0,
                      log_fn: Callable[[str], None] | None = None,
                      budget: float | None = None) -> dict[str, list[int]]:
    """Partition indices of each topic, retrying with backoff while the broker is away.

    One clear line per failed attempt (no stack trace, and none of librdkafka's own
    lines: the probe client is silenced); returns once every topic answers, or raises
    ``TimeoutError`` if ``stop`` is set meanwhile. A service (``run``) waits for as long
    as it takes; a one-shot command passes a ``budget`` in seconds and gets
    :class:`BrokerUnavailable`, naming the last error, once it is spent.

    An attempt waits 5 s for an answer (librdkafka's metadata call waits out its timeout
    when no broker answers), or ``socket.timeout.ms`` of the client config if shorter.
    """
    backoff = initial_backoff
    attempt = min(5.0, float(config.get("socket.timeout.ms", 5000)) / 1000)
    deadline = None if budget is None else time.monotonic() + budget
    admin = AdminClient(quiet({k: v for k, v in config.items() if k != "group.id"}))
    while True:
        try:
            partitions = {}
            for topic in topics:
                wait = (attempt if deadline is None
                        else min(attempt, max(0.1, deadline - time.monotonic())))
                metadata = admin.list_topics(topic, timeout=wait)
                info = metadata.topics[topic]
                if info.error is not None and info.error.code() != KafkaError.NO_ERROR:
                    raise RuntimeError(f"topic {topic!r}: {info.error.str()}")
                partitions[topic] = sorted(info.partitions)
                if not partitions[topic]:
                    raise RuntimeError(f"topic {topic!r} has no partitions yet")
            return partitions
        except Exception as error:  # noqa: BLE001 - reported, then retried
            reason = str(error).splitlines()[0][:200]
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise BrokerUnavailable(
                    f"Kafka at {config.get('bootstrap.servers')} did not answer within "
                    f"{budget:g}s: {reason}") from None
            backoff = backoff if left is None else min(backoff, left)
            message = (f"Kafka at {config.get('bootstrap.servers')} not ready: "
                       f"{reason}; retrying in {backoff:.1f}s")
            (log_fn or log.warning)(message)
            if stop.wait(backoff):
                raise TimeoutError("stopped while waiting for Kafka") from None
            backoff = min(max_backoff, backoff * 2)


def _split(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition(":")  # topic names cannot hold ":"
    return topic, int(partition)


class _MergedPartition(StatefulSourcePartition[RawMessage, dict]):
    def __init__(self, config: dict, assignments: list[tuple[str, int]], offsets: dict[str, int],
                 batch_size: int, max_wait_ms: int, until_end: bool,
                 on_stats: Callable[[str], None] | None, *, group_id: str = "esg-leads",
                 on_loss: str = "earliest", commit_interval: float | None = None,
                 resumed: bool = False) -> None:
        consumer_config = {
            # This consumer never joins its group (it assigns partitions itself), so the
            # session timeout only bounds how long a commit waits for an absent
            # coordinator, e.g. at close while the broker is down (45 s by default).
            "session.timeout.ms": 6000,
            **with_logging(config),
            "group.id": group_id,
            "enable.auto.commit": False,  # committed after the snapshot (module docstring)
            "on_commit": self._on_commit,
            "enable.partition.eof": True,
            # A lost position is an error event here, never a silent jump to the end.
            "auto.offset.reset": "error",
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
        self._on_loss = on_loss
        self._buffers: dict[str, deque[RawMessage | OffsetsReset]] = {
            k: deque() for k in self._keys}
        #: Loss notices in the buffers or pending, not yet handed over.
        self._notices = 0
        self._offsets = dict(offsets)
        ends = {}
        lost: set[str] = set()
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
            elif not low <= self._offsets[key] <= high:
                lost.add(key)
                self._lost(key, self._offsets[key], low, high,
                           f"stored position not on the broker (log {low}..{high})")
        #: Next offset to read from each partition (what the consumer is assigned at).
        self._read = {k: self._offsets[k] for k in self._keys}
        for notice in self._pending_resets():
            self._read[f"{notice.topic}:{notice.partition}"] = notice.new_offset
            lost.discard(f"{notice.topic}:{notice.partition}")
        # A position known lost (the fail policy: nothing more is read) is never assigned:
        # the consumer would fetch it, be told "out of range", and a close while it handles
        # that answer deadlocks inside librdkafka (confluentinc/librdkafka#4514; hung this
        # suite's test_with_the_fail_policy_a_lost_position_stops_the_input once).
        self._consumer.assign([TopicPartition(t, p, self._read[f"{t}:{p}"])
                               for t, p in assignments if f"{t}:{p}" not in lost])
        self._at_end = dict.fromkeys(self._keys, False)
        self._batch_size = batch_size
        self._max_wait = max_wait_ms / 1000
        #: In a bounded run, where each partition ended when the run started.
        self._end_offsets: dict[str, int] | None = ends if until_end else None
        self._strict = until_end
        #: Messages merged but not yet handed over (a bounded run fills whole batches).
        self._pending: list[RawMessage | OffsetsReset] = []
        #: Since when the merge has been waiting for a partition with nothing buffered.
        self._held_since: float | None = None
        self._stop_epochs = 0
        #: Messages the merge had to emit without waiting for an idle partition.
        self.forced_merges = 0
        #: Committing: periodic (no recovery) or one snapshot behind (recovery).
        self._commit_interval = commit_interval
        self._next_commit = time.monotonic() + (commit_interval or 0)
        self._committed: dict[str, int] = {}
        #: The offsets of the last snapshot: a resume state is one already on disk.
        self._last_snapshot: dict[str, int] | None = dict(self._offsets) if resumed else None

    # ------------------------------------------------------------ lost positions

    def _pending_resets(self) -> list[OffsetsReset]:
        return [item for buffer in self._buffers.values() for item in buffer
                if type(item) is OffsetsReset]

    def _lost(self, key: str, old: int, low: int, high: int, detail: str) -> None:
        """``key``'s position ``old`` is not on the broker: restart at ``low`` or stop."""
        topic, partition = _split(key)
        if self._on_loss == "fail":
            message = (f"offsets lost: {topic} partition {partition} position {old} is not on "
                       f"the broker (log {low}..{high}; {detail}); stopping "
                       f"(kafka.offset_reset_on_loss = fail)")
            log.error(message)
            FAILED.append(message)
            STOP.set()
            return
        notice = OffsetsReset(topic, partition, old, low, low, high, time.time_ns() // 1_000_000,
                              detail[:500])
        log.error("offsets reset: %s partition %d position %d is not on the broker "
                  "(log %d..%d); reading on from %d: %s", topic, partition, old, low, high, low,
                  f"{notice.skipped} offsets skipped" if notice.skipped
                  else "nothing skipped, what was read again is deduplicated by event_id")
        self._buffers[key].append(notice)
        self._notices += 1

    def _on_read_error(self, key: str, error: KafkaError) -> None:
        """The consumer says ``key``'s position is gone (it stopped fetching it)."""
        topic, partition = _split(key)
        old = self._read[key]
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                             timeout=10)
        except KafkaException as failure:
            # Not knowing where the log starts now, read on from the same position: the
            # broker answers it with the same error again, and this is retried then.
            log.warning("offsets: %s partition %d position %d reported lost (%s); "
                        "watermarks unavailable (%s), retrying", topic, partition, old,
                        error.str(), failure)
            self._restart(topic, partition, old)
            return
        if low <= old <= high:
            log.warning("offsets: %s partition %d position %d was reported lost (%s), but the "
                        "log (%d..%d) holds it: reading on from there", topic, partition, old,
                        error.str(), low, high)
            self._restart(topic, partition, old)
            return
        self._lost(key, old, low, high, error.str())
        if self._on_loss == "fail":
            return
        self._read[key] = low
        self._at_end[key] = False
        if self._end_offsets is not None:  # a bounded run reads the new log to its end
            self._end_offsets[key] = high
        self._restart(topic, partition, low)

    def _restart(self, topic: str, partition: int, offset: int) -> None:
        """Fetch ``topic``/``partition`` from ``offset`` again. After a lost position
        librdkafka has stopped fetching it, and a seek is refused in that state; the
        partition is taken out of the assignment and put back at the new offset."""
        tp = TopicPartition(topic, partition, offset)
        self._consumer.incremental_unassign([TopicPartition(topic, partition)])
        self._consumer.incremental_assign([tp])

    # ------------------------------------------------------------------ commits

    def _commit(self, offsets: dict[str, int], asynchronous: bool = True) -> None:
        changed = [TopicPartition(*_split(k), o) for k, o in offsets.items()
                   if o >= 0 and self._committed.get(k) != o]
        if not changed:
            return
        try:
            self._consumer.commit(offsets=changed, asynchronous=asynchronous)
        except KafkaException as error:  # the next commit tries again
            KAFKA_LOG.warning("%s [%s] %s", "COMMIT", "esg-leads", f"not committed: {error}")
            return
        if not asynchronous:
            self._committed.update((f"{tp.topic}:{tp.partition}", tp.offset) for tp in changed)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None:
            KAFKA_LOG.warning("%s [%s] %s", "COMMIT", "esg-leads", f"not committed: {error}")
            return
        for tp in partitions:
            if tp.error is None:
                self._committed[f"{tp.topic}:{tp.partition}"] = tp.offset

    # ----------------------------------------------------------------- input

    def _fill(self, timeout: float) -> bool:
        """Read what the consumer has (waiting up to ``timeout`` s); whether anything came."""
        messages = self._consumer.consume(self._batch_size, timeout)
        for message in messages:
            key = f"{message.topic()}:{message.partition()}"
            error = message.error()
            if error is not None:
                code = error.code()
                if code == KafkaError._PARTITION_EOF:
                    self._at_end[key] = True
                    continue
                if code in _LOST and key in self._read:
                    self._on_read_error(key, error)
                    continue
                if message.offset() is None or message.offset() < 0:
                    log.warning("Kafka consumer error: %s", error)
                    continue
                value, headers = None, ((CONSUMER_ERROR_HEADER, str(error).encode()),)
            else:
                value, headers = message.value(), tuple(message.headers() or ())
            self._at_end[key] = False
            offset = message.offset()
            self._read[key] = offset + 1
            _, timestamp = message.timestamp()
            self._buffers[key].append(RawMessage(message.topic(), message.partition(),
                                                 offset, timestamp, message.key(),
                                                 value, headers))
        return bool(messages)

    def _drained(self) -> bool:
        ends = self._end_offsets
        if ends is None:
            return False
        return all(self._read[k] >= ends[k] and not self._buffers[k] for k in self._keys)

    def next_awake(self) -> datetime | None:
        return None  # bytewax calls again at once, or after 1 ms when a batch was empty

    def next_batch(self) -> list[RawMessage | OffsetsReset]:
        """Merged messages; never blocks (the whole worker waits while a source does).

        A bounded run (``--until-end``: its input is all written) hands over batches of
        exactly ``batch_size`` messages, the last one excepted, accumulating across
        calls: it then batches exactly as a replay of the same messages with the same
        batch size, and so decides the same (see README, "Determinism"). A live run
        hands over what it has as soon as it has it. An :class:`OffsetsReset` notice
        counts as one of the batch's items.
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
        if self._commit_interval is not None and now >= self._next_commit:
            self._next_commit = now + self._commit_interval
            self._commit(self._offsets)
        if self._held_since is None:
            self._held_since = now
        self._merge_into(pending, force=now - self._held_since >= self._max_wait)
        full = len(pending) >= self._batch_size
        if full or (pending and (not self._strict or self._caught_up())):
            batch = pending[: self._batch_size]
            self._pending = pending[self._batch_size:]
            self._held_since = None
            offsets = self._offsets
            if self._notices:
                self._hand_over_with_notices(batch)
            else:
                for message in batch:  # resume state: only what was handed over
                    offsets[f"{message.topic}:{message.partition}"] = message.offset + 1
            return batch
        return []

    def _hand_over_with_notices(self, batch: list[RawMessage | OffsetsReset]) -> None:
        """The resume state after ``batch``: a notice moves its partition's position."""
        offsets = self._offsets
        for item in batch:
            key = f"{item.topic}:{item.partition}"
            if type(item) is OffsetsReset:
                offsets[key] = item.new_offset
                self._notices -= 1
            else:
                offsets[key] = item.offset + 1

    def _caught_up(self) -> bool:
        """Nothing buffered and every partition at its end: no more input right now."""
        return all(not self._buffers[k] and (self._at_end[k] or self._past_end(k))
                   for k in self._keys)

    def _merge_into(self, out: list[RawMessage | OffsetsReset], force: bool) -> None:
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
            out.append(buffer.popleft())
            if buffer:
                heapq.heappush(heads, (buffer[0].sort_key(), key))
            elif self._live(key):
                blocked = True

    def _live(self, key: str) -> bool:
        """Whether the partition may have more messages than have been read from it."""
        return not self._at_end[key] and not self._past_end(key)

    def _past_end(self, key: str) -> bool:
        return self._end_offsets is not None and self._read[key] >= self._end_offsets[key]

    def snapshot(self) -> dict:
        if STOP.is_set():
            self._stop_epochs += 1
        offsets = dict(self._offsets)
        if self._commit_interval is None:
            if self._last_snapshot is not None:
                self._commit(self._last_snapshot)
            self._last_snapshot = offsets
        return dict(offsets)

    @property
    def epochs_since_stop(self) -> int:
        return self._stop_epochs

    def close(self) -> None:
        if not FAILED:  # a failed run's positions are not progress
            self._commit(self._offsets, asynchronous=False)
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
    group_id
        Consumer group the consumed offsets are committed to (a progress report).
    on_loss
        ``"earliest"`` or ``"fail"``: what to do when a position is no longer on the
        broker (see the module docstring).
    commit_interval
        Seconds between commits of the handed-over offsets; ``None``: commit at each
        snapshot the offsets of the snapshot before (with recovery).
    """

    def __init__(self, config: dict, topics: list[str], *, starting_offset: str = "beginning",
                 batch_size: int = 1000, merge_max_wait_ms: int = 2000, until_end: bool = False,
                 on_stats: Callable[[str], None] | None = None, group_id: str = "esg-leads",
                 on_loss: str = "earliest", commit_interval: float | None = 5.0) -> None:
        if on_loss not in ("earliest", "fail"):
            raise ValueError(f"on_loss must be 'earliest' or 'fail', not {on_loss!r}")
        self.config = config
        self.topics = topics
        self.start = OFFSET_BEGINNING if starting_offset == "beginning" else OFFSET_END
        self.batch_size = batch_size
        self.merge_max_wait_ms = merge_max_wait_ms
        self.until_end = until_end
        self.on_stats = on_stats
        self.group_id = group_id
        self.on_loss = on_loss
        self.commit_interval = commit_interval
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
                                     self.merge_max_wait_ms, self.until_end, self.on_stats,
                                     group_id=self.group_id, on_loss=self.on_loss,
                                     commit_interval=self.commit_interval,
                                     resumed=bool(resume_state))
        self.partitions.append(partition)
        return partition
