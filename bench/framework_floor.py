"""The per-event floor under one bytewax worker, before any business logic.

    python bench/framework_floor.py [--events 200000]

Times, per event, on this machine:

1. strict decoding of an engagement (pydantic ``model_validate_json``), which every
   input needs before anything can be decided about it;
2. bytewax's ``fold_window`` with an ``EventClock`` (what the flow used before its own
   per-tenant window operator, ``operators.investor_window.InvestorWindows``),
   folding a counter only, for 3, 48 and 192 keys (tenants, and tenants x shards);
3. a bytewax ``map`` step that does nothing, i.e. the cost of one more step.

A throughput goal of N events/s leaves 1e6 / N microseconds per event for all of
them plus scoring, lifecycle and outputs; this script shows how much of that the
floor already takes.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from esg_leads.schemas.inputs import Engagement

ALIGN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def decode_floor(n: int) -> float:
    payloads = [orjson.dumps({
        "tenant": "acme-capital", "event_id": f"e-{i}", "event_time": "2026-03-02T10:00:00Z",
        "source": "web", "investor_id": f"inv-{i % 5000}", "action": "property_view",
        "channel": "web", "property_id": f"p-{i % 700}", "duration_s": 31.5}) for i in range(n)]
    validate = Engagement.model_validate_json
    started = time.perf_counter()
    for payload in payloads:
        validate(payload)
    return (time.perf_counter() - started) / n * 1e6


def window_floor(n: int, keys: int, batch: int = 500) -> float:
    rng = random.Random(1)
    at = ALIGN
    items = []
    for _ in range(n):
        at += timedelta(milliseconds=rng.randrange(0, 4))
        items.append((f"k{rng.randrange(keys)}", at))
    flow = Dataflow("window_floor")
    stream = op.input("in", flow, TestingSource(items, batch_size=batch))
    windows = win.fold_window(
        "w", stream,
        win.EventClock(lambda ts: ts, wait_for_system_duration=timedelta(seconds=1),
                       now_getter=lambda: ALIGN, to_system_utc=lambda _: None),
        win.TumblingWindower(length=timedelta(seconds=10), align_to=ALIGN),
        lambda: 0, lambda acc, _ts: acc + 1, lambda a, b: a + b, ordered=False)
    out: list = []
    op.output("out", windows.down, TestingSink(out))
    started = time.perf_counter()
    run_main(flow)
    seconds = time.perf_counter() - started
    assert sum(count for _, (_, count) in out) == n
    return seconds / n * 1e6


def step_floor(n: int, steps: int, batch: int = 500) -> float:
    flow = Dataflow("step_floor")
    stream = op.input("in", flow, TestingSource(range(n), batch_size=batch))
    for i in range(steps):
        stream = op.map(f"m{i}", stream, lambda x: x)
    out: list = []
    op.output("out", stream, TestingSink(out))
    started = time.perf_counter()
    run_main(flow)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    n = args.events
    print(f"strict decode (pydantic): {decode_floor(n):.1f} us/event")
    for keys in (3, 48, 192):
        print(f"bytewax fold_window, {keys:3d} keys: {window_floor(n, keys):.1f} us/event")
    one, eleven = step_floor(n, 1), step_floor(n, 11)
    print(f"bytewax map step: {(eleven - one) / 10:.2f} us/event per extra step")


if __name__ == "__main__":
    main()
