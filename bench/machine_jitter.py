"""How steady is this machine's CPU? The floor under any latency percentile.

    python bench/machine_jitter.py [--seconds 15] [--cpu N] [--idle] [--record FILE]

Runs the same small pure-Python loop (a few milliseconds of work) over and over,
optionally pinned to one CPU, with nothing else of ours running, and prints the
distribution of its durations. On a dedicated core every run takes the same
time; on a shared virtual machine some take several times longer (the host runs
someone else). A streaming job whose processing latency is N ms at the median
cannot have a p99 below what this loop's p99/median ratio does to N ms, nor
absorb such a slowdown without queueing if it is busy most of the time.
Run it next to ``bench/kafka_latency.py`` to read that bench's tail; that bench
runs it itself (``--idle --record``) on the core it leaves to the load generator,
to tell the host's slow moments from the flow's own.

Each run's CPU time (not wall time) is what counts: a run the scheduler set aside
for another process is not slower work, but one whose CPU time grew was running on
a slower machine. ``--idle`` runs at the lowest scheduling class (SCHED_IDLE), so the
loop only ever takes CPU time nobody else wants.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from array import array
from pathlib import Path


def work() -> int:
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--idle", action="store_true", help="run at SCHED_IDLE priority")
    parser.add_argument("--record", type=Path, default=None,
                        help="write each run's (wall start, CPU seconds) as float64 pairs")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    durations, record = [], array("d")
    end = time.perf_counter() + args.seconds
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))  # stop early, still report
    while time.perf_counter() < end and not stop:
        wall, started = time.time(), time.thread_time()
        work()
        durations.append(time.thread_time() - started)
        record.extend((wall, durations[-1]))
    if args.record is not None:
        args.record.write_bytes(record.tobytes())
    durations.sort()
    n = len(durations)

    def ms(q: float) -> float:
        return 1000 * durations[min(n - 1, int(q * n))]

    median = ms(0.5)
    print(f"{n:,} runs of the same loop (CPU time): median {median:.2f} ms, p99 {ms(0.99):.2f} ms "
          f"({ms(0.99) / median:.1f}x), p99.9 {ms(0.999):.2f} ms ({ms(0.999) / median:.1f}x), "
          f"max {1000 * durations[-1]:.2f} ms ({1000 * durations[-1] / median:.1f}x)")


if __name__ == "__main__":
    main()
