"""Deterministic order through every keyed step: decisions that depend on the input alone.

bytewax delivers a keyed step's input in an order that depends on how the stream was
cut into batches and spread over workers: a step fed by several others (scoring is
fed by every investor shard of its tenant and by the global model; the lifecycle by
its investor shard and by scoring) sees their outputs interleaved as they happen to
arrive. A score depended on whether a label arrived before or after a window close,
so the same recording gave different leads at batch size 999 and 1000.

The fix is the usual stream-processing one, watermarks, with the merged input's own
total order as the clock:

* Every input message has a *position*: its replay order key ``(timestamp_ms, topic,
  partition, offset)`` (:meth:`schemas.records.RawMessage.sort_key`). Everything a
  step derives from a message carries that position as its ``base``
  (:class:`Stamped`), with the sending step's *lane* and a sequence number.
* The source emits a :class:`Tick` after its batches: "every message up to this
  position has been sent". Each keyed step forwards the ticks it has received, after
  the items they cover, to every key of the steps it feeds (:func:`route`). Channels
  between two workers are FIFO, and items and ticks of a lane travel the same stream.
* A step fed by one lane (the intake, the investor shards) processes items as they
  come: its input order is its lane's order. A step fed by several lanes buffers
  items until every lane has ticked past them, then processes them in ``(base, lane,
  seq)`` order (:class:`OrderedLogic`). At the end of the input everything left is
  processed in that order.

So each step's input sequence is a function of the input messages alone, and with
it every decision: batch size, worker and process count only change *when* items
are released, not their order. What a step derives from one message is processed in
one call (vectorised scoring of a group of windows closed by one event is kept).
The only inputs outside this order are live-only: items emitted on a wall-clock
notification (``windows.idle_close_after``) and, in a live run, a message merged
behind its position because its partition lagged (``kafka.live_merge_wait_ms``).

>>> tick = Tick((5, "t", 0, 9), "source")
>>> Stamped((5, "t", 0, 9), "source", 0, "event") < Stamped((5, "t", 0, 10), "source", 0, "x")
True
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import KeyedStream, StatefulBatchLogic

from esg_leads.flows.exchange import durable_dumps
from esg_leads.flows.steps import Clock
from esg_leads.flows.telemetry import Telemetry
from esg_leads.schemas.records import Position

#: The position of what is emitted once the input has ended (windows still open).
END: Position = (1 << 62, "", 0, 0)
SOURCE_LANE = "source"


class Tick(NamedTuple):
    """A lane's promise: nothing more at or before ``base`` will come from ``lane``."""

    base: Position
    lane: str
    #: The key the tick is routed to (set by :func:`route`).
    dest: str = ""


class Stamped(NamedTuple):
    """An item with the position of the input message it derives from."""

    base: Position
    lane: str
    seq: int
    item: Any


def unstamp(value: Any) -> Any:
    return value.item if type(value) is Stamped else value


# --------------------------------------------------------------------------- source


class _TickingPartition(StatefulSourcePartition):
    def __init__(self, inner: StatefulSourcePartition, interval_s: float,
                 lane: str = SOURCE_LANE) -> None:
        self._inner = inner
        self._lane = lane
        self._interval = interval_s
        self._last_tick = 0.0
        self._pending: Position | None = None  # covered by no tick yet
        self._high: Position | None = None

    def next_batch(self) -> list:
        batch = list(self._inner.next_batch())
        keys = [m.sort_key() for m in batch if hasattr(m, "sort_key")]  # not OffsetsReset
        if keys:
            top = max(keys)
            if self._high is None or top > self._high:
                self._high = top
            self._pending = self._high
        if self._pending is None:
            return batch
        now = time.monotonic()
        if not batch or now - self._last_tick >= self._interval:
            batch.append(Tick(self._pending, self._lane))
            self._pending, self._last_tick = None, now
        return batch

    def next_awake(self):  # noqa: ANN201 - bytewax protocol
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class TickingSource(FixedPartitionedSource):
    """``source`` with a :class:`Tick` after its batches (at most one per ``interval_s``
    of wall time while batches keep coming, and at once when one comes back empty).

    The interval only changes when items are released downstream, never their order:
    a live run sets a few milliseconds, so that ticks (which fan out to every key)
    cost little at high message rates; a replay ticks after every batch.

    ``lane_of`` names a partition's lane (default: every partition ticks as
    ``source``): partitions that each read their own keys' messages tick apart, so a
    key fed by one of them waits for no other (see :mod:`flows.reading`).
    """

    def __init__(self, source: FixedPartitionedSource, interval_s: float = 0.0,
                 lane_of: Callable[[str], str] | None = None) -> None:
        self.source = source
        self.interval_s = interval_s
        self.lane_of = lane_of

    def list_parts(self) -> list[str]:
        return self.source.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _TickingPartition:
        inner = self.source.build_part(step_id, for_part, resume_state)
        lane = self.lane_of(for_part) if self.lane_of is not None else SOURCE_LANE
        return _TickingPartition(inner, self.interval_s, lane)


# --------------------------------------------------------------------------- routing


def route(step_id: str, up: Stream, items: Callable[[Any], Iterable[tuple[str, Any]]],
          tick_keys: Callable[[str], Iterable[str]]) -> KeyedStream:
    """Key ``up``'s stamped items for the next step and fan its ticks out to that step's keys.

    ``items(item)`` gives ``(key, item)`` pairs (none: not for this step; several: a
    broadcast); ``tick_keys(lane)`` the keys a tick from ``lane`` must reach. One step
    for both, so that a lane's items and ticks stay in one FIFO stream.
    """
    def fan(batch: list) -> list:
        out = []
        for value in batch:
            if type(value) is Tick:
                out.extend((key, Tick(value.base, value.lane, key)) for key in tick_keys(value.lane))
            elif type(value) is Stamped:
                out.extend((key, value._replace(item=item)) for key, item in items(value.item))
        return out

    return op.flat_map_batch(step_id, up, fan)


# ----------------------------------------------------------------------------- steps


class OrderedState:
    """What a keyed step snapshots: its operator, and the items it holds back."""

    def __init__(self, operator: Any, key: str) -> None:
        self.operator = operator
        self.key = key
        self.marks: dict[str, Position] = {}  # lane -> latest tick
        self.held: list[Stamped] = []
        self.forwarded: Position | None = None
        self.seq = 0


class OrderedLogic(StatefulBatchLogic):
    """Runs one operator object per key, fed in the deterministic order described above.

    ``lanes`` are the lanes that feed this key. With one lane items are processed as
    they arrive; with several they wait for every lane's tick. The operator's
    ``process(items, now)`` is called once per input position, or, for an operator
    that has it, ``process_positions(groups, now)`` once with every position's items
    (one list per position, in order; it returns one result list per position).
    """

    def __init__(self, step: str, state: OrderedState | None, factory: Callable[[str], Any],
                 lanes: Callable[[str], frozenset[str]], key_of: Callable[[Any], str],
                 telemetry: Telemetry, clock: Clock, durable: bool = True) -> None:
        self._step = step
        self._durable = durable
        self._state = state
        self._factory = factory
        self._lanes_of = lanes
        self._key_of = key_of
        self._lanes: frozenset[str] | None = None
        self._telemetry = telemetry
        self._clock = clock

    @property
    def operator(self) -> Any:
        return self._state.operator if self._state is not None else None

    def _ensure(self, first: Any) -> OrderedState:
        if self._state is None:
            key = first.dest if type(first) is Tick else self._key_of(first.item)
            self._state = OrderedState(self._factory(key), key)
        if self._lanes is None:
            self._lanes = self._lanes_of(self._state.key)
        return self._state

    def on_batch(self, values: list) -> tuple[list, bool]:
        state = self._ensure(values[0])
        started = time.perf_counter()
        now = self._clock()
        out: list = []
        if len(self._lanes) == 1:  # type: ignore[arg-type]
            run: list[Stamped] = []
            for value in values:
                if type(value) is Tick:
                    state.marks[value.lane] = value.base
                else:
                    run.append(value)
            self._process(run, now, out)
            mark = state.marks.get(next(iter(self._lanes)))  # type: ignore[arg-type]
        else:
            for value in values:
                if type(value) is Tick:
                    if value.base > state.marks.get(value.lane, value.base[:0]):
                        state.marks[value.lane] = value.base
                else:
                    state.held.append(value)
            mark = self._watermark()
            if mark is not None and state.held:
                state.held.sort()
                cut = 0
                while cut < len(state.held) and state.held[cut].base <= mark:
                    cut += 1
                ready, state.held = state.held[:cut], state.held[cut:]
                self._process(ready, now, out)
        if mark is not None and (state.forwarded is None or mark > state.forwarded):
            state.forwarded = mark
            out.append(Tick(mark, f"{self._step}:{state.key}"))
        self._report(started)
        return out, StatefulBatchLogic.RETAIN

    def _watermark(self) -> Position | None:
        marks = self._state.marks  # type: ignore[union-attr]
        if len(marks) < len(self._lanes):  # type: ignore[arg-type]
            return None
        return min(marks[lane] for lane in self._lanes)  # type: ignore[union-attr]

    def _process(self, items: list[Stamped], now: datetime, out: list) -> None:
        """Each position's items in one ``process`` call (or all positions in one
        ``process_positions`` call, for an operator that has it); outputs keep the position."""
        state = self._state
        bases, groups = [], []
        start = 0
        while start < len(items):
            base = items[start].base
            end = start + 1
            while end < len(items) and items[end].base == base:
                end += 1
            bases.append(base)
            groups.append([s.item for s in items[start:end]])
            start = end
        operator = state.operator  # type: ignore[union-attr]
        many = getattr(operator, "process_positions", None)
        if many is not None and len(groups) > 1:
            for base, results in zip(bases, many(groups, now), strict=True):
                self._stamp(base, results, out)
        else:
            for base, group in zip(bases, groups):
                self._stamp(base, operator.process(group, now), out)

    def _stamp(self, base: Position, results: list, out: list) -> None:
        state = self._state
        lane = f"{self._step}:{state.key}"  # type: ignore[union-attr]
        seq = state.seq  # type: ignore[union-attr]
        for result in results:
            out.append(Stamped(base, lane, seq, result))
            seq += 1
        state.seq = seq  # type: ignore[union-attr]

    def _report(self, started: float) -> None:
        operator = self._state.operator  # type: ignore[union-attr]
        if not hasattr(operator, "stage_times"):
            self._telemetry.stage_batch(self._step, 1, time.perf_counter() - started)
        self._telemetry.drain(operator)

    def notify_at(self) -> datetime | None:
        notify_at = getattr(self.operator, "notify_at", None)
        return notify_at() if notify_at is not None else None

    def on_notify(self) -> tuple[list, bool]:
        """Live only: a wall-clock callback (idle windows). Its outputs take the latest
        position this step has seen; they are the one input outside the order."""
        state = self._state
        out: list = []
        self._stamp(state.forwarded or END[:0], state.operator.on_notify(self._clock()), out)  # type: ignore[union-attr]
        self._telemetry.drain(state.operator)  # type: ignore[union-attr]
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list, bool]:
        """The input has ended: what was held back, in order, then the operator's flush."""
        state = self._state
        if state is None:
            return [], StatefulBatchLogic.RETAIN
        out: list = []
        now = self._clock()
        if state.held:
            held, state.held = sorted(state.held), []
            self._process(held, now, out)
        flush = getattr(state.operator, "flush", None)
        if flush is not None:
            self._stamp(END, flush(now), out)
        self._telemetry.drain(state.operator)
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        # bytewax snapshots every key at the end of the input even without recovery:
        # pickling all state there was 6 % of a replay's time, for nobody to read.
        return durable_dumps(self._state) if self._durable else None


def ordered_builder(step: str, factory: Callable[[str], Any], lanes: Callable[[str], frozenset[str]],
                    key_of: Callable[[Any], str], telemetry: Telemetry, clock: Clock,
                    restore: Callable[[Any], Any] | None = None, durable: bool = True,
                    ) -> Callable[[bytes | None], OrderedLogic]:
    """A bytewax ``builder`` that restores the step from its snapshot, if any.

    ``durable=False`` (no recovery store) makes snapshots free: nothing would read them.

    ``restore`` turns an unpickled operator into the operator to run (steps whose
    state changed shape between versions, or that re-read current settings).
    A snapshot written before this module existed is a bare operator; it resumes
    with nothing held back (the key is then learnt from its first input).
    """

    def build(resume: bytes | None) -> OrderedLogic:
        state = pickle.loads(resume) if resume is not None else None
        if state is not None and not isinstance(state, OrderedState):
            state = _Legacy(state)
        if state is not None and restore is not None:
            state.operator = restore(state.operator)
        logic = OrderedLogic(step, None, factory, lanes, key_of, telemetry, clock, durable)
        if isinstance(state, _Legacy):
            logic._factory = lambda _key, kept=state.operator: kept  # noqa: SLF001
        else:
            logic._state = state  # noqa: SLF001
        return logic

    return build


class _Legacy:
    """A pre-ordering snapshot: just the operator."""

    def __init__(self, operator: Any) -> None:
        self.operator = operator
