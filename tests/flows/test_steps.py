"""The glue in flows/steps.py: shard keys, window phases, the streaming GC policy."""

from __future__ import annotations

import gc
import weakref
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import run_main

from esg_leads.flows.ordering import SOURCE_LANE, Stamped, ordered_builder
from esg_leads.flows.steps import shard_key, streaming_gc, system_clock
from esg_leads.flows.telemetry import Telemetry
from esg_leads.operators.intake import TenantIntake
from esg_leads.schemas.records import InvestorWindow
from esg_leads.schemas.settings import Settings
from tests.operators.test_property_catalog import engagement


def test_shard_key_is_stable_and_bounded() -> None:
    keys = {shard_key("acme", f"inv-{i}", 16) for i in range(1000)}
    assert len(keys) == 16
    assert all(k.startswith("acme/") for k in keys)
    # crc32, not hash(): the same investor maps to the same shard in every process.
    assert shard_key("acme", "inv-7", 16) == f"acme/{zlib.crc32(b'inv-7') % 16:04d}"



def test_streaming_gc_freezes_survivors_and_restores_everything() -> None:
    before = gc.get_threshold()
    callbacks = list(gc.callbacks)
    with streaming_gc():
        assert gc.get_threshold()[0] == 700
        survivors = [[i] for i in range(2000)]  # containers that outlive a young collection
        gc.collect(0)
        # Each survivor is frozen: in no generation the collector scans (gc.get_objects()
        # lists generations 0-2, not the frozen one). Not the freeze count: objects frozen
        # earlier that die meanwhile (anywhere in the process) lower it.
        scanned = {id(o) for o in gc.get_objects()}
        assert gc.get_freeze_count() >= len(survivors)
        assert not [s for s in survivors if id(s) in scanned]
    assert gc.get_threshold() == before
    assert gc.callbacks == callbacks
    assert gc.get_freeze_count() == 0


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector reclaims it


def test_streaming_gc_does_not_walk_the_heap_at_entry_and_garbage_is_reclaimed_after() -> None:
    """Entering does no full collection (it walked the caller's whole heap: 29 % of a
    short replay): garbage already there waits, frozen, and goes once the run ends."""
    gc.disable()  # no automatic young collection may reclaim it before the block
    try:
        garbage = _Node()
        alive = weakref.ref(garbage)
        del garbage
        with streaming_gc():
            assert alive() is not None
    finally:
        gc.enable()
    gc.collect()
    assert alive() is None


def test_streaming_gc_restores_on_error() -> None:
    before = gc.get_threshold()
    try:
        with streaming_gc():
            raise RuntimeError("flow failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


# -------------------------------------------------- wall-clock notifications

class _PausingPartition(StatefulSourcePartition):
    """Hands over ``items`` once, then nothing until ``done`` is set (or 10 s pass)."""

    def __init__(self, items: list, done: threading.Event, ended: threading.Event) -> None:
        self._items, self._done, self._ended = items, done, ended
        self._deadline = time.monotonic() + 10

    def next_batch(self) -> list:
        if self._items:
            items, self._items = self._items, []
            return items
        if self._done.is_set() or time.monotonic() > self._deadline:
            self._ended.set()
            raise StopIteration
        return []

    def snapshot(self) -> None:
        return None


class _PausingSource(FixedPartitionedSource):
    def __init__(self, items: list, done: threading.Event, ended: threading.Event) -> None:
        self._items, self._done, self._ended = items, done, ended

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PausingPartition:
        return _PausingPartition(self._items, self._done, self._ended)


def test_an_idle_tenants_windows_close_on_the_wall_clock_while_the_flow_runs() -> None:
    """bytewax calls the intake back at its ``notify_at``, without any new input."""
    settings = Settings(windows={"length": "PT1S", "allowed_lateness": "PT0S", "stagger": False,
                                 "idle_close_after": "PT0.2S"})
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    items = [engagement(f"e-{i}", start + timedelta(milliseconds=ms))
             for i, ms in enumerate((0, 500, 1200))]
    done, ended, emitted = threading.Event(), threading.Event(), []

    def seen(window: InvestorWindow) -> None:
        emitted.append((window.window_start, window.aggregate.n, ended.is_set()))
        if len(emitted) == 2:
            done.set()

    flow = Dataflow("idle")
    keyed = op.key_on("tenant", op.map(
        "stamp", op.input("in", flow, _PausingSource(items, done, ended)),
        lambda i: Stamped((i.timestamp_ms, i.topic, i.partition, i.offset), SOURCE_LANE, 0, i)),
        lambda s: s.item.tenant)
    windows = op.stateful_batch("intake", keyed, ordered_builder(
        "intake", lambda _key: TenantIntake(settings), lambda _key: frozenset((SOURCE_LANE,)),
        lambda i: i.tenant, Telemetry(), system_clock))
    op.inspect("seen", op.key_rm("unkey", windows),
               lambda _step, s: seen(s.item) if type(s) is Stamped else None)
    run_main(flow)
    # 9:00:00-9:00:01 closes with the event at 9:00:01.2; the next window would
    # wait for an event past 9:00:02, but closes on the wall clock alone (0.8 s
    # later), while the input is still open: ``ended`` is not yet set.
    assert emitted == [(start, 2, False), (start + timedelta(seconds=1), 1, False)]
