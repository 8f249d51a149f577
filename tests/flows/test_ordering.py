"""flows/ordering.py: snapshots only when something will read them; positions in one call."""

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


class Positions(Counter):
    """An operator that takes a batch's positions in one call (as the scorer does)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[list]] = []

    def process_positions(self, groups: list[list], now) -> list[list]:  # noqa: ANN001
        self.calls.append(groups)
        return [[f"{g[0]}..{g[-1]}:{len(g)}"] * (len(groups) - k) for k, g in enumerate(groups)]


def test_an_operator_with_process_positions_gets_every_position_in_order_in_one_call():
    operator = Positions()
    build = ordered_builder("pos", lambda _key: operator, lambda _key: frozenset({SOURCE_LANE}),
                            lambda _item: "k", Telemetry(), system_clock, durable=False)
    step = build(None)
    # Items 0-1 derive from input position 0, 2 from position 1, 3-5 from position 2.
    where = [0, 0, 1, 2, 2, 2]
    out, _ = step.on_batch([Stamped((p, "t", 0, p), SOURCE_LANE, i, i) for i, p in enumerate(where)])
    assert operator.calls == [[[0, 1], [2], [3, 4, 5]]]
    stamped = [(s.base[0], s.seq, s.item) for s in out if isinstance(s, Stamped)]
    # Each position's results keep its position, numbered on in order (3, 2 and 1 of them).
    assert stamped == [(0, 0, "0..1:2"), (0, 1, "0..1:2"), (0, 2, "0..1:2"),
                       (1, 3, "2..2:1"), (1, 4, "2..2:1"), (2, 5, "3..5:3")]
