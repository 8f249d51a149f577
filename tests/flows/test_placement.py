"""Key placement (flows/placement.py): the worker bytewax runs a key on is the one
:func:`worker_of` predicts, and :func:`placed` names land where they are sent."""

from __future__ import annotations

import threading

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main
from bytewax.testing import TestingSource
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.flows.placement import placed, unplaced, worker_of

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
