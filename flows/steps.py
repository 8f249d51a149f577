"""Glue between bytewax and the plain-Python operators: keys, adapters, clocks.

Nothing here decides anything about a lead; it only says which operator object
runs under which key and how its state is snapshotted.
"""

from __future__ import annotations

import gc
import pickle
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from bytewax.operators import StatefulBatchLogic

from flows.telemetry import Telemetry

UTC_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Clock = Callable[[], datetime]


def tune_gc() -> None:
    """Stop CPython's cyclic GC from rescanning the flow's long-lived state.

    Operator state holds millions of small objects that live for the whole run;
    with default thresholds the generational collector keeps re-walking them,
    which cost ~30% of replay time (bench/replay_throughput.py). Freezing what
    exists at start-up and collecting the young generation 100x less often keeps
    collection for the garbage it is meant for. State contains no reference cycles
    of note, and gen-2 collections still run.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(70_000, 50, 100)


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def shard_key(tenant: str, investor_id: str, shards: int) -> str:
    """``tenant/shard`` key of an investor; crc32 so it is stable across processes."""
    return f"{tenant}/{zlib.crc32(investor_id.encode()) % shards:04d}"


def window_phases(length: timedelta, stagger: bool) -> Callable[[str], timedelta]:
    """Phase of each window key: a stable fraction of the window length (or zero)."""
    cache: dict[str, timedelta] = {}

    def phase(key: str) -> timedelta:
        offset = cache.get(key)
        if offset is None:
            fraction = (zlib.crc32(key.encode()) % 10_000) / 10_000 if stagger else 0.0
            offset = cache[key] = timedelta(microseconds=int(length / timedelta(microseconds=1)
                                                               * fraction))
        return offset

    return phase


class Operator(Protocol):
    """What an operator object offers to a keyed step."""

    def process(self, items: list, now: datetime) -> list: ...


class OperatorLogic(StatefulBatchLogic):
    """Runs one operator object per key; its snapshot is the pickled object.

    Snapshots are bytes, hence immutable, as bytewax requires of them.
    """

    def __init__(self, step: str, state: Operator | None, factory: Callable[[Any], Operator],
                 telemetry: Telemetry, clock: Clock) -> None:
        self._step = step
        self._state = state
        self._factory = factory
        self._telemetry = telemetry
        self._clock = clock

    def on_batch(self, values: list) -> tuple[list, bool]:
        if self._state is None:
            self._state = self._factory(values[0])
        started = time.perf_counter()
        out = self._state.process(values, self._clock())
        self._telemetry.stage_batch(self._step, len(values), time.perf_counter() - started)
        self._telemetry.drain(self._state)
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self._state, protocol=pickle.HIGHEST_PROTOCOL)


def operator_builder(step: str, factory: Callable[[Any], Operator], telemetry: Telemetry,
                     clock: Clock) -> Callable[[bytes | None], OperatorLogic]:
    """A bytewax ``builder`` that restores the operator from its snapshot, if any."""

    def build(resume: bytes | None) -> OperatorLogic:
        state = pickle.loads(resume) if resume is not None else None
        return OperatorLogic(step, state, factory, telemetry, clock)

    return build
