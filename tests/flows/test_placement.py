"""Key placement (flows/placement.py): the worker bytewax runs a key on is the one
:func:`worker_of` predicts, :func:`placed` names land where they are sent, and the
audit sink's partition n is written by worker n."""

from __future__ import annotations

import itertools
import threading

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from bytewax.run import cli_main
from bytewax.testing import TestingSource
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors.parquet_sink import AuditSink
from esg_leads.flows.placement import READER_SHARE, assign_tenants, placed, unplaced, worker_of

KEYS = [f"k{i}" for i in range(20)] + ["acme-capital", "acme-capital/0003", "cityline-im/0015",
                                       "global", "ümlaut/0001", "a-much-longer-tenant-name/0007"]


class _Where(DynamicSink):
    """Records the worker index each (unkeyed, so not moved) item reaches."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        sink = self

        class Part(StatelessSinkPartition):
            def write_batch(self, items: list) -> None:
                with sink.lock:
                    sink.seen.update((key, worker_index) for key in items)

        return Part()


def bytewax_workers(keys: list[str], workers: int) -> dict[str, int]:
    where = _Where()
    flow = Dataflow("placement_probe")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    # A keyed step runs on the key's worker; its output stays there, unkeyed, to the sink.
    ran = op.stateful_map("on_key_worker", keyed, lambda state, k: (state, k))
    op.output("out", op.key_rm("unkey", ran), where)
    cli_main(flow, workers_per_process=workers)
    return where.seen


def test_the_predicted_worker_is_the_one_bytewax_routes_a_key_to() -> None:
    for workers in (2, 3, 4):
        assert bytewax_workers(KEYS, workers) == {k: worker_of(k, workers) for k in KEYS}


def test_placed_keys_run_on_the_chosen_worker() -> None:
    keys = [placed(k, i % 3, 3) for i, k in enumerate(KEYS)]
    assert bytewax_workers(keys, 3) == {k: i % 3 for i, k in enumerate(keys)}


@given(st.text(st.characters(blacklist_characters="~", blacklist_categories=("Cs",)),
               min_size=1, max_size=40), st.integers(1, 64), st.data())
def test_a_placed_key_names_its_key_and_hashes_to_its_worker(key: str, workers: int,
                                                             data: st.DataObject) -> None:
    worker = data.draw(st.integers(0, workers - 1))
    name = placed(key, worker, workers)
    assert unplaced(name) == key
    assert worker_of(name, workers) == worker


class _Probe(FixedPartitionedSink):
    """The audit sink's partitions and routing, recording which thread writes what."""

    def __init__(self, workers: int) -> None:
        self.audit = AuditSink("unused", partitions=workers)
        self.writes: list[tuple[str, int, int]] = []  # (partition, writer thread, producer thread)
        self.lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return self.audit.list_parts()

    def part_fn(self, item_key: str) -> int:
        return self.audit.part_fn(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: object) -> StatefulSinkPartition:
        sink = self

        class Part(StatefulSinkPartition):
            def write_batch(self, items: list) -> None:
                with sink.lock:
                    sink.writes.extend((for_part, threading.get_ident(), t) for t in items)

            def snapshot(self) -> None:
                return None

        return Part()


def test_the_audit_sinks_partition_n_is_written_on_worker_n() -> None:
    """The flow keys a tenant's audit rows by its worker's number (flows/pipeline.py):
    they must be written by that very worker, not cross to another process."""
    workers = 3
    probe = _Probe(workers)
    flow = Dataflow("audit_probe")
    keys = [placed(f"tenant-{i}", i % workers, workers) for i in range(9)]
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    # On the key's worker: the row, keyed by that worker's number, with the thread it ran on.
    rows = op.stateful_map("on_key_worker", keyed, lambda state, k: (
        state, (str(keys.index(k) % workers), threading.get_ident())))
    op.output("audit", op.key_rm("unkey", rows), probe)
    cli_main(flow, workers_per_process=workers)
    assert len(probe.writes) == len(keys)
    assert {part for part, _, _ in probe.writes} == set(probe.list_parts())
    assert all(writer == producer for _, writer, producer in probe.writes)


def _busiest(choice: dict[str, int], weights: dict[str, float], workers: int) -> float:
    total = sum(weights.values())
    loads = [READER_SHARE] + [0.0] * (workers - 1)
    for tenant, worker in choice.items():
        loads[worker] += (1 - READER_SHARE) * weights[tenant] / total
    return max(loads)


@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), st.integers(1, 1000),
                       min_size=1, max_size=6), st.integers(1, 4))
def test_tenants_are_placed_to_unload_the_busiest_worker(weights: dict[str, int],
                                                         workers: int) -> None:
    """Every tenant gets a worker of the cluster, and no other assignment has a less
    loaded busiest worker (checked against every assignment)."""
    choice = assign_tenants(weights, workers, weights)
    assert set(choice) == set(weights) and set(choice.values()) <= set(range(workers))
    names = sorted(weights)
    best = min(_busiest(dict(zip(names, c, strict=True)), weights, workers)
               for c in itertools.product(range(workers), repeat=len(names)))
    assert abs(_busiest(choice, weights, workers) - best) < 1e-9
    assert assign_tenants(list(reversed(names)), workers, weights) == choice


def test_many_tenants_are_spread_by_weight_without_trying_every_assignment() -> None:
    weights = {f"t{i:02d}": 1 + (i * 37) % 11 for i in range(30)}
    choice = assign_tenants(weights, 4, weights)
    # All work spread evenly, worker 0's reading included: a quarter each.
    assert _busiest(choice, weights, 4) < 0.25 * 1.05
    assert sum(w for t, w in weights.items() if choice[t] == 0) < min(
        sum(w for t, w in weights.items() if choice[t] == k) for k in (1, 2, 3))


@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), st.integers(1, 1000),
                       min_size=1, max_size=5), st.integers(2, 3), st.integers(1, 3))
def test_tenants_are_spread_over_processes_first(weights: dict[str, int], processes: int,
                                                 per_process: int) -> None:
    """Workers of one process share its interpreter lock: with each worker reading its
    own tenants (no reader share), no assignment has a less loaded busiest process."""
    workers = processes * per_process
    choice = assign_tenants(weights, workers, weights, reader=0.0, processes=processes)
    names = sorted(weights)

    def busiest_process(c: dict[str, int]) -> int:
        loads = [0] * processes
        for tenant, worker in c.items():
            loads[worker // per_process] += weights[tenant]
        return max(loads)

    assert busiest_process(choice) == min(
        busiest_process(dict(zip(names, c, strict=True)))
        for c in itertools.product(range(workers), repeat=len(names)))
