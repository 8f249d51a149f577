"""Glue between bytewax and the plain-Python operators: keys, clocks, the GC policy.

Nothing here decides anything about a lead. The keyed steps themselves run in
:mod:`flows.ordering`.
"""

from __future__ import annotations

import gc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Protocol

UTC_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Clock = Callable[[], datetime]


@contextmanager
def streaming_gc() -> Iterator[None]:
    """Keep CPython's cyclic GC from pausing the flow, for the duration of a run.

    Operator state holds millions of small objects that live for the whole run.
    Left alone, the generational collector keeps re-walking them: with default
    thresholds that cost ~30% of replay time; with a large young generation it
    cost 35-110 ms per young collection (measured: a young object's traversal
    touches the old state it points into, one cache miss each), the longest
    pauses of a live run. Instead: freeze what exists at start, collect the young
    generation at CPython's default threshold (pauses p99 ~7 ms, max ~12 ms on
    the 167k-event bench world, and less GC time in total than large young
    generations), and freeze what survives each young collection, so nothing is
    ever scanned twice. The cost: a reference cycle alive at a young collection
    is not reclaimed until the run ends, even once it is garbage. The flow's only
    such garbage is the dataflow definition itself (measured on replays, also
    with bad input: unfreezing and collecting afterwards found nothing else);
    ``esg_leads_gc_frozen_objects`` shows it on live runs, where it should level
    off with the state. On exit thresholds and callbacks are restored and every
    object is unfrozen (also any frozen before). Tuned on CPython 3.11's
    generational collector.

    No full collection before the first freeze: it walked the whole heap of the calling
    process, the flow's share of a short run (29 % of a 42-message replay's CPU; more in
    a process with a larger heap, such as a test worker). Garbage already there is frozen
    with the rest and reclaimed after the run, once unfrozen.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(700, 10, 10)
    gc.callbacks.append(_freeze_survivors)
    try:
        yield
    finally:
        gc.callbacks.remove(_freeze_survivors)
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 0:
        gc.freeze()


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def shard_key(tenant: str, investor_id: str, shards: int) -> str:
    """``tenant/shard`` key of an investor; crc32 so it is stable across processes."""
    return f"{tenant}/{zlib.crc32(investor_id.encode()) % shards:04d}"


class Operator(Protocol):
    """What an operator object offers to a keyed step (see :mod:`flows.ordering`).

    It may also offer ``flush(now) -> list``: what to emit when the input ends
    (e.g. the windows still open at the end of a recording); ``notify_at() ->
    datetime | None`` and ``on_notify(now) -> list``: a wall-clock time to be called
    back at without input, and what to emit then; and ``stage_times``, its own
    per-agent timings, which then replace the step's.
    """

    def process(self, items: list, now: datetime) -> list: ...
