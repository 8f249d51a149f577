"""flows/ordering.py: snapshots only when something will read them."""

from __future__ import annotations

import pickle

from esg_leads.flows.ordering import SOURCE_LANE, Stamped, ordered_builder
from esg_leads.flows.steps import system_clock
from esg_leads.flows.telemetry import Telemetry


class Counter:
    """A tiny operator: counts what it saw."""

    def __init__(self) -> None:
        self.seen = 0

    def process(self, items: list, now) -> list:  # noqa: ANN001 - a clock's datetime
        self.seen += len(items)
        return [self.seen]


def logic(durable: bool, resume: bytes | None = None):
    build = ordered_builder("count", lambda _key: Counter(), lambda _key: frozenset({SOURCE_LANE}),
                            lambda _item: "k", Telemetry(), system_clock, durable=durable)
    return build(resume)


def feed(step, n: int) -> list:
    out, _ = step.on_batch([Stamped((i, "t", 0, i), SOURCE_LANE, 0, i) for i in range(n)])
    return [s.item for s in out]


def test_without_a_recovery_store_a_snapshot_costs_nothing():
    step = logic(durable=False)
    assert feed(step, 3)[-1] == 3
    assert step.snapshot() is None


def test_with_one_the_snapshot_resumes_the_state():
    step = logic(durable=True)
    feed(step, 3)
    snapshot = step.snapshot()
    assert isinstance(snapshot, bytes) and pickle.loads(snapshot).operator.seen == 3
    resumed = logic(durable=True, resume=snapshot)
    assert feed(resumed, 2)[-1] == 5
