"""A dataflow without bytewax's runtime: the same steps, called from a plain Python loop.

Issue 16 asks how close the flow comes to "a plain-loop run of the same operators over
the same input". Hand-writing that loop drifts from the flow as the flow changes (an
earlier one, ``bench/replay_throughput.py``, fed profiles straight to the investor stage
and scored whole batches at once, so it decided differently, and its ratio compared
different work). This one cannot drift: :func:`execute` interprets the very
``Dataflow`` that ``esg-leads replay`` builds — every step, operator object, ordering
buffer and sink — with bytewax's eight core operators (``input``, ``flat_map_batch``,
``branch``, ``merge``, ``redistribute``, ``inspect_debug``, ``stateful_batch``,
``output``) done as plain calls: one worker, each source batch pushed through the steps
in topological order. What it leaves out is bytewax's runtime: its Rust scheduler,
progress tracking and the Python/Rust crossings per step.

``bench/plain_loop.py`` replays one world both ways and prints the ratio. The tests
use it as a second, entirely different scheduler that must decide as bytewax does
(``tests/flows/test_determinism.py``). One worker; no recovery.

>>> from bytewax.dataflow import Dataflow
>>> import bytewax.operators as op
>>> from bytewax.testing import TestingSink, TestingSource
>>> flow, out = Dataflow("sum"), []
>>> keyed = op.key_on("key", op.input("in", flow, TestingSource([1, 2, 3, 4])),
...                   lambda n: "odd" if n % 2 else "even")
>>> op.output("out", op.stateful_map("total", keyed, lambda s, n: ((s or 0) + n,) * 2), TestingSink(out))
>>> execute(flow)
>>> out
[('odd', 1), ('even', 2), ('odd', 4), ('even', 6)]
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, FixedPartitionedSource
from bytewax.outputs import DynamicSink, FixedPartitionedSink

CORE = frozenset(("input", "flat_map_batch", "branch", "merge", "redistribute",
                  "inspect_debug", "stateful_batch", "output"))


def _core_steps(step: Any) -> list:
    """The core operators under ``step``, in the order they were built (ups first)."""
    if _kind(step) in CORE and not step.substeps:
        return [step]
    return [core for sub in step.substeps for core in _core_steps(sub)]


def _kind(step: Any) -> str:
    return type(step).__name__  # (``step_name`` is the name the flow gave the step)


def _ups(step: Any) -> list[str]:
    if _kind(step) == "merge":
        return list(step.ups.stream_ids.values())
    return [step.up.stream_id] if "up" in step.ups_names else []


class _Keyed:
    """One ``stateful_batch`` step: a logic per key, as bytewax keeps them."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.logics: dict[str, Any] = {}
        self.wake: dict[str, datetime] = {}

    def _after(self, key: str, logic: Any, result: tuple, out: list) -> None:
        emitted, discard = result
        out.extend((key, value) for value in emitted)
        if discard:
            self.logics.pop(key, None)
            self.wake.pop(key, None)
            return
        at = logic.notify_at()
        if at is None:
            self.wake.pop(key, None)
        else:
            self.wake[key] = at

    def batch(self, items: list, out: list) -> None:
        by_key: dict[str, list] = defaultdict(list)
        for key, value in items:
            by_key[key].append(value)
        for key, values in by_key.items():
            logic = self.logics.get(key)
            if logic is None:
                logic = self.logics[key] = self.step.builder(None)
            self._after(key, logic, logic.on_batch(values), out)

    def notify(self, now: datetime, out: list) -> None:
        for key in [k for k, at in self.wake.items() if at <= now]:
            logic = self.logics[key]
            self._after(key, logic, logic.on_notify(), out)

    def eof(self, out: list) -> None:
        for key, logic in list(self.logics.items()):
            self._after(key, logic, logic.on_eof(), out)


class _Output:
    """One ``output`` step: its sink's partitions, built on first use."""

    def __init__(self, step: Any) -> None:
        self.sink = step.sink
        self.step_id = step.step_id
        self.parts: dict[str, Any] = {}
        if isinstance(self.sink, FixedPartitionedSink):
            self.names = sorted(self.sink.list_parts())
        elif not isinstance(self.sink, DynamicSink):
            raise TypeError(f"{self.step_id}: unknown sink {type(self.sink).__name__}")

    def _part(self, name: str) -> Any:
        part = self.parts.get(name)
        if part is None:
            part = self.parts[name] = (
                self.sink.build_part(self.step_id, name, None)
                if isinstance(self.sink, FixedPartitionedSink)
                else self.sink.build(self.step_id, 0, 1))
        return part

    def write(self, items: list) -> None:
        if not isinstance(self.sink, FixedPartitionedSink):
            self._part("").write_batch(items)
            return
        routed: dict[str, list] = defaultdict(list)
        for key, value in items:
            routed[self.names[self.sink.part_fn(key) % len(self.names)]].append(value)
        for name, values in routed.items():
            self._part(name).write_batch(values)

    def close(self) -> None:
        for part in self.parts.values():
            part.close()


def _partitions(step: Any) -> list:
    source = step.source
    if isinstance(source, FixedPartitionedSource):
        return [source.build_part(step.step_id, name, None) for name in source.list_parts()]
    if isinstance(source, DynamicSource):
        return [source.build(step.step_id, 0, 1)]
    raise TypeError(f"{step.step_id}: unknown source {type(source).__name__}")


def execute(flow: Dataflow, epoch_interval: timedelta | None = None) -> None:
    """Run ``flow`` to the end of its input in this thread, without bytewax's runtime.

    Same signature as ``bytewax.testing.run_main`` (``epoch_interval`` is ignored:
    nothing is snapshotted). Each source batch goes through every step in the order
    the steps were built; at the end of the input every keyed step's ``on_eof`` runs,
    upstream steps first, as bytewax ends a dataflow.
    """
    del epoch_interval
    steps = [core for sub in flow.substeps for core in _core_steps(sub)]
    consumers: dict[str, list] = defaultdict(list)
    for step in steps:
        for stream in _ups(step):
            consumers[stream].append(step)
    keyed = {id(s): _Keyed(s) for s in steps if _kind(s) == "stateful_batch"}
    outputs = {id(s): _Output(s) for s in steps if _kind(s) == "output"}
    inputs = [(s, part) for s in steps if _kind(s) == "input" for part in _partitions(s)]
    pending: dict[int, list] = defaultdict(list)

    def send(stream: str, items: list) -> None:
        if items:
            for step in consumers.get(stream, ()):
                pending[id(step)].extend(items)

    def run_steps(eof: bool) -> None:
        now = datetime.now(timezone.utc)
        for step in steps:
            items = pending.pop(id(step), [])
            name = _kind(step)
            if name == "input":
                continue
            if name == "output":
                if items:
                    outputs[id(step)].write(items)
                continue
            if name == "stateful_batch":
                out: list = []
                state = keyed[id(step)]
                if items:
                    state.batch(items, out)
                if state.wake:
                    state.notify(now, out)
                if eof:
                    state.eof(out)
                send(step.down.stream_id, out)
            elif not items:
                continue
            elif name == "flat_map_batch":
                send(step.down.stream_id, list(step.mapper(items)))
            elif name == "branch":
                verdicts = [(item, step.predicate(item)) for item in items]
                send(step.trues.stream_id, [i for i, yes in verdicts if yes])
                send(step.falses.stream_id, [i for i, yes in verdicts if not yes])
            elif name == "inspect_debug":
                for item in items:
                    step.inspector(step.step_id, item, 1, 0)
                send(step.down.stream_id, items)
            else:  # merge, redistribute: one worker, nothing to move
                send(step.down.stream_id, items)

    live = list(inputs)
    while live:
        for entry in list(live):
            step, part = entry
            try:
                batch = part.next_batch()
            except StopIteration:
                part.close()
                live.remove(entry)
                continue
            send(step.down.stream_id, list(batch))
            awake = part.next_awake()
            if awake is not None:
                time.sleep(max(0.0, (awake - datetime.now(timezone.utc)).total_seconds()))
        run_steps(eof=False)
    run_steps(eof=True)
    for output in outputs.values():
        output.close()
